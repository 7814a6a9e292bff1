//go:build !linux

package sim

import (
	"errors"
	"os"
)

// The disk-full fault swaps a descriptor for /dev/full (diskfull_linux_test.go): Linux only.
const diskFullSupported = false

type fullDisk struct{}

func fill(*os.File) (*fullDisk, error) { return nil, errors.New("disk-full fault: Linux only") }

func (*fullDisk) free() error { return nil }

func (*fullDisk) release() {}
