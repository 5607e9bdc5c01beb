package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// MaxTail caps the records Tail returns.
const MaxTail = 100000

// Cursor is a position in a log, just after the last record a Tail or Follow
// delivered. The zero Cursor is the start of the log.
type Cursor struct {
	seg uint64 // first seq of the segment
	off int64  // offset in it of the next line
}

// Tail returns the last n records (at most MaxTail) in seq order, each checked
// against its hash, and the cursor after the newest.
func (r *Reader) Tail(ctx context.Context, n int) ([]Record, Cursor, error) {
	n = min(max(n, 0), MaxTail)
	var cur Cursor
	if len(r.segs) == 0 {
		return nil, cur, nil
	}
	newest := r.segs[len(r.segs)-1]
	type group struct {
		name  string
		lines [][]byte
	}
	var groups []group // newest segment first
	have := 0
	for i := len(r.segs) - 1; i >= 0 && (have < n || i == len(r.segs)-1); i-- {
		s := r.segs[i]
		lines, end, err := lastLines(ctx, s, n-have)
		if err != nil {
			return nil, cur, err
		}
		if s == newest {
			cur = Cursor{seg: s.first, off: end}
		}
		groups = append(groups, group{s.fileName(), lines})
		have += len(lines)
	}
	out := make([]Record, 0, have)
	for i := len(groups) - 1; i >= 0; i-- {
		for _, line := range groups[i].lines {
			var rec Record
			if err := decodeChecked(groups[i].name, line, &rec); err != nil {
				return nil, cur, err
			}
			out = append(out, rec)
		}
	}
	return out, cur, nil
}

// lastLines returns copies of the last n whole lines of a segment and the
// offset after the last whole line.
func lastLines(ctx context.Context, s *segment, n int) ([][]byte, int64, error) {
	data, done := s.read()
	defer done()
	size, err := data.dataSize()
	if err != nil {
		return nil, 0, err
	}
	lr := newSegReader(data, 0, size)
	ring := make([][]byte, 0, n)
	next := 0
	var end int64
	for k := 0; ; k++ {
		if k%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, 0, err
			}
		}
		line, off, err := lr.next()
		if err == io.EOF || errors.Is(err, errPartial) {
			break
		}
		if err != nil {
			return nil, 0, fmt.Errorf("recorder: reading %s: %w", data.fileName(), err)
		}
		end = off + int64(len(line)) + 1
		if n == 0 {
			continue
		}
		c := append([]byte(nil), line...)
		if len(ring) < n {
			ring = append(ring, c)
		} else {
			ring[next] = c
			next = (next + 1) % n
		}
	}
	// Rotate so the oldest comes first.
	return append(ring[next:], ring[:next]...), end, nil
}

// Follow calls fn for every record appended after c, in seq order, polling
// the directory every poll (0 means 200ms), until ctx is done (it then
// returns nil) or fn or a read fails. It moves on to newer segments as the
// writer rotates.
func (r *Reader) Follow(ctx context.Context, c Cursor, poll time.Duration, fn func(Record) error) error {
	if poll <= 0 {
		poll = 200 * time.Millisecond
	}
	var f segData
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	for {
		if f == nil {
			next, ok, err := r.segmentFrom(c.seg)
			if err != nil {
				return err
			}
			if ok {
				if next != c.seg {
					c = Cursor{seg: next}
				}
				if f, err = openSegData(r.dir, c.seg); errors.Is(err, os.ErrNotExist) {
					f, err = nil, nil
				}
				if err != nil {
					return fmt.Errorf("recorder: %w", err)
				}
			}
		}
		if f != nil {
			var err error
			if c, err = r.drain(ctx, f, c, fn); err != nil {
				return err
			}
			// A newer segment means this one is complete (the writer seals a
			// segment before it starts the next): drain once more, move on.
			next, ok, err := r.segmentFrom(c.seg + 1)
			if err != nil {
				return err
			}
			if ok && next > c.seg {
				if c, err = r.drain(ctx, f, c, fn); err != nil {
					return err
				}
				f.Close()
				f = nil
				c = Cursor{seg: next}
				continue
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(poll):
		}
	}
}

// segmentFrom returns the first seq of the oldest segment whose first seq is
// at least from.
func (r *Reader) segmentFrom(from uint64) (uint64, bool, error) {
	files, err := listSegments(r.dir)
	if err != nil {
		return 0, false, fmt.Errorf("recorder: %w", err)
	}
	for _, sf := range files {
		if sf.first >= from {
			return sf.first, true, nil
		}
	}
	return 0, false, nil
}

// drain delivers the whole lines of f from c on.
func (r *Reader) drain(ctx context.Context, f segData, c Cursor, fn func(Record) error) (Cursor, error) {
	size, err := f.dataSize()
	if err != nil {
		return c, err
	}
	if size <= c.off {
		return c, nil
	}
	name := f.fileName()
	lr := newSegReader(f, c.off, size)
	for {
		if err := ctx.Err(); err != nil {
			return c, nil
		}
		line, off, err := lr.next()
		if err == io.EOF || errors.Is(err, errPartial) {
			return c, nil
		}
		if err != nil {
			return c, fmt.Errorf("recorder: reading %s: %w", name, err)
		}
		var rec Record
		if err := decodeChecked(name, line, &rec); err != nil {
			return c, err
		}
		if err := fn(rec); err != nil {
			return c, err
		}
		c.off = off + int64(len(line)) + 1
	}
}
