//go:build !kioskd_failpoints

package failpoint

// Enabled reports whether this build carries failpoints.
const Enabled = false

// Hit marks a named protocol point. In the product build it does nothing.
func Hit(string) {}
