package recorder

import (
	"errors"
	"io"
	"os"
)

// segData reads a segment's records by offset in its uncompressed bytes,
// whether the segment is a plain file or compressed. Safe for concurrent
// use.
type segData interface {
	io.ReaderAt
	io.Closer
	// dataSize is the number of bytes readable now: a plain segment's file
	// size (the active segment's grows, and carries a zeroed tail past its
	// records), a compressed one's uncompressed size.
	dataSize() (int64, error)
	// storedSize is the number of bytes on disk.
	storedSize() (int64, error)
	// fileName is the segment's file name, for messages.
	fileName() string
	// compressed reports whether this is a compressed segment.
	compressed() bool
}

// plainData is a segment stored as it was written.
type plainData struct {
	f    *os.File
	name string
}

func (p *plainData) ReadAt(b []byte, off int64) (int, error) { return p.f.ReadAt(b, off) }
func (p *plainData) Close() error                            { return p.f.Close() }
func (p *plainData) fileName() string                        { return p.name }
func (p *plainData) compressed() bool                        { return false }
func (p *plainData) storedSize() (int64, error)              { return p.dataSize() }

func (p *plainData) dataSize() (int64, error) {
	info, err := p.f.Stat()
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

func (z *zsegReader) dataSize() (int64, error)   { return z.size, nil }
func (z *zsegReader) storedSize() (int64, error) { return z.stored, nil }
func (z *zsegReader) fileName() string           { return z.name }
func (z *zsegReader) compressed() bool           { return true }

var (
	_ segData = (*plainData)(nil)
	_ segData = (*zsegReader)(nil)
)

// openPlain opens a plain segment file for reading.
func openPlain(dir, name string) (*plainData, error) {
	f, err := os.Open(segPath(dir, name))
	if err != nil {
		return nil, err
	}
	return &plainData{f: f, name: name}, nil
}

// openSegData opens the segment whose first record is seq first: the plain
// file if there is one, else the compressed one. A writer may compress the
// segment (and remove the plain file) at any moment, so a plain file that
// vanished is looked for compressed. os.ErrNotExist if neither exists (the
// segment was removed by retention).
func openSegData(dir string, first uint64) (segData, error) {
	p, err := openPlain(dir, segName(first))
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	z, err := openZseg(segPath(dir, zsegName(first)), zsegName(first))
	if err != nil {
		return nil, err
	}
	return z, nil
}
