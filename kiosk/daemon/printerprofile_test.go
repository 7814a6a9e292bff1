package daemon

import (
	"testing"

	"github.com/kioskd/kioskd/kiosk/config"
)

// Every profile name the configuration accepts has a receipt layout, and no other name does.
func TestPrinterProfilesMatchConfig(t *testing.T) {
	for _, name := range config.PrinterProfiles {
		if _, err := printerProfile(name); err != nil {
			t.Errorf("config accepts printer.profile %q, the daemon has no layout for it: %v", name, err)
		}
	}
	for name := range printerProfiles {
		if name == "" {
			continue
		}
		found := false
		for _, n := range config.PrinterProfiles {
			found = found || n == name
		}
		if !found {
			t.Errorf("layout %q is not a printer.profile the configuration accepts", name)
		}
	}
	if _, err := printerProfile("thermal"); err == nil {
		t.Error("an unknown profile was accepted")
	}
}
