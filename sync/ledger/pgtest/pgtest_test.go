package pgtest

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

func TestWithSearchPath(t *testing.T) {
	for dsn, want := range map[string]string{
		"postgres://u@127.0.0.1:5432/db?sslmode=disable":   "postgres://u@127.0.0.1:5432/db?search_path=s1&sslmode=disable",
		"postgresql://u@h/db":                              "postgresql://u@h/db?search_path=s1",
		"host=/tmp dbname=ledger ":                         "host=/tmp dbname=ledger search_path=s1",
		"postgres://u@h/db?search_path=old&sslmode=verify": "postgres://u@h/db?search_path=s1&sslmode=verify",
	} {
		if got := WithSearchPath(dsn, "s1"); got != want {
			t.Errorf("WithSearchPath(%q) = %q, want %q", dsn, got, want)
		}
	}
}

// The server answers, and a new DSN is an empty schema of its own.
func TestSharedServerAndSchemas(t *testing.T) {
	s := Shared(t)
	a, b := s.NewDSN(t), s.NewDSN(t)
	if a == b {
		t.Fatalf("two tests got the same schema: %s", a)
	}
}
