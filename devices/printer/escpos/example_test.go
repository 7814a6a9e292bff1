package escpos_test

import (
	"context"
	"errors"
	"log"
	"time"

	"go.bug.st/serial"

	"github.com/kioskd/kioskd/devices/printer/escpos"
)

// How cmd/kioskd wires a printer: it owns and closes the port; the driver only uses it.
func Example() {
	port, err := serial.Open("/dev/ttyUSB1", &serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit})
	if err != nil {
		log.Print(err)
		return
	}
	defer port.Close()
	port.SetReadTimeout(100 * time.Millisecond) // reads return (0, nil) when quiet: never stuck
	p := escpos.New(port, escpos.Config{})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	receipt := []byte("\x1b@hello\n\x1dV\x42\x03") // from receipts.RenderESCPOS
	var pe *escpos.PrintError
	switch err := p.Print(ctx, receipt); {
	case err == nil:
	case errors.As(err, &pe) && pe.Stage == escpos.StageBefore:
		log.Printf("not printed (%v): printer out of service until fixed", pe.Status)
	default:
		log.Printf("receipt may be incomplete, reprint as COPY: %v", err)
	}
}
