package sensors

import (
	"errors"
	"testing"
)

// OpenPin loads the host drivers (here, on a machine that may have no GPIO at all) and
// reports a name it does not know with ErrNoPin, never a nil pin.
func TestOpenPinUnknownName(t *testing.T) {
	p, err := OpenPin("KIOSKD_NO_SUCH_PIN")
	if p != nil || err == nil {
		t.Fatalf("OpenPin = %v, %v", p, err)
	}
	if !errors.Is(err, ErrNoPin) {
		t.Logf("host drivers did not load here: %v", err)
	}
}
