package daemon

import (
	"go/build/constraint"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCrashMachineryNotInProduct: the crash campaign's switches (the environment variable,
// the SIGUSR2 crash, failpoint hooks) live only in files built with the kioskd_failpoints
// tag, so the product binary cannot be told to kill itself.
func TestCrashMachineryNotInProduct(t *testing.T) {
	var files []string
	for _, dir := range []string{".", "../../cmd/kioskd", "../../sync/uplink"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	// The product is built for Linux with no tags.
	product := func(tag string) bool { return tag == "linux" || tag == "unix" }
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		if !strings.Contains(src, "KIOSKD_TEST_CRASH_AT") && !strings.Contains(src, "SIGUSR2") && !strings.Contains(src, "failpoint.Set") {
			continue
		}
		checked++
		inProduct := true
		for _, line := range strings.Split(src, "\n") {
			if constraint.IsGoBuild(line) {
				expr, err := constraint.Parse(line)
				if err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				inProduct = expr.Eval(product)
				break
			}
			if strings.HasPrefix(line, "package ") {
				break
			}
		}
		if inProduct {
			t.Errorf("%s has crash machinery and is built into the product", f)
		}
	}
	if checked == 0 {
		t.Fatal("found no crash machinery at all; the test looks in the wrong place")
	}
}
