//go:build !kioskd_failpoints

package failpoint

func setForTest(func(string)) {}
