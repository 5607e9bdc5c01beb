package recorder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Trace limits.
const (
	// DefaultTraceLimit is the number of records Trace returns when asked
	// for 0.
	DefaultTraceLimit = 1000
	// MaxTraceLimit caps any limit, bounding a response to MaxTraceLimit ×
	// MaxRecordBytes.
	MaxTraceLimit = 100000
)

func traceLimit(limit int) int {
	if limit <= 0 {
		return DefaultTraceLimit
	}
	return min(limit, MaxTraceLimit)
}

// Trace returns the records of one trace in seq order, at most limit (0
// means DefaultTraceLimit). It answers from the indexes: the in-memory index
// of the active segment and one block of each sealed segment's index file.
// Each record returned has been checked against its hash; a record that
// fails is a *VerifyError (ErrCorrupt). Unknown traces give no records and
// no error. ErrInvalidTraceID for a malformed id.
func (l *Log) Trace(ctx context.Context, traceID string, limit int) ([]Record, error) {
	if l.closedFlag.Load() {
		return nil, ErrClosed
	}
	if !ValidTraceID(traceID) {
		return nil, ErrInvalidTraceID
	}
	l.segMu.RLock()
	segs := acquireAll(l.segs)
	l.segMu.RUnlock()
	defer releaseAll(segs)
	return traceSegments(ctx, segs, &l.idxMu, traceID, traceLimit(limit), l.markIndexBad)
}

// markIndexBad drops a segment's index after a failed read; maintenance
// rebuilds it.
func (l *Log) markIndexBad(s *segment, d *diskIndex, err error) {
	l.logger.Warn("recorder: index unusable; scanning the segment and rebuilding the index", "segment", s.name, "err", err)
	l.idxMu.Lock()
	if s.disk == d {
		s.disk = nil
	}
	l.idxMu.Unlock()
	l.kickMaint()
}

// traceSegments collects the records of traceID from segs (oldest first).
// mu guards the segments' index fields. A segment without any index is read
// in full.
func traceSegments(ctx context.Context, segs []*segment, mu *sync.RWMutex, traceID string, limit int,
	bad func(*segment, *diskIndex, error)) ([]Record, error) {
	key := traceKey(traceID)
	var out []Record
	var ps []pos
	var buf []byte
	block := new(blockBuf)
	for _, s := range segs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ps = ps[:0]
		mu.RLock()
		d, xf := s.disk, s.idxf
		scan := d == nil && s.mem == nil
		if d == nil && s.mem != nil {
			ps = s.mem.lookup(ps, key)
		}
		mu.RUnlock()
		if d != nil {
			var err error
			if ps, err = d.lookup(ps[:0], xf, key, block); err != nil {
				if bad != nil {
					bad(s, d, err)
				}
				scan = true
			}
		}
		data, done := s.read()
		var err error
		if scan {
			out, err = scanTrace(ctx, data, traceID, out, limit)
		} else {
			out, buf, err = readTrace(data, ps, traceID, out, limit, buf)
		}
		done()
		if err != nil {
			return nil, err
		}
		if len(out) >= limit {
			return out[:limit], nil
		}
	}
	return out, nil
}

// readTrace reads the records at ps that belong to traceID.
func readTrace(data segData, ps []pos, traceID string, out []Record, limit int, buf []byte) ([]Record, []byte, error) {
	var err error
	for _, p := range ps {
		if len(out) >= limit {
			break
		}
		if buf, err = readAt(data, buf, p); err != nil {
			return out, buf, fmt.Errorf("recorder: reading %s: %w", data.fileName(), err)
		}
		var r Record
		ok, err := matchRecord(data.fileName(), buf[:len(buf)-1], traceID, &r)
		if err != nil {
			return out, buf, err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, buf, nil
}

// readAt reads the line at p into buf (reused) and checks it ends a line.
func readAt(f io.ReaderAt, buf []byte, p pos) ([]byte, error) {
	if cap(buf) < int(p.n) {
		buf = make([]byte, p.n)
	}
	buf = buf[:p.n]
	if _, err := f.ReadAt(buf, int64(p.off)); err != nil {
		return buf, err
	}
	if buf[p.n-1] != '\n' {
		return buf, fmt.Errorf("index points inside a record at offset %d", p.off)
	}
	return buf, nil
}

// matchRecord decodes line into r if it belongs to traceID, checking its
// hash and canonical form.
func matchRecord(seg string, line []byte, traceID string, r *Record) (bool, error) {
	h, ok := parseHead(line)
	if ok && string(h.traceID) != traceID {
		return false, nil // another trace on the same key
	}
	if err := decodeChecked(seg, line, r); err != nil {
		return false, err
	}
	return r.TraceID == traceID, nil
}

// decodeChecked checks a line's frame and hash and decodes it.
func decodeChecked(seg string, line []byte, r *Record) error {
	f, err := parseFrame(line)
	if err != nil || !f.hashOK {
		return &VerifyError{Segment: seg, Seq: f.seq, Problem: ProblemEdited, Detail: "record does not match its hash"}
	}
	if err := decodeLine(line, r); err != nil {
		return &VerifyError{Segment: seg, Seq: f.seq, Problem: ProblemEdited, Detail: err.Error()}
	}
	return nil
}

// scanTrace reads a whole segment for the records of traceID.
func scanTrace(ctx context.Context, data segData, traceID string, out []Record, limit int) ([]Record, error) {
	// The data's size now, not the segment's: a Reader's last segment may
	// have grown.
	size, err := data.dataSize()
	if err != nil {
		return out, fmt.Errorf("recorder: reading %s: %w", data.fileName(), err)
	}
	name := data.fileName()
	lr := newSegReader(data, 0, size)
	for n := 0; len(out) < limit; n++ {
		if n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return out, err
			}
		}
		line, _, err := lr.next()
		if err == io.EOF || errors.Is(err, errPartial) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("recorder: reading %s: %w", name, err)
		}
		h, ok := parseHead(line)
		if ok && string(h.traceID) != traceID {
			continue
		}
		var r Record
		if ok, err := matchRecord(name, line, traceID, &r); err != nil {
			return out, err
		} else if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// Reader reads a recorder directory without taking the writer's lock, for
// the audit CLI and other tools: a sidecar may be appending meanwhile. It
// reads plain and compressed segments alike, uses the index files of sealed
// segments when they are usable and reads the others (the active segment
// among them) in full, up to the zeroed tail of a preallocated segment. Trace, Tail and
// Follow may run concurrently; Close comes last.
type Reader struct {
	dir   string
	idxMu sync.RWMutex
	segs  []*segment
}

// OpenReader opens the log in dir for reading. ErrNoLog if dir holds no
// segment.
func OpenReader(dir string) (*Reader, error) {
	files, err := listSegments(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && len(files) == 0) {
		return nil, fmt.Errorf("%w in %s", ErrNoLog, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	r := &Reader{dir: dir}
	for i, sf := range files {
		data, err := openFileData(dir, sf)
		if errors.Is(err, os.ErrNotExist) {
			// Compressed since the listing (or removed by retention).
			data, err = openSegData(dir, sf.first)
		}
		if errors.Is(err, os.ErrNotExist) {
			continue // removed by retention since the listing
		}
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("recorder: %w", err)
		}
		size, err := data.dataSize()
		if err != nil {
			data.Close()
			r.Close()
			return nil, fmt.Errorf("recorder: %w", err)
		}
		s := &segment{name: segName(sf.first), first: sf.first, data: data}
		s.size.Store(size)
		if i < len(files)-1 {
			s.disk, s.idxf = openIndex(dir, s, size)
		}
		r.segs = append(r.segs, s)
	}
	return r, nil
}

// openIndex opens a segment's index file if it is usable.
func openIndex(dir string, s *segment, size int64) (*diskIndex, *os.File) {
	xf, err := os.Open(segPath(dir, idxName(s.name)))
	if err != nil {
		return nil, nil
	}
	info, err := xf.Stat()
	if err == nil {
		if d, err := parseIndexHeader(xf, info.Size()); err == nil && d.firstSeq == s.first && d.segBytes == size {
			return d, xf
		}
	}
	xf.Close()
	return nil, nil
}

// Trace returns the records of one trace in seq order, at most limit (0
// means DefaultTraceLimit); see Log.Trace.
func (r *Reader) Trace(ctx context.Context, traceID string, limit int) ([]Record, error) {
	if !ValidTraceID(traceID) {
		return nil, ErrInvalidTraceID
	}
	bad := func(s *segment, d *diskIndex, _ error) {
		r.idxMu.Lock()
		if s.disk == d {
			s.disk = nil
		}
		r.idxMu.Unlock()
	}
	segs := acquireAll(r.segs)
	defer releaseAll(segs)
	return traceSegments(ctx, segs, &r.idxMu, traceID, traceLimit(limit), bad)
}

// Close closes the reader's files.
func (r *Reader) Close() error {
	for _, s := range r.segs {
		s.retire()
	}
	r.segs = nil
	return nil
}
