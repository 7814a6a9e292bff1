//go:build !linux

package hidscan

import (
	"errors"
	"time"
)

// EventDevice is an evdev node; evdev exists only on Linux.
type EventDevice struct{}

// ResolvePath returns device unchanged: there is no /dev/input/by-id here.
func ResolvePath(device string) string { return device }

// Open fails: HID scanners are read through Linux evdev.
func Open(path string) (*EventDevice, error) {
	return nil, errors.New("hidscan: HID scanners need Linux evdev")
}

func (d *EventDevice) Name() string { return "" }
func (d *EventDevice) ReadEvents(buf []Event) (int, error) {
	return 0, errors.New("hidscan: not supported")
}
func (d *EventDevice) SetReadDeadline(t time.Time) error { return nil }
func (d *EventDevice) Close() error                      { return nil }
