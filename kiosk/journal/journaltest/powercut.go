// Package journaltest holds test-only helpers for the journal: it simulates, below bbolt,
// what a power cut does to a journal file. Only tests and the crash harness import it; the
// product journal has no power-cut code, only the Options.OpenFile hook.
package journaltest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
)

// bbolt commits in two steps: the new pages are written and fsynced, then one of the two meta
// pages (pages 0 and 1, alternating) is written with the new transaction id and fsynced; on
// open, the valid meta page with the highest transaction id wins. So whatever a power cut
// does to writes that were not yet fsynced, the file reopens either at the last transaction
// or at the one before it; and an SD card that acknowledged an fsync it never performed can
// lose the last committed transaction the same way. DropLastCommit produces exactly that
// state: it invalidates the newest meta page, so bbolt falls back to the previous
// transaction, whose pages bbolt never reuses in the transaction that follows.

// bbolt's on-disk meta layout (go.etcd.io/bbolt internal/common/meta.go and page.go).
const (
	pageHeaderSize = 16
	metaMagic      = 0xED0CDAED
	offMagic       = pageHeaderSize + 0
	offPageSize    = pageHeaderSize + 8
	offTxid        = pageHeaderSize + 48
	offChecksum    = pageHeaderSize + 56
)

// MetaTxids returns the transaction ids of the two meta pages of a closed journal file.
func MetaTxids(path string) (a, b uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	m0, m1, _, err := readMetas(f)
	if err != nil {
		return 0, 0, err
	}
	return binary.LittleEndian.Uint64(m0[offTxid:]), binary.LittleEndian.Uint64(m1[offTxid:]), nil
}

func readMetas(f *os.File) (m0, m1 []byte, pageSize int64, err error) {
	m0 = make([]byte, offChecksum+8)
	if _, err := f.ReadAt(m0, 0); err != nil {
		return nil, nil, 0, fmt.Errorf("read meta 0: %w", err)
	}
	if binary.LittleEndian.Uint32(m0[offMagic:]) != metaMagic {
		return nil, nil, 0, errors.New("not a bbolt file (meta 0 magic)")
	}
	pageSize = int64(binary.LittleEndian.Uint32(m0[offPageSize:]))
	if pageSize < 512 || pageSize > 1<<16 {
		return nil, nil, 0, fmt.Errorf("implausible page size %d", pageSize)
	}
	m1 = make([]byte, offChecksum+8)
	if _, err := f.ReadAt(m1, pageSize); err != nil {
		return nil, nil, 0, fmt.Errorf("read meta 1: %w", err)
	}
	return m0, m1, pageSize, nil
}

func metaValid(m []byte) bool {
	if binary.LittleEndian.Uint32(m[offMagic:]) != metaMagic {
		return false
	}
	h := fnv.New64a()
	h.Write(m[pageHeaderSize:offChecksum])
	return h.Sum64() == binary.LittleEndian.Uint64(m[offChecksum:])
}

// DropLastCommit makes a closed journal file lose its last committed transaction, as a power
// cut on storage that lied about fsync would. It fails when the previous meta page is not
// valid (the file has had only one commit, or was already rolled back): losing two
// transactions is not something bbolt's format allows to happen.
func DropLastCommit(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	m0, m1, pageSize, err := readMetas(f)
	if err != nil {
		return err
	}
	if !metaValid(m0) || !metaValid(m1) {
		return errors.New("journaltest: drop last commit: both meta pages must be valid")
	}
	newest, off := m0, int64(0)
	if binary.LittleEndian.Uint64(m1[offTxid:]) > binary.LittleEndian.Uint64(m0[offTxid:]) {
		newest, off = m1, pageSize
	}
	sum := binary.LittleEndian.Uint64(newest[offChecksum:])
	var bad [8]byte
	binary.LittleEndian.PutUint64(bad[:], ^sum)
	if _, err := f.WriteAt(bad[:], off+offChecksum); err != nil {
		return err
	}
	return f.Sync()
}
