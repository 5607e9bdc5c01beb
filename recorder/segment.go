package recorder

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Files in the recorder directory.
const (
	segPrefix       = "seg-"
	segSuffix       = ".log"
	idxSuffix       = ".idx"
	checkpointsFile = "checkpoints.jsonl"
	lockFile        = "LOCK"
	recoveredPrefix = "recovered-"
)

// segName is the file name of the segment whose first record is seq first.
func segName(first uint64) string {
	return fmt.Sprintf("%s%020d%s", segPrefix, first, segSuffix)
}

// zsegName is the file name of that segment once compressed.
func zsegName(first uint64) string { return segName(first) + ".zst" }

// idxName is the index file name of a segment file name (plain or
// compressed).
func idxName(seg string) string {
	return strings.TrimSuffix(strings.TrimSuffix(seg, ".zst"), segSuffix) + idxSuffix
}

// parseSegName returns the first seq a segment file name (plain or
// compressed) claims.
func parseSegName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, segPrefix)
	if !ok {
		return 0, false
	}
	if d, ok := strings.CutSuffix(digits, zsegSuffix); ok {
		digits = d
	} else if digits, ok = strings.CutSuffix(digits, segSuffix); !ok {
		return 0, false
	}
	if len(digits) != 20 {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	if err != nil || n == 0 {
		return 0, false
	}
	return n, true
}

// segFile is a segment file found in the directory.
type segFile struct {
	name       string
	first      uint64
	size       int64 // of the file
	compressed bool
	// shadow is a compressed copy beside a plain segment of the same seq: a
	// crash between compressing the segment and removing the original. The
	// plain file is the one read; Open removes the copy.
	shadow string
}

// listSegments returns the segment files of dir, oldest first.
func listSegments(dir string) ([]segFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []segFile
	for _, e := range ents {
		first, ok := parseSegName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, os.ErrNotExist) {
			continue // compressed or removed since the listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, segFile{name: e.Name(), first: first, size: info.Size(), compressed: strings.HasSuffix(e.Name(), zsegSuffix)})
	}
	slices.SortFunc(out, func(a, b segFile) int {
		switch {
		case a.first < b.first:
			return -1
		case a.first > b.first:
			return 1
		case !a.compressed && b.compressed:
			return -1
		case a.compressed && !b.compressed:
			return 1
		}
		return 0
	})
	// Keep one file per seq: the plain one.
	kept := out[:0]
	for _, sf := range out {
		if n := len(kept); n > 0 && kept[n-1].first == sf.first {
			kept[n-1].shadow = sf.name
			continue
		}
		kept = append(kept, sf)
	}
	return kept, nil
}

// maxLineLimit bounds a line read from any segment, whatever the writer's
// MaxRecordBytes was.
const maxLineLimit = maxRecordBytesLimit

// errPartial marks bytes after the last newline of a file.
var errPartial = errors.New("partial line at end of file")

// lineReader reads the lines of a segment with their offsets.
type lineReader struct {
	r       *bufio.Reader
	off     int64 // offset of the next line
	scratch []byte
	maxLine int
	// zeroTail: a NUL byte ends the data, as in a preallocated segment whose
	// tail past the records is zeros; zeroAt is then where it was found.
	zeroTail bool
	zeroAt   int64
}

func newLineReader(r io.Reader, off int64) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 256<<10), off: off, maxLine: maxLineLimit, zeroAt: -1}
}

// newSegReader reads the lines of a segment's data from off to size: a NUL
// byte (never part of a record: the encoder escapes every control
// character) ends the data.
func newSegReader(r io.ReaderAt, off, size int64) *lineReader {
	lr := newLineReader(io.NewSectionReader(r, off, size-off), off)
	lr.zeroTail = true
	return lr
}

// next returns the next line without its newline and the line's offset. At a
// clean end — the end of the data, or with zeroTail a NUL byte where a line
// would start — it returns io.EOF; for bytes after the last newline (with
// zeroTail: up to a NUL byte, or a line holding one, which a concurrent
// reader sees while the writer copies it) it returns them with errPartial.
// The line is valid until the next call.
func (lr *lineReader) next() ([]byte, int64, error) {
	off := lr.off
	line, err := lr.r.ReadSlice('\n')
	if lr.zeroTail {
		if z := bytes.IndexByte(line, 0); z >= 0 {
			return lr.stopAtZero(line[:z], off)
		}
	}
	if err == bufio.ErrBufferFull {
		lr.scratch = append(lr.scratch[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(lr.scratch) > lr.maxLine {
				return nil, off, fmt.Errorf("line at offset %d longer than %d bytes", off, lr.maxLine)
			}
			line, err = lr.r.ReadSlice('\n')
			if lr.zeroTail {
				if z := bytes.IndexByte(line, 0); z >= 0 {
					lr.scratch = append(lr.scratch, line[:z]...)
					return lr.stopAtZero(lr.scratch, off)
				}
			}
			lr.scratch = append(lr.scratch, line...)
		}
		line = lr.scratch
	}
	lr.off += int64(len(line))
	switch {
	case err == io.EOF && len(line) == 0:
		return nil, off, io.EOF
	case err == io.EOF:
		return line, off, errPartial
	case err != nil:
		return nil, off, err
	}
	if len(line)-1 > lr.maxLine {
		return nil, off, fmt.Errorf("line at offset %d longer than %d bytes", off, lr.maxLine)
	}
	return line[:len(line)-1], off, nil
}

// stopAtZero ends the data at a NUL byte, after the partial line before it.
func (lr *lineReader) stopAtZero(partial []byte, off int64) ([]byte, int64, error) {
	lr.zeroAt = off + int64(len(partial))
	lr.r.Reset(eofReader{}) // every later call ends here too
	if len(partial) == 0 {
		return nil, off, io.EOF
	}
	return partial, off, errPartial
}

// eofReader is an empty reader.
type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// trimZeroTail returns the size of f's first size bytes without its trailing
// NUL bytes: a sealed segment is cut to its records, but one that a crash
// caught between starting the next segment and cutting this one still has
// its zeroed preallocation.
func trimZeroTail(f io.ReaderAt, size int64) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	var last [1]byte
	if _, err := f.ReadAt(last[:], size-1); err != nil {
		return 0, err
	}
	if last[0] != 0 {
		return size, nil
	}
	return lastNonZero(f, 0, size)
}

// lastNonZero returns the offset after the last non-NUL byte of [from, to)
// in f, or from if they are all NUL.
func lastNonZero(f io.ReaderAt, from, to int64) (int64, error) {
	buf := make([]byte, 1<<20)
	for to > from {
		start := max(to-int64(len(buf)), from)
		b := buf[:to-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(b); i > 0; i -= 4096 {
			lo := max(i-4096, 0)
			if !allZero(b[lo:i]) {
				for j := i - 1; j >= lo; j-- {
					if b[j] != 0 {
						return start + int64(j) + 1, nil
					}
				}
			}
		}
		to = start
	}
	return from, nil
}

// zeroPage is compared against to find non-zero bytes quickly.
var zeroPage [4096]byte

func allZero(b []byte) bool { return bytes.Equal(b, zeroPage[:len(b)]) }

// head is what the start of a canonical line says: seq, kind and trace id.
type head struct {
	seq     uint64
	kind    []byte
	traceID []byte
}

// parseHead reads `{"seq":N,"kind":"K","trace_id":"T"` from the start of a
// line. Kinds and trace ids never need escaping (Append refuses others), so
// no JSON decoding is needed.
func parseHead(line []byte) (head, bool) {
	var h head
	rest, ok := bytes.CutPrefix(line, []byte(linePrefix))
	if !ok {
		return h, false
	}
	i := 0
	for i < len(rest) && i < 21 && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	seq, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	if err != nil {
		return h, false
	}
	h.seq = seq
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(`,"kind":"`)); !ok {
		return h, false
	}
	if i = bytes.IndexByte(rest, '"'); i < 0 || i > maxKindLen {
		return h, false
	}
	h.kind = rest[:i]
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(`","trace_id":"`)); !ok {
		return h, false
	}
	if i = bytes.IndexByte(rest, '"'); i < 0 || i > 128 {
		return h, false
	}
	h.traceID = rest[:i]
	return h, true
}

// lastLineAt reads the last whole line (without newline) of the first size
// bytes of f, and its offset. It fails if those bytes do not end in a newline.
func lastLineAt(f io.ReaderAt, size int64) ([]byte, int64, error) {
	if size == 0 {
		return nil, 0, io.EOF
	}
	var nl [1]byte
	if _, err := f.ReadAt(nl[:], size-1); err != nil {
		return nil, 0, err
	}
	if nl[0] != '\n' {
		return nil, 0, errPartial
	}
	chunk := int64(4096)
	for {
		start := max(size-1-chunk, 0)
		buf := make([]byte, size-1-start)
		if _, err := f.ReadAt(buf, start); err != nil {
			return nil, 0, err
		}
		if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
			return buf[i+1:], start + int64(i) + 1, nil
		}
		if start == 0 {
			return buf, 0, nil
		}
		if chunk > maxLineLimit {
			return nil, 0, fmt.Errorf("last line longer than %d bytes", maxLineLimit)
		}
		chunk *= 4
	}
}

// firstLineAt reads the first line (without newline) of f.
func firstLineAt(f io.ReaderAt, size int64) ([]byte, error) {
	chunk := int64(4096)
	for {
		n := min(chunk, size)
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return buf[:i], nil
		}
		if n == size {
			return nil, errPartial
		}
		if chunk > maxLineLimit {
			return nil, fmt.Errorf("first line longer than %d bytes", maxLineLimit)
		}
		chunk *= 4
	}
}

// recordTime reads the "time" member of a canonical line cheaply.
func recordTime(line []byte) (time.Time, bool) {
	i := bytes.Index(line, []byte(`,"time":"`))
	if i < 0 {
		return time.Time{}, false
	}
	rest := line[i+len(`,"time":"`):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return t, err == nil
}

// syncDir fsyncs a directory so that file creations, renames and removals
// in it survive a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// segPath joins dir and a file name.
func segPath(dir, name string) string { return filepath.Join(dir, name) }
