package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// retentionCheckInterval is how often age-based retention is checked
// between rotations (which check it too).
const retentionCheckInterval = time.Minute

// maintLoop seals segments (writes their index files, or rebuilds lost
// ones) and applies retention, after each rotation and once a minute.
func (l *Log) maintLoop() {
	defer l.wg.Done()
	t := time.NewTicker(retentionCheckInterval)
	defer t.Stop()
	for {
		l.closeRetired()
		l.sealAll()
		if err := l.enforceRetention(); err != nil && !errors.Is(err, ErrClosed) {
			l.logger.Error("recorder: retention", "dir", l.dir, "err", err)
		}
		select {
		case <-l.stop:
			return
		case <-l.kick:
		case <-t.C:
		}
	}
}

// sealed returns a snapshot of the sealed segments (all but the active one).
func (l *Log) sealed() []*segment {
	l.segMu.RLock()
	defer l.segMu.RUnlock()
	if len(l.segs) == 0 {
		return nil
	}
	return append([]*segment(nil), l.segs[:len(l.segs)-1]...)
}

// closeRetired cuts the preallocated tails of sealed segments, and
// closes (and unmaps) their writers.
func (l *Log) closeRetired() error {
	l.mu.Lock()
	ws := l.retired
	l.retired = nil
	l.mu.Unlock()
	if len(ws) == 0 {
		return nil
	}
	l.syncMu.Lock() // the group commit may still be using one
	defer l.syncMu.Unlock()
	var errs []error
	for _, r := range ws {
		if err := errors.Join(r.w.seal(r.size), r.w.close()); err != nil {
			l.logger.Warn("recorder: cutting and closing a sealed segment", "segment", r.w.name, "err", err)
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sealAll writes the index file of every sealed segment that lacks one and,
// with compression, compresses it.
func (l *Log) sealAll() {
	l.maintMu.Lock()
	defer l.maintMu.Unlock()
	for _, s := range l.sealed() {
		select {
		case <-l.stop:
			return
		default:
		}
		if !s.acquire() {
			continue
		}
		l.idxMu.RLock()
		need, mem := s.disk == nil, s.mem
		l.idxMu.RUnlock()
		if need {
			if err := l.seal(s, mem); err != nil {
				l.logger.Error("recorder: writing segment index; queries scan the segment meanwhile",
					"segment", s.name, "err", err)
			}
		}
		if l.cfg.Compression == CompressionZstd {
			if err := l.compress(s); err != nil && !errors.Is(err, errStopped) {
				l.logger.Error("recorder: compressing a sealed segment; it stays uncompressed",
					"segment", s.name, "err", err)
			}
		}
		s.release()
	}
}

// seal writes s's index file from its frozen in-memory index, or by reading
// the segment when there is none, and switches queries to it.
func (l *Log) seal(s *segment, mem *memIndex) error {
	size := s.size.Load()
	var ents []idxEntry
	if mem != nil {
		// Copy under the lock, sort outside it: sorting a full segment's
		// entries takes tens of milliseconds, and every append of a traced
		// record needs the lock.
		l.idxMu.RLock()
		ents = mem.entries()
		l.idxMu.RUnlock()
		sortEntries(ents)
	} else {
		data, done := s.read()
		var err error
		ents, err = scanIndex(data, size)
		done()
		if err != nil {
			return err
		}
	}
	path := segPath(l.dir, idxName(s.name))
	if err := writeIndexFile(path, s.first, size, ents); err != nil {
		return err
	}
	xf, err := os.Open(path)
	if err != nil {
		return err
	}
	info, err := xf.Stat()
	var d *diskIndex
	if err == nil {
		d, err = parseIndexHeader(xf, info.Size())
	}
	if err != nil {
		xf.Close()
		return err
	}
	l.idxMu.Lock()
	if s.idxf != nil {
		s.old = append(s.old, s.idxf)
	}
	s.disk, s.idxf, s.mem = d, xf, nil
	l.idxMu.Unlock()
	return nil
}

// compress replaces a sealed segment by its compressed form: written to a
// temporary file (each frame checked by decompressing it), fsynced,
// renamed, opened and checked again, swapped in for readers, and only then
// is the plain file removed. A crash at any point leaves the plain file, or
// both (Open keeps the plain one and removes the other).
func (l *Log) compress(s *segment) error {
	data, done := s.read()
	if data.compressed() {
		done()
		return nil
	}
	size := s.size.Load()
	zname := zsegName(s.first)
	zpath := segPath(l.dir, zname)
	stored, err := compressSegment(data, size, zpath, l.stop)
	done()
	if err != nil {
		return err
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}
	z, err := openZseg(zpath, zname)
	if err == nil && z.size != size {
		z.Close()
		err = fmt.Errorf("%s holds %d bytes, the segment %d", zname, z.size, size)
	}
	if err != nil {
		os.Remove(zpath)
		return err
	}
	s.stored.Store(stored)
	if err := s.replaceData(z); err != nil {
		l.logger.Warn("recorder: closing a segment replaced by its compressed form", "segment", s.name, "err", err)
	}
	if err := os.Remove(segPath(l.dir, s.name)); err != nil {
		return err
	}
	return syncDir(l.dir)
}

// scanIndex reads a segment and returns its index entries, sorted.
func scanIndex(r io.ReaderAt, size int64) ([]idxEntry, error) {
	m := newMemIndex()
	lr := newSegReader(r, 0, size)
	for {
		line, off, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		h, ok := parseHead(line)
		if !ok {
			return nil, fmt.Errorf("line at offset %d is not a record", off)
		}
		if len(h.traceID) > 0 {
			m.add(traceKey(string(h.traceID)), pos{off: uint32(off), n: uint32(len(line) + 1)})
		}
	}
	return m.sorted(), nil
}

// retentionDetails is the Details of a KindRetention record.
type retentionDetails struct {
	Reason            string   `json:"reason"` // max_age, max_total_bytes or both
	Segments          []string `json:"segments"`
	RemovedFirstSeq   uint64   `json:"removed_first_seq"`
	RemovedThroughSeq uint64   `json:"removed_through_seq"`
	RemovedBytes      int64    `json:"removed_bytes"`
	// NextSeq and NextPrevHash describe the oldest kept record: the seq it
	// has and the prev_hash it carries. Verify checks the log starts there.
	NextSeq      uint64 `json:"next_seq"`
	NextPrevHash string `json:"next_prev_hash"`
}

// indexBytes is the size of a segment's index file, 0 if it has none.
func (l *Log) indexBytes(s *segment) int64 {
	l.idxMu.RLock()
	defer l.idxMu.RUnlock()
	if s.disk == nil {
		return 0
	}
	d := s.disk
	return int64(idxHeaderLen) + int64(len(d.fences))*12 + int64(d.count)*idxEntryLen
}

// enforceRetention removes the oldest sealed segments while they are older
// than MaxAge or the log is larger than MaxTotalBytes. The removal is first
// recorded (a KindRetention record, fsynced), then the files go, so the
// chain stays verifiable from the oldest kept segment and the record tells
// Verify where the log must start.
func (l *Log) enforceRetention() error {
	l.maintMu.Lock()
	defer l.maintMu.Unlock()
	now := l.clock()
	l.segMu.RLock()
	segs := append([]*segment(nil), l.segs...)
	l.segMu.RUnlock()
	if len(segs) < 2 {
		return nil
	}
	var total int64
	for i, s := range segs {
		if i == len(segs)-1 {
			total += s.size.Load()
			continue
		}
		total += s.stored.Load() + l.indexBytes(s)
	}
	var byAge, bySize bool
	var removedBytes int64
	n := 0
	for _, s := range segs[:len(segs)-1] {
		old := now.Sub(s.last.time) > l.cfg.MaxAge
		big := total > l.cfg.MaxTotalBytes
		if !old && !big {
			break
		}
		byAge, bySize = byAge || old, bySize || big
		b := s.stored.Load() + l.indexBytes(s)
		total -= b
		removedBytes += b
		n++
	}
	if n == 0 {
		return nil
	}
	remove, lastRemoved := segs[:n], segs[n-1]
	d := retentionDetails{
		RemovedFirstSeq: remove[0].first, RemovedThroughSeq: lastRemoved.last.seq, RemovedBytes: removedBytes,
		NextSeq: lastRemoved.last.seq + 1, NextPrevHash: string(lastRemoved.last.hash[:]),
	}
	switch {
	case byAge && bySize:
		d.Reason = "max_age,max_total_bytes"
	case byAge:
		d.Reason = "max_age"
	default:
		d.Reason = "max_total_bytes"
	}
	for _, s := range remove {
		d.Segments = append(d.Segments, s.name)
	}
	dj, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if _, err := l.append(&Record{Kind: KindRetention, Details: dj}); err != nil {
		return err
	}
	if err := l.syncNow(); err != nil {
		return err
	}
	l.segMu.Lock()
	if len(l.segs) <= n || l.segs[0] != remove[0] {
		l.segMu.Unlock()
		return errors.New("segment list changed under retention")
	}
	l.segs = append([]*segment(nil), l.segs[n:]...)
	l.segMu.Unlock()
	var errs []error
	for _, s := range remove {
		if err := os.Remove(segPath(l.dir, idxName(s.name))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		if err := os.Remove(segPath(l.dir, s.fileName())); err != nil {
			errs = append(errs, err)
		}
		s.retire()
	}
	if err := syncDir(l.dir); err != nil {
		errs = append(errs, err)
	}
	if l.ck != nil {
		if err := l.ck.compact(l.dir, d.NextSeq); err != nil {
			errs = append(errs, fmt.Errorf("compacting checkpoints: %w", err))
		}
	}
	l.logger.Info("recorder: retention removed segments", "dir", l.dir, "reason", d.Reason,
		"segments", strings.Join(d.Segments, ","), "through_seq", d.RemovedThroughSeq, "bytes", removedBytes)
	return errors.Join(errs...)
}
