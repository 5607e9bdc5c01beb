package recorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
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

	// Append state, guarded by mu.
	mu           sync.Mutex
	space        *sync.Cond // signalled when cur is swapped out
	nextSeq      uint64
	prev         [hashHexLen]byte // hash of the last record appended
	cur          *batch           // records waiting for the next write
	writing      bool             // a leader is writing; cur waits for it
	closed       bool
	broken       error
	inflight     sync.WaitGroup // appends between enqueue and return
	pendingLimit int            // maxPendingBytes; tests lower it
	encoding     atomic.Int32   // appenders encoding a record, about to queue it
	lastBatch    atomic.Int32   // records in the last batch written
	maxBatch     int            // high-water mark of len(cur.buf), for tests

	// Writer state, owned by the current leader (one at a time; leadership
	// passes under mu). syncMu also guards wf against the syncer.
	active *segment
	wf     *os.File

	syncMu sync.Mutex // serialises fsync of wf with rotation

	stMu    sync.Mutex
	written tip // last record handed to write(2)
	synced  tip // last record known fsynced

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

// batch is a group of records written with one write(2) call.
type batch struct {
	buf  []byte
	ents []batchEnt
	done chan struct{} // closed once written (or failed)
	lead chan struct{} // receives one token when a member must write it
	err  error
}

// batchEnt is one record of a batch.
type batchEnt struct {
	seq     uint64
	key     uint64
	indexed bool
	off, n  uint32 // line position in batch.buf
	unix    int64  // record time, unix nanoseconds
}

// batchBufs are the buffers of a batch, recycled once it is written.
type batchBufs struct {
	buf  []byte
	ents []batchEnt
}

var batchPool = sync.Pool{New: func() any {
	return &batchBufs{buf: make([]byte, 0, 16<<10), ents: make([]batchEnt, 0, 32)}
}}

func newBatch() *batch {
	bb := batchPool.Get().(*batchBufs)
	return &batch{buf: bb.buf[:0], ents: bb.ents[:0], done: make(chan struct{}), lead: make(chan struct{}, 1)}
}

// recycle returns b's buffers to the pool; b must not be used for them again.
func (b *batch) recycle() {
	if cap(b.buf) > 1<<20 {
		return // do not keep an outsized buffer
	}
	batchPool.Put(&batchBufs{buf: b.buf[:0], ents: b.ents[:0]})
	b.buf, b.ents = nil, nil
}

// lineOverhead is what a line adds to its body: seq (at most 20 digits),
// prev_hash, hash, braces and newline.
const lineOverhead = frameMin + 20 + 1

// bodyPool recycles record-body buffers.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPendingBytes bounds the bytes waiting for a write beyond one record;
// appenders wait while the batch being filled is larger.
const maxPendingBytes = 4 << 20

// Append assigns r's Seq, PrevHash and Hash (and Time, if zero; Time is
// stored in UTC) and adds it to the log. It returns once the record's bytes
// were handed to write(2) — with SyncAlways, once they were fsynced — so the
// caller may forward the request it describes. Safe for concurrent use; it
// does not keep r or its slices after returning. Errors: ErrInvalidRecord
// (and ErrInvalidTraceID), ErrRecordTooLarge, ErrClosed, ErrBroken, or ctx's
// error if ctx is done before the record is queued.
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
	l.encoding.Add(1)
	bp := bodyPool.Get().(*[]byte)
	body, err := appendBody((*bp)[:0], r)
	defer func() {
		if cap(body) <= 64<<10 {
			*bp = body[:0]
			bodyPool.Put(bp)
		}
	}()
	if err != nil {
		l.encoding.Add(-1)
		return 0, err
	}
	lineLen := len(body) + lineOverhead
	if lineLen > l.cfg.MaxRecordBytes {
		l.encoding.Add(-1)
		return 0, fmt.Errorf("%w: %d bytes encoded, limit %d", ErrRecordTooLarge, lineLen, l.cfg.MaxRecordBytes)
	}
	var key uint64
	if r.TraceID != "" {
		key = traceKey(r.TraceID)
	}

	l.mu.Lock()
	l.encoding.Add(-1)
	for {
		if l.closed {
			l.mu.Unlock()
			return 0, ErrClosed
		}
		if l.broken != nil {
			err := l.broken
			l.mu.Unlock()
			return 0, fmt.Errorf("%w: %w", ErrBroken, err)
		}
		if len(l.cur.buf) == 0 || len(l.cur.buf)+lineLen <= l.pendingLimit {
			break
		}
		l.space.Wait()
	}
	seq := l.nextSeq
	l.nextSeq++
	b := l.cur
	off := len(b.buf)
	prev := l.prev
	var h [hashHexLen]byte
	b.buf, h = appendLine(b.buf, seq, body, &prev)
	l.prev = h
	b.ents = append(b.ents, batchEnt{
		seq: seq, key: key, indexed: r.TraceID != "",
		off: uint32(off), n: uint32(len(b.buf) - off), unix: r.Time.UnixNano(),
	})
	l.maxBatch = max(l.maxBatch, len(b.buf))
	leader := !l.writing
	if leader {
		l.writing = true
	}
	l.inflight.Add(1)
	l.mu.Unlock()
	if leader {
		l.yieldToEncoders()
		l.mu.Lock()
		l.cur = newBatch()
		l.space.Broadcast()
		l.mu.Unlock()
	}

	if !leader {
		select {
		case <-b.done:
		case <-b.lead:
			// The previous leader handed over: take the batch (it is still
			// l.cur, since only a leader swaps it) and write it.
			l.yieldToEncoders()
			l.mu.Lock()
			l.cur = newBatch()
			l.space.Broadcast()
			l.mu.Unlock()
			leader = true
		}
	}
	if leader {
		l.lead(b)
	}
	err = b.err
	l.inflight.Done()
	if err != nil {
		return 0, err
	}
	r.Seq = seq
	r.PrevHash = string(prev[:])
	r.Hash = string(h[:])
	return seq, nil
}

// yieldToEncoders lets appenders that are encoding a record run first, so
// that they join the batch about to be written instead of waiting for the
// next write. With none (light load) it returns at once: yielding would
// only add scheduling latency.
func (l *Log) yieldToEncoders() {
	if l.encoding.Load() > 0 || l.lastBatch.Load() > 1 {
		runtime.Gosched()
	}
}

// lead writes b, releases its members, and hands the writer role to a member
// of the next batch, if any, so that no appender writes more than one batch.
func (l *Log) lead(b *batch) {
	l.lastBatch.Store(int32(len(b.ents)))
	if err := l.writeBatch(b); err != nil {
		l.mu.Lock()
		if l.broken == nil {
			l.broken = err
			l.logger.Error("recorder: log is broken; appends fail until restart", "dir", l.dir, "err", err)
		}
		l.mu.Unlock()
		if !errors.Is(err, ErrBroken) {
			err = fmt.Errorf("%w: %w", ErrBroken, err)
		}
		b.err = err
	}
	b.recycle()
	close(b.done)
	l.mu.Lock()
	if len(l.cur.ents) > 0 {
		l.cur.lead <- struct{}{}
	} else {
		l.writing = false
	}
	l.mu.Unlock()
}

// writeBatch writes b to the active segment, rotating where a record would
// take the segment past SegmentBytes, and indexes it. With SyncAlways it
// fsyncs before returning.
func (l *Log) writeBatch(b *batch) error {
	l.mu.Lock()
	broken := l.broken
	l.mu.Unlock()
	if broken != nil {
		return broken
	}
	from := 0
	for i, e := range b.ents {
		size := l.active.size.Load()
		if size+int64(int(e.off)-from) > 0 && size+int64(int(e.off+e.n)-from) > l.cfg.SegmentBytes {
			if err := l.flush(b, from, i); err != nil {
				return err
			}
			if err := l.rotate(e.seq); err != nil {
				return err
			}
			from = int(e.off)
		}
	}
	if err := l.flush(b, from, len(b.ents)); err != nil {
		return err
	}
	if l.cfg.Sync == SyncAlways {
		return l.syncNow()
	}
	return nil
}

// flush writes the records of b from byte offset from up to entry end (not
// included) to the active segment and indexes them.
func (l *Log) flush(b *batch, from, end int) error {
	first := 0
	for first < end && int(b.ents[first].off) < from {
		first++
	}
	if first == end {
		return nil
	}
	last := b.ents[end-1]
	to := int(last.off + last.n)
	seg := l.active
	size := seg.size.Load()
	if _, err := l.wf.Write(b.buf[from:to]); err != nil {
		// Cut a partial write so the segment ends with a whole record.
		if terr := l.wf.Truncate(size); terr != nil {
			return fmt.Errorf("write %s: %w (and truncating back failed: %v)", seg.name, err, terr)
		}
		return fmt.Errorf("write %s: %w", seg.name, err)
	}
	l.idxMu.Lock()
	for _, e := range b.ents[first:end] {
		if e.indexed {
			seg.mem.add(e.key, pos{off: uint32(size + int64(int(e.off)-from)), n: e.n})
		}
	}
	l.idxMu.Unlock()
	seg.size.Store(size + int64(to-from))
	var t tip
	t.seq = last.seq
	copy(t.hash[:], b.buf[to-len(lineEnd)-1-hashHexLen:])
	t.time = time.Unix(0, last.unix).UTC()
	seg.last = t
	l.stMu.Lock()
	l.written = t
	l.stMu.Unlock()
	select { // wake the group commit: there is something to fsync
	case l.dirty <- struct{}{}:
	default:
	}
	return nil
}

// rotate seals the active segment and starts the one whose first record is
// seq next. The sealed segment is fsynced first, so only the last segment
// can ever end in a torn line.
func (l *Log) rotate(next uint64) error {
	l.syncMu.Lock()
	old, oldf := l.active, l.wf
	if err := oldf.Sync(); err != nil {
		l.syncMu.Unlock()
		return fmt.Errorf("fsync %s: %w", old.name, err)
	}
	seg, wf, err := createSegment(l.dir, next)
	if err != nil {
		l.syncMu.Unlock()
		return err
	}
	l.wf = wf
	l.active = seg
	l.segMu.Lock()
	l.segs = append(l.segs, seg)
	l.segMu.Unlock()
	l.syncMu.Unlock()
	l.stMu.Lock()
	if l.synced.seq < old.last.seq {
		l.synced = old.last
	}
	l.stMu.Unlock()
	if err := oldf.Close(); err != nil {
		l.logger.Warn("recorder: closing sealed segment", "segment", old.name, "err", err)
	}
	l.kickMaint()
	return nil
}

// createSegment creates the segment file whose first record is seq first,
// fsyncs the directory, and opens it for reading too.
func createSegment(dir string, first uint64) (*segment, *os.File, error) {
	name := segName(first)
	wf, err := os.OpenFile(segPath(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("create segment: %w", err)
	}
	rf, err := os.Open(segPath(dir, name))
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		wf.Close()
		if rf != nil {
			rf.Close()
		}
		return nil, nil, fmt.Errorf("create segment %s: %w", name, err)
	}
	return &segment{name: name, first: first, rf: rf, mem: newMemIndex()}, wf, nil
}

// Sync fsyncs every record appended so far.
func (l *Log) Sync() error {
	if l.closedFlag.Load() {
		return ErrClosed
	}
	return l.syncNow()
}

// syncNow fsyncs the active segment if records were written since the last
// fsync. A failed fsync breaks the log: after it the kernel may have dropped
// the dirty pages, so nothing later can be trusted to be on disk.
func (l *Log) syncNow() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.stMu.Lock()
	w, s := l.written, l.synced
	l.stMu.Unlock()
	if w.seq <= s.seq {
		return nil
	}
	if err := l.wf.Sync(); err != nil {
		err = fmt.Errorf("fsync %s: %w", l.active.name, err)
		l.mu.Lock()
		if l.broken == nil {
			l.broken = err
			l.logger.Error("recorder: log is broken; appends fail until restart", "dir", l.dir, "err", err)
		}
		l.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrBroken, err)
	}
	l.stMu.Lock()
	if l.synced.seq < w.seq {
		l.synced = w
	}
	l.stMu.Unlock()
	return nil
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
	WrittenSeq  uint64 // last seq handed to write(2)
	SyncedSeq   uint64 // last seq known fsynced
	Segments    int    // segment files, the active one included
	Bytes       int64  // bytes of all segments
	ActiveBytes int64  // bytes of the active segment
}

// Stats returns a snapshot of the log's counters.
func (l *Log) Stats() Stats {
	var st Stats
	l.mu.Lock()
	st.NextSeq = l.nextSeq
	l.mu.Unlock()
	l.stMu.Lock()
	st.WrittenSeq, st.SyncedSeq = l.written.seq, l.synced.seq
	l.stMu.Unlock()
	l.segMu.RLock()
	st.Segments = len(l.segs)
	for _, s := range l.segs {
		st.Bytes += s.size.Load()
	}
	if len(l.segs) > 0 {
		st.ActiveBytes = l.segs[len(l.segs)-1].size.Load()
	}
	l.segMu.RUnlock()
	return st
}

// Close stops accepting records, waits for the appends in flight, fsyncs,
// writes a final checkpoint (with a key), and closes the files. It is
// idempotent and returns the first close error every time.
func (l *Log) Close() error {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.closedFlag.Store(true)
		l.space.Broadcast()
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
		errs = append(errs, l.wf.Close())
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
