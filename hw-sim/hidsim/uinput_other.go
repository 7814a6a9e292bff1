//go:build !linux

package hidsim

import "errors"

var errNoUinput = errors.New("hidsim: /dev/uinput exists only on Linux")

// Available says why no virtual keyboard can be made here.
func Available() error { return errNoUinput }

// Keyboard is a virtual keyboard; Linux only.
type Keyboard struct{}

// NewKeyboard fails: uinput is Linux's.
func NewKeyboard(name string) (*Keyboard, error) { return nil, errNoUinput }

func (k *Keyboard) Path() string                   { return "" }
func (k *Keyboard) Type(code, suffix string) error { return errNoUinput }
func (k *Keyboard) Send(strokes []Stroke) error    { return errNoUinput }
func (k *Keyboard) Close() error                   { return nil }
