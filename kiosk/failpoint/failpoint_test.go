package failpoint

import "testing"

func TestHit(t *testing.T) {
	// Without the build tag Hit must be inert; with it, it must reach the hook.
	var got []string
	if Enabled {
		setForTest(func(p string) { got = append(got, p) })
	}
	Hit("a")
	Hit("b")
	if Enabled && len(got) != 2 {
		t.Fatalf("hook saw %v, want [a b]", got)
	}
	if !Enabled && len(got) != 0 {
		t.Fatalf("product build reached a hook: %v", got)
	}
}
