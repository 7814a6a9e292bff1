// Package cmd_test holds the dependency rules of the product's binaries: a test that fails
// when kioskd or kioskctl would link test machinery, and when a device package reaches up
// into the kiosk or the uplink. The rules are checked on the build graph that `go list
// -deps` reports, for the host and the kiosk boards, so a change that breaks one fails here
// instead of shipping emulators, a broker or the testing package to a kiosk.
package cmd_test

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/kioskd/kioskd"

// products are the binaries installed on a kiosk.
var products = []string{module + "/cmd/kioskd", module + "/cmd/kioskctl"}

// forbidden says why a product must not depend on a package, or "" when it may.
func forbidden(pkg string) string {
	base := pkg[strings.LastIndex(pkg, "/")+1:]
	switch {
	case pkg == "testing" || strings.HasPrefix(pkg, "testing/"):
		return "the testing package (test machinery in a non-test file)"
	case strings.HasPrefix(pkg, module+"/hw-sim/"):
		return "a hardware emulator"
	case strings.HasPrefix(pkg, "github.com/mochi-mqtt/"):
		return "the embedded MQTT broker (demo and tests only)"
	case pkg == module+"/sync/broker":
		return "the embedded MQTT broker (demo and tests only)"
	case pkg == module+"/sync/ledger":
		return "the reference ledger"
	case pkg == module+"/sync/faultproxy":
		return "the network fault proxy (tests only)"
	case pkg == module+"/devices/acceptor/conformance":
		return "the acceptor conformance harness (tests and kioskbench only)"
	case pkg == module+"/kiosk/journal/journaltest":
		return "the journal's power-cut test helpers"
	case strings.HasPrefix(pkg, module+"/cmd/"):
		return "another command"
	case strings.HasPrefix(pkg, module+"/") && strings.HasSuffix(base, "test"):
		// httptest, iotest: a package named *test is test support (mosqtest, journaltest).
		return "a test-support package"
	}
	return ""
}

// platforms are where the products are built: the host, and the boards `make cross` builds for.
var platforms = []struct{ name, goos, goarch, goarm, tags string }{
	{name: "host"},
	{name: "host with failpoints", tags: "kioskd_failpoints"},
	{name: "linux/arm64", goos: "linux", goarch: "arm64"},
	{name: "linux/armv7", goos: "linux", goarch: "arm", goarm: "7"},
}

func goList(t *testing.T, env []string, args ...string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to read the build graph: %v", err)
	}
	cmd := exec.Command(gobin, append([]string{"list"}, args...)...)
	cmd.Env = append(cmd.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.Fields(string(out))
}

// TestProductsLinkNoTestMachinery: kioskd and kioskctl link no emulator, broker, reference
// ledger, conformance harness, test helper or the testing package, on any platform.
func TestProductsLinkNoTestMachinery(t *testing.T) {
	for _, pl := range platforms {
		t.Run(pl.name, func(t *testing.T) {
			env := []string{"CGO_ENABLED=0"}
			if pl.goos != "" {
				env = append(env, "GOOS="+pl.goos, "GOARCH="+pl.goarch)
			}
			if pl.goarm != "" {
				env = append(env, "GOARM="+pl.goarm)
			}
			for _, prod := range products {
				args := []string{"-deps", "-f", "{{.ImportPath}}|{{join .Imports \",\"}}"}
				if pl.tags != "" {
					args = append(args, "-tags", pl.tags)
				}
				graph := map[string][]string{}
				for _, line := range goList(t, env, append(args, prod)...) {
					pkg, imports, _ := strings.Cut(line, "|")
					graph[pkg] = strings.Split(imports, ",")
				}
				if _, ok := graph[module+"/kiosk/journal"]; !ok && strings.HasSuffix(prod, "/kioskd") {
					t.Fatalf("%s: the build graph looks wrong (no kiosk/journal): %v", prod, graph)
				}
				for d := range graph {
					if d == prod {
						continue
					}
					if why := forbidden(d); why != "" {
						t.Errorf("%s depends on %s (%s) through %s", prod, d, why, strings.Join(importPath(graph, prod, d), " -> "))
					}
				}
			}
		})
	}
}

// importPath is the shortest chain of imports from one package to another.
func importPath(graph map[string][]string, from, to string) []string {
	prev := map[string]string{from: ""}
	queue := []string{from}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == to {
			var path []string
			for ; p != ""; p = prev[p] {
				path = append(path, p)
			}
			slices.Reverse(path)
			return path
		}
		for _, imp := range graph[p] {
			if _, seen := prev[imp]; !seen && imp != "" {
				prev[imp] = p
				queue = append(queue, imp)
			}
		}
	}
	return []string{from, "?", to}
}

// TestDevicesStayBelowTheKiosk: a package under devices/ (drivers, serial ports, sensors)
// imports nothing of kiosk/ or sync/, in its build or in its tests: the devices are the
// bottom layer the kiosk is built on. The one exception is the conformance harness, which
// wires every driver to the real session engine and journal on purpose; the product never
// links it (TestProductsLinkNoTestMachinery).
func TestDevicesStayBelowTheKiosk(t *testing.T) {
	lines := goList(t, nil, "-f", "{{.ImportPath}}|{{join .Deps \",\"}}|{{join .TestImports \",\"}}|{{join .XTestImports \",\"}}", module+"/devices/...")
	if len(lines) == 0 {
		t.Fatal("no packages under devices/")
	}
	for _, line := range lines {
		f := strings.Split(line, "|")
		pkg := f[0]
		if pkg == module+"/devices/acceptor/conformance" {
			continue
		}
		seen := map[string]bool{}
		for _, list := range f[1:] {
			for _, d := range strings.Split(list, ",") {
				if (strings.HasPrefix(d, module+"/kiosk/") || strings.HasPrefix(d, module+"/sync/")) && !seen[d] {
					seen[d] = true
					t.Errorf("%s depends on %s: devices must not import kiosk/ or sync/", pkg, d)
				}
			}
		}
	}
}

// TestOnlyTestSupportImportsTesting: outside _test.go files, only test-support packages
// (named *test), the conformance harness and the benchmark command import testing, so that
// test machinery cannot creep into a package the product links.
func TestOnlyTestSupportImportsTesting(t *testing.T) {
	allowed := []string{module + "/devices/acceptor/conformance", module + "/cmd/kioskbench"}
	for _, line := range goList(t, nil, "-f", "{{.ImportPath}}|{{join .Imports \",\"}}", module+"/...") {
		pkg, imports, _ := strings.Cut(line, "|")
		base := pkg[strings.LastIndex(pkg, "/")+1:]
		if slices.Contains(allowed, pkg) || strings.HasSuffix(base, "test") {
			continue
		}
		for _, imp := range strings.Split(imports, ",") {
			if imp == "testing" || strings.HasPrefix(imp, "testing/") {
				t.Errorf("%s imports %s outside its tests: move the code into a _test.go file or a *test package", pkg, imp)
			}
		}
	}
}
