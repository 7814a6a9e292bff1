//go:build kioskd_failpoints

package failpoint

func setForTest(f func(string)) { Set(f) }
