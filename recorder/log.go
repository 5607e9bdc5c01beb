package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Log is an open flight recorder: the single writer of one directory. Append,
// Trace and Sync are safe for concurrent use.
type Log struct {
	cfg    Config
	dir    string
	logger *slog.Logger
	clock  func() time.Time
	lock   *os.File // flock on dir/LOCK

	// Append state, guarded by mu. The appender holding mu numbers, chains,
	// hashes and writes its record; nothing else happens under it.
	mu       sync.Mutex
	nextSeq  uint64
	prev     [hashHexLen]byte // hash of the last record appended
	written  tip              // last record written
	active   *segment
	out      *segWriter      // the active segment's writable end
	line     []byte          // scratch for the line being written
	dirDirty bool            // a segment was created since the directory was last fsynced
	retired  []retiredWriter // writers of sealed segments, cut and closed by maintenance
	closed   bool
	broken   error
	inflight sync.WaitGroup // SyncAlways appends waiting for their fsync

	syncMu sync.Mutex // one fsync at a time; serialises closing a writer with its use by the group commit

	stMu     sync.Mutex
	synced   tip        // last record known fsynced
	syncing  bool       // an appender is fsyncing for the appenders waiting (SyncAlways)
	syncDone *sync.Cond // on stMu: signalled when that fsync is done
	syncErr  error      // the error of the last such fsync

	segMu sync.RWMutex
	segs  []*segment // oldest first; the last is active

	idxMu sync.RWMutex // guards segment.mem/disk/idxf swaps and memIndex contents

	maintMu sync.Mutex // serialises sealing and retention

	ck *checkpointer // nil without a key

	closedFlag atomic.Bool
	kick       chan struct{} // wakes the maintenance goroutine
	dirty      chan struct{} // wakes the group commit after a write
	stop       chan struct{}
	wg         sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error
}

// tip is a position in the chain.
type tip struct {
	seq  uint64
	hash [hashHexLen]byte
	time time.Time
}

// lineOverhead is what a line adds to its body: seq (at most 20 digits),
// prev_hash, hash, braces and newline.
const lineOverhead = frameMin + 20 + 1

// bodyPool recycles record-body buffers.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// Append assigns r's Seq, PrevHash and Hash (and Time, if zero; Time is
// stored in UTC) and adds it to the log. It returns once the record's bytes
// are in the kernel's page cache (copied into the memory-mapped active
// segment, or handed to pwrite(2)), so a crash of the process cannot lose
// it and the caller may forward the request it describes; with SyncAlways,
// once they were fsynced. Safe for concurrent use; it does not keep r or its
// slices after returning. Errors: ErrInvalidRecord (and ErrInvalidTraceID),
// ErrRecordTooLarge, ErrClosed, ErrBroken, or ctx's error if ctx is done
// before the record is written.
func (l *Log) Append(ctx context.Context, r *Record) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := checkCallerRecord(r); err != nil {
		return 0, err
	}
	return l.append(r)
}

// append adds any record, including the recorder's own kinds.
func (l *Log) append(r *Record) (uint64, error) {
	if r.Time.IsZero() {
		r.Time = l.clock()
	}
	r.Time = r.Time.UTC().Round(0)
	bp := bodyPool.Get().(*[]byte)
	body, err := appendBody((*bp)[:0], r)
	defer func() {
		if cap(body) <= 64<<10 {
			*bp = body[:0]
			bodyPool.Put(bp)
		}
	}()
	if err != nil {
		return 0, err
	}
	lineLen := len(body) + lineOverhead
	if lineLen > l.cfg.MaxRecordBytes {
		return 0, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrRecordTooLarge, lineLen, l.cfg.MaxRecordBytes)
	}
	var key uint64
	if r.TraceID != "" {
		key = traceKey(r.TraceID)
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.broken != nil {
		err := l.broken
		l.mu.Unlock()
		return 0, fmt.Errorf("%w: %w", ErrBroken, err)
	}
	seq := l.nextSeq
	prev := l.prev
	line, h := appendLine(l.line[:0], seq, body, &prev)
	if cap(line) <= 1<<20 {
		l.line = line
	} else {
		l.line = nil // do not keep an outsized buffer
	}
	if err := l.writeLocked(seq, line, key, r.TraceID != "", r.Time); err != nil {
		l.breakLocked(err)
		l.mu.Unlock()
		return 0, fmt.Errorf("%w: %w", ErrBroken, err)
	}
	l.nextSeq++
	l.prev = h
	always := l.cfg.Sync == SyncAlways
	if always {
		l.inflight.Add(1)
	}
	l.mu.Unlock()
	select { // wake the group commit: there is something to fsync
	case l.dirty <- struct{}{}:
	default:
	}
	if always {
		err := l.syncTo(seq)
		l.inflight.Done()
		if err != nil {
			return 0, err
		}
	}
	r.Seq = seq
	r.PrevHash = string(prev[:])
	r.Hash = string(h[:])
	return seq, nil
}

// writeLocked writes one line to the active segment, starting the next
// segment first when the line would take this one past its preallocated
// size, and indexes it. Callers hold mu.
func (l *Log) writeLocked(seq uint64, line []byte, key uint64, indexed bool, t time.Time) error {
	n := int64(len(line))
	off := l.active.size.Load()
	if off+n > l.out.cap {
		var err error
		if off == 0 {
			err = l.out.grow(n)
		} else {
			err = l.rotateLocked(seq, n)
		}
		if err != nil {
			return err
		}
		off = 0
	}
	seg := l.active
	if err := l.out.write(off, line); err != nil {
		return err
	}
	if indexed {
		l.idxMu.Lock()
		seg.mem.add(key, pos{off: uint32(off), n: uint32(n)})
		l.idxMu.Unlock()
	}
	seg.size.Store(off + n)
	tp := tip{seq: seq, time: t}
	copy(tp.hash[:], line[len(line)-1-len(lineEnd)-hashHexLen:])
	seg.last = tp
	l.written = tp
	return nil
}

// breakLocked marks the log broken by err: every later Append fails. After
// a failed write or fsync the state of the file is unknown (the kernel may
// have dropped dirty pages), so nothing later could be trusted to be on
// disk. Callers hold mu.
func (l *Log) breakLocked(err error) {
	if l.broken == nil {
		l.broken = err
		l.logger.Error("recorder: log is broken; appends fail until restart", "dir", l.dir, "err", err)
	}
}

// retiredWriter is the writer of a sealed segment whose records end at size.
type retiredWriter struct {
	w    *segWriter
	size int64
}

// rotateLocked seals the active segment and starts the one whose first
// record is seq next, preallocated for at least need bytes. The sealed
// segment is fsynced first, so only the last segment can ever end in a
// partial line after a crash of the machine. That fsync is the one cost of
// a rotation the appenders wait for; cutting the sealed segment's
// preallocated tail and unmapping it is left to maintenance (readers and
// Open accept a zeroed tail after a sealed segment's records). Callers hold
// mu.
func (l *Log) rotateLocked(next uint64, need int64) error {
	old, ow := l.active, l.out
	if l.dirDirty {
		// The sealed segment counts as fsynced below: its name must be too.
		if err := syncDir(l.dir); err != nil {
			return fmt.Errorf("fsync %s: %w", l.dir, err)
		}
		l.dirDirty = false
	}
	if err := ow.sync(); err != nil {
		return err
	}
	seg, w, err := createSegment(l.dir, next, max(l.cfg.SegmentBytes, need))
	if err != nil {
		return err
	}
	l.active, l.out = seg, w
	l.dirDirty = true // fsynced by the next group commit, before anything in seg counts as fsynced
	l.retired = append(l.retired, retiredWriter{ow, old.size.Load()})
	old.stored.Store(old.size.Load())
	l.segMu.Lock()
	l.segs = append(l.segs, seg)
	l.segMu.Unlock()
	l.stMu.Lock()
	if l.synced.seq < old.last.seq {
		l.synced = old.last
	}
	l.stMu.Unlock()
	l.kickMaint()
	return nil
}

// createSegment creates the segment file whose first record is seq first,
// preallocated to capacity bytes, and opens it for reading too. The caller
// fsyncs the directory before counting anything in it as fsynced.
func createSegment(dir string, first uint64, capacity int64) (*segment, *segWriter, error) {
	name := segName(first)
	w, err := openSegWriter(segPath(dir, name), name, 0, capacity, true)
	if err != nil {
		return nil, nil, fmt.Errorf("create segment %s: %w", name, err)
	}
	data, err := openPlain(dir, name)
	if err != nil {
		w.close()
		return nil, nil, fmt.Errorf("create segment %s: %w", name, err)
	}
	return &segment{name: name, first: first, data: data, mem: newMemIndex()}, w, nil
}

// Sync fsyncs every record appended so far.
func (l *Log) Sync() error {
	if l.closedFlag.Load() {
		return ErrClosed
	}
	return l.syncNow()
}

// syncNow fsyncs the active segment (and the directory, after a segment
// was created) if records were written since the last fsync, then does the
// mapping's page upkeep. A failed fsync breaks the log: after it the kernel
// may have dropped the dirty pages, so nothing later can be trusted to be
// on disk.
func (l *Log) syncNow() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	w, out, dirDirty, at := l.written, l.out, l.dirDirty, l.active.size.Load()
	l.dirDirty = false
	l.mu.Unlock()
	if dirDirty {
		if err := syncDir(l.dir); err != nil {
			l.mu.Lock()
			l.dirDirty = true
			l.mu.Unlock()
			return l.breakWith(fmt.Errorf("fsync %s: %w", l.dir, err))
		}
	}
	l.stMu.Lock()
	s := l.synced
	l.stMu.Unlock()
	if w.seq > s.seq {
		out.dropBehind(at)
		// out holds every record up to w: a rotation fsyncs the segment it
		// seals before it switches.
		if err := out.sync(); err != nil {
			return l.breakWith(err)
		}
		l.stMu.Lock()
		if l.synced.seq < w.seq {
			l.synced = w
		}
		l.stMu.Unlock()
	}
	out.populateAhead(at)
	return nil
}

// syncTo returns once record seq is fsynced, sharing the fsync with every
// appender waiting at the same time (group commit): one of them fsyncs
// everything written so far while the others wait, and are all woken at
// once when it is done; whoever is not covered then starts the next fsync.
func (l *Log) syncTo(seq uint64) error {
	l.stMu.Lock()
	defer l.stMu.Unlock()
	for l.synced.seq < seq {
		if l.syncing {
			l.syncDone.Wait()
			if l.syncErr != nil {
				return l.syncErr
			}
			continue
		}
		l.syncing = true
		l.stMu.Unlock()
		err := l.syncNow()
		l.stMu.Lock()
		l.syncing, l.syncErr = false, err
		l.syncDone.Broadcast()
		if err != nil {
			return err
		}
	}
	return nil
}

// breakWith breaks the log by err and returns it wrapped in ErrBroken.
func (l *Log) breakWith(err error) error {
	l.mu.Lock()
	l.breakLocked(err)
	l.mu.Unlock()
	return fmt.Errorf("%w: %w", ErrBroken, err)
}

// syncLoop is the group commit of SyncBatch and the checkpoint timer.
func (l *Log) syncLoop() {
	defer l.wg.Done()
	// Sleep until something was written, then give concurrent writers one
	// interval to join the same fsync. An idle log does not wake up.
	t := time.NewTimer(l.cfg.SyncInterval)
	t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-l.dirty:
		}
		t.Reset(l.cfg.SyncInterval)
		select {
		case <-l.stop:
			t.Stop()
			return
		case <-t.C:
		}
		if err := l.syncNow(); err != nil {
			continue // logged by syncNow; appends now fail
		}
		l.maybeCheckpoint(false)
	}
}

func (l *Log) kickMaint() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Stats is a snapshot of the log's counters.
type Stats struct {
	NextSeq     uint64 // seq the next record gets
	WrittenSeq  uint64 // last seq written (in the page cache)
	SyncedSeq   uint64 // last seq known fsynced
	Segments    int    // segments, the active one included
	Bytes       int64  // bytes of all segments on disk (compressed ones as stored), the active one's records included
	ActiveBytes int64  // bytes of records in the active segment
	// CompressedSegments counts the sealed segments stored compressed.
	CompressedSegments int
}

// Stats returns a snapshot of the log's counters.
func (l *Log) Stats() Stats {
	var st Stats
	l.mu.Lock()
	st.NextSeq, st.WrittenSeq = l.nextSeq, l.written.seq
	l.mu.Unlock()
	l.stMu.Lock()
	st.SyncedSeq = l.synced.seq
	l.stMu.Unlock()
	l.segMu.RLock()
	st.Segments = len(l.segs)
	for i, s := range l.segs {
		if i == len(l.segs)-1 {
			st.ActiveBytes = s.size.Load()
			st.Bytes += st.ActiveBytes
			continue
		}
		st.Bytes += s.stored.Load()
		if d, done := s.read(); d != nil {
			if d.compressed() {
				st.CompressedSegments++
			}
			done()
		} else {
			done()
		}
	}
	l.segMu.RUnlock()
	return st
}

// Close stops accepting records, waits for the appends in flight, fsyncs,
// writes a final checkpoint (with a key), cuts the active segment's
// preallocated tail, and closes the files. It is idempotent and returns the
// first close error every time.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.closedFlag.Store(true)
		l.mu.Unlock()
		l.inflight.Wait()
		close(l.stop)
		l.wg.Wait()
		var errs []error
		if err := l.syncNow(); err != nil {
			errs = append(errs, err)
		}
		l.maybeCheckpoint(true)
		if l.ck != nil {
			errs = append(errs, l.ck.close())
		}
		l.mu.Lock()
		if l.broken == nil {
			// Leave the segment as long as its records; the next Open
			// preallocates it again.
			errs = append(errs, l.out.seal(l.active.size.Load()))
		}
		errs = append(errs, l.out.close())
		l.mu.Unlock()
		errs = append(errs, l.closeRetired())
		l.segMu.Lock()
		for _, s := range l.segs {
			s.retire()
		}
		l.segs = nil
		l.segMu.Unlock()
		errs = append(errs, unlockDir(l.lock))
		if err := errors.Join(errs...); err != nil {
			l.closeErr = fmt.Errorf("recorder: close %s: %w", l.dir, err)
		}
	})
	return l.closeErr
}
