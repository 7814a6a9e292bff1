package mqttc

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLoadTLS(t *testing.T) {
	if c, err := LoadTLS("", "", ""); c != nil || err != nil {
		t.Fatalf("no files: %v, %v; want nil, nil", c, err)
	}
	if _, err := LoadTLS("", "c.pem", ""); err == nil {
		t.Error("a certificate without its key was accepted")
	}
	bad := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTLS(bad, "", ""); err == nil {
		t.Error("a CA file without a certificate was accepted")
	}
	if _, err := LoadTLS(filepath.Join(t.TempDir(), "missing.pem"), "", ""); err == nil {
		t.Error("a missing CA file was accepted")
	}
}
