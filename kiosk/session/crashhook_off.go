//go:build !kioskd_failpoints

package session

// crashHook is empty in the product: crash points exist only in kioskd_failpoints builds.
func (e *Engine) crashHook(string) {}
