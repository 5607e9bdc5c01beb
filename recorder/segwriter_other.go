//go:build !linux

package recorder

import (
	"errors"
	"os"
)

// preallocate extends the file with zeros to size bytes (sparse: blocks are
// allocated as records are written).
func preallocate(f *os.File, size int64) error {
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if info.Size() >= size {
		return nil
	}
	return f.Truncate(size)
}

// mapShared is not used outside Linux: records are written with pwrite.
func mapShared(*os.File, int64) ([]byte, error) {
	return nil, errors.New("memory-mapped segments are only used on Linux")
}

func unmapShared([]byte) error { return nil }
func populateWrite([]byte)     {}
func dropPages([]byte)         {}

// fdatasync flushes f (fsync: no cheaper portable variant).
func fdatasync(f *os.File) error { return f.Sync() }
