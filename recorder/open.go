package recorder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Open opens (creating if needed) the log in cfg.Dir and takes its lock.
//
// Start-up checks the log: every segment's first and last record (hash, seq
// continuity, link to the previous segment, file name), the whole active
// segment (which also rebuilds its in-memory index), and the newest
// checkpoint (the log must reach it and match its hash). The records of the
// last segment end at the first NUL byte where a line would start (its
// preallocated tail) or at the end of the file; non-zero bytes after the
// last whole record — a line a crash cut mid-copy, or pages a crash of the
// machine wrote back out of order — are cut away, logged with their byte
// count, and recorded as a KindRecovery record; the chain continues from
// the last whole record. A sealed segment whose preallocated tail a crash
// left uncut is cut, and a compressed copy beside its plain segment (a crash
// mid-compression) removed. Any other failure is a
// *VerifyError (wrapping ErrCorrupt) naming the segment and seq, unless
// cfg.Recover is set: then the files are moved to a recovered-<time>
// subdirectory and a new chain starts with a KindRecovery record saying why.
// Interior records of sealed segments are checked by Verify, not here.
func Open(ctx context.Context, cfg Config) (*Log, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("recorder: open: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("recorder: open %s: %w", cfg.Dir, err)
	}
	l := &Log{
		cfg: cfg, dir: cfg.Dir, logger: cfg.Logger, clock: cfg.Clock, lock: lock,
		kick: make(chan struct{}, 1), dirty: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	l.syncDone = sync.NewCond(&l.stMu)
	pending, err := l.start(ctx)
	if err != nil {
		unlockDir(lock)
		return nil, fmt.Errorf("recorder: open %s: %w", cfg.Dir, err)
	}
	for _, r := range pending {
		if _, err := l.append(r); err != nil {
			l.Close()
			return nil, fmt.Errorf("recorder: open %s: recording start-up repair: %w", cfg.Dir, err)
		}
	}
	return l, nil
}

// start loads the directory, repairs what may be repaired, opens the active
// segment and starts the background goroutines. It returns the records that
// describe repairs, to be appended once running.
func (l *Log) start(ctx context.Context) ([]*Record, error) {
	removeTemps(l.dir)
	st, err := load(ctx, l.dir, l.logger)
	var pending []*Record
	var ve *VerifyError
	if err != nil && errors.As(err, &ve) && l.cfg.Recover {
		st.closeAll()
		moved, merr := moveAside(l.dir, l.clock())
		if merr != nil {
			return nil, fmt.Errorf("%w (and moving the log aside failed: %v)", err, merr)
		}
		l.logger.Error("recorder: log failed verification; starting a new chain (--recorder-recover)",
			"dir", l.dir, "problem", err.Error(), "moved_to", moved)
		details, _ := json.Marshal(map[string]any{
			"action": "new_chain", "reason": ve.Error(), "moved_to": moved, "previous_max_seq": st.maxSeq,
		})
		pending = append(pending, &Record{Kind: KindRecovery, Details: details})
		st = &loaded{next: st.maxSeq + 1}
		err = nil
	}
	if err != nil {
		if st != nil {
			st.closeAll()
		}
		return nil, err
	}
	for _, u := range st.unsealed {
		if err := cutTail(segPath(l.dir, u.seg.name), u.size); err != nil {
			st.closeAll()
			return nil, fmt.Errorf("cutting the preallocated tail of %s: %w", u.seg.name, err)
		}
		l.logger.Warn("recorder: cut the preallocated tail of a segment a crash left unsealed", "segment", u.seg.name)
	}
	for _, name := range st.shadows {
		// A crash between compressing a segment and removing the original:
		// the original is kept and compressed again.
		if err := os.Remove(segPath(l.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.logger.Warn("recorder: removing a compressed copy beside its segment", "file", name, "err", err)
		}
	}
	if st.tornBytes > 0 {
		last := st.segs[len(st.segs)-1]
		if err := cutTail(segPath(l.dir, last.name), st.tornAt); err != nil {
			st.closeAll()
			return nil, fmt.Errorf("cutting the torn tail of %s: %w", last.name, err)
		}
		l.logger.Warn("recorder: cut a torn last line left by a crash mid-write",
			"segment", last.name, "bytes", st.tornBytes, "after_seq", st.last.seq)
		details, _ := json.Marshal(map[string]any{
			"action": "torn_tail_truncated", "segment": last.name, "bytes": st.tornBytes, "after_seq": st.last.seq,
		})
		pending = append(pending, &Record{Kind: KindRecovery, Details: details})
	}
	if st.ckTorn > 0 {
		if err := cutTail(segPath(l.dir, checkpointsFile), st.ckEnd); err != nil {
			st.closeAll()
			return nil, fmt.Errorf("cutting the torn tail of %s: %w", checkpointsFile, err)
		}
		l.logger.Warn("recorder: cut a torn last checkpoint line", "bytes", st.ckTorn)
	}

	l.nextSeq = st.next
	l.prev = st.last.hash
	if st.last.seq == 0 {
		l.prev = zeroHash
	}
	l.written, l.synced = st.last, st.last
	l.segs = st.segs
	if err := l.openActive(); err != nil {
		st.closeAll()
		return nil, err
	}
	if l.cfg.CheckpointKey != nil {
		l.ck = &checkpointer{key: l.cfg.CheckpointKey, keyID: l.cfg.CheckpointKeyID,
			path: segPath(l.dir, checkpointsFile), last: st.lastCk, lastAt: l.clock()}
		if st.lastCk.Seq != 0 {
			l.ck.lastAt = st.lastCk.Time
		}
	}
	l.wg.Add(2)
	go l.syncLoop()
	go l.maintLoop()
	return pending, nil
}

// openActive opens the last segment for appending — preallocated again and
// mapped — or creates one when there is none or the last one is compressed.
func (l *Log) openActive() error {
	if n := len(l.segs); n > 0 {
		if last := l.segs[n-1]; !last.data.compressed() {
			size := last.size.Load()
			w, err := openSegWriter(segPath(l.dir, last.name), last.name, size, max(l.cfg.SegmentBytes, size), false)
			if err == nil {
				// What the previous process wrote may sit in the page cache only.
				if err = w.sync(); err != nil {
					w.close()
				}
			}
			if err != nil {
				return err
			}
			if last.mem == nil {
				last.mem = newMemIndex()
			}
			l.active, l.out = last, w
			return nil
		}
	}
	seg, w, err := createSegment(l.dir, l.nextSeq, l.cfg.SegmentBytes)
	if err != nil {
		return err
	}
	l.segs = append(l.segs, seg)
	l.active, l.out, l.dirDirty = seg, w, true
	return nil
}

// loaded is what load found.
type loaded struct {
	segs      []*segment
	next      uint64 // seq of the next record
	last      tip    // last whole record (zero if none)
	tornAt    int64  // offset of a torn last line in the last segment
	tornBytes int64  // its length; 0 if none
	ckEnd     int64  // end of the last whole checkpoint line
	ckTorn    int64  // bytes of a torn last checkpoint line
	lastCk    Checkpoint
	maxSeq    uint64 // highest seq seen anywhere, to number a new chain
	unsealed  []unsealed
	shadows   []string // compressed copies beside their plain segment
}

// unsealed is a sealed segment whose preallocated tail was not cut (a crash
// right after the next segment started): size is where its records end.
type unsealed struct {
	seg  *segment
	size int64
}

func (st *loaded) closeAll() {
	for _, s := range st.segs {
		s.closeFiles()
	}
	st.segs = nil
}

// load reads and checks the directory. On a verification failure it returns
// a *VerifyError together with st (files closed) so that maxSeq is known.
func load(ctx context.Context, dir string, logger *slog.Logger) (*loaded, error) {
	st := &loaded{next: 1}
	files, err := listSegments(dir)
	if err != nil {
		return st, err
	}
	cks, ckEnd, ckTorn, err := readCheckpoints(segPath(dir, checkpointsFile))
	if err != nil {
		return st, err
	}
	st.ckEnd, st.ckTorn = ckEnd, ckTorn
	var ck *Checkpoint
	if n := len(cks); n > 0 {
		ck = &cks[n-1]
		st.lastCk = *ck
		st.maxSeq = ck.Seq
	}
	for _, sf := range files {
		st.maxSeq = max(st.maxSeq, sf.first)
	}
	fail := func(err error) (*loaded, error) {
		st.closeAll()
		return st, err
	}
	var ckHash []byte
	for i, sf := range files {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		if sf.shadow != "" {
			st.shadows = append(st.shadows, sf.shadow)
		}
		data, err := openFileData(dir, sf)
		if err != nil {
			return fail(err)
		}
		seg := &segment{name: segName(sf.first), first: sf.first, data: data}
		var prev *tip
		if i > 0 {
			prev = &st.segs[i-1].last
		}
		st.segs = append(st.segs, seg)
		if i < len(files)-1 {
			end, err := loadSealed(dir, seg, prev, logger)
			if err != nil {
				return fail(err)
			}
			if size, _ := data.dataSize(); end < size {
				st.unsealed = append(st.unsealed, unsealed{seg, end})
			}
		} else {
			var want uint64
			if ck != nil {
				want = ck.Seq
			}
			if ckHash, err = st.loadActive(seg, prev, want); err != nil {
				return fail(err)
			}
		}
		st.maxSeq = max(st.maxSeq, seg.last.seq)
	}
	if n := len(st.segs); n > 0 {
		st.last = st.segs[n-1].last
		st.next = st.last.seq + 1
		if st.last.seq == 0 {
			st.next = st.segs[n-1].first
		}
	}
	if st.last.seq == 0 && len(st.segs) > 0 && ck == nil {
		// Nothing but an empty segment (a crash right after creating it):
		// start afresh.
		for _, s := range st.segs {
			s.closeFiles()
			os.Remove(segPath(dir, s.data.fileName()))
		}
		st.segs, st.next = nil, 1
	}
	if ck == nil {
		return st, nil
	}
	lastName := checkpointsFile
	if n := len(st.segs); n > 0 {
		lastName = st.segs[n-1].name
	}
	if ck.Seq > st.last.seq {
		return fail(&VerifyError{Segment: lastName, Seq: st.last.seq + 1, Problem: ProblemTruncated,
			Detail: fmt.Sprintf("the log ends at seq %d but the checkpoint signed at %s covers seq %d",
				st.last.seq, ck.Time.Format(time.RFC3339), ck.Seq)})
	}
	if len(st.segs) == 0 || ck.Seq < st.segs[0].first {
		return st, nil // removed by retention
	}
	seg := st.segs[len(st.segs)-1]
	if ckHash == nil {
		for i := len(st.segs) - 1; i >= 0; i-- {
			if st.segs[i].first <= ck.Seq {
				seg = st.segs[i]
				break
			}
		}
		if ckHash, err = hashOfSeq(seg, ck.Seq); err != nil {
			return fail(err)
		}
	}
	if string(ckHash) != ck.Hash {
		return fail(&VerifyError{Segment: seg.name, Seq: ck.Seq, Problem: ProblemEdited,
			Detail: "the record does not match the signed checkpoint: it or an earlier record was rewritten"})
	}
	return st, nil
}

// checkLink checks that a record with frame f follows prev (nil: the first
// record of the directory, or of a segment named first with nothing before).
func checkLink(seg string, f frame, prev *tip, kind []byte) error {
	if prev == nil || prev.seq == 0 {
		if f.prev == zeroHash && f.seq != 1 && string(kind) != string(KindRecovery) {
			return &VerifyError{Segment: seg, Seq: f.seq, Problem: ProblemDeleted,
				Detail: "a chain starts here, but only seq 1 or a recovery record may start one"}
		}
		return nil
	}
	switch {
	case f.seq > prev.seq+1:
		return &VerifyError{Segment: seg, Seq: prev.seq + 1, Problem: ProblemDeleted,
			Detail: fmt.Sprintf("seq %d follows seq %d: seq %d to %d are missing", f.seq, prev.seq, prev.seq+1, f.seq-1)}
	case f.seq <= prev.seq:
		return &VerifyError{Segment: seg, Seq: f.seq, Problem: ProblemReordered,
			Detail: fmt.Sprintf("seq %d appears after seq %d", f.seq, prev.seq)}
	case f.prev != prev.hash:
		return &VerifyError{Segment: seg, Seq: f.seq, Problem: ProblemEdited,
			Detail: fmt.Sprintf("prev_hash does not match the hash of seq %d: that record was rewritten", prev.seq)}
	}
	return nil
}

// checkLine parses and checks one line: frame, hash, canonical head.
func checkLine(seg string, line []byte) (frame, head, error) {
	f, err := parseFrame(line)
	if err != nil {
		seq := uint64(0)
		if h, ok := parseHead(line); ok {
			seq = h.seq
		}
		return f, head{}, &VerifyError{Segment: seg, Seq: seq, Problem: ProblemEdited, Detail: "line is not a record: " + err.Error()}
	}
	if !f.hashOK {
		return f, head{}, &VerifyError{Segment: seg, Seq: f.seq, Problem: ProblemEdited, Detail: "hash does not match the record's bytes"}
	}
	h, ok := parseHead(line)
	if !ok || h.seq != f.seq || !validKind(Kind(h.kind)) || (len(h.traceID) > 0 && !ValidTraceID(string(h.traceID))) {
		return f, h, &VerifyError{Segment: seg, Seq: f.seq, Problem: ProblemEdited, Detail: "record is not in canonical form"}
	}
	return f, h, nil
}

// openFileData opens a listed segment file. A compressed segment whose seek
// table does not parse is a *VerifyError.
func openFileData(dir string, sf segFile) (segData, error) {
	if !sf.compressed {
		return openPlain(dir, sf.name)
	}
	z, err := openZseg(segPath(dir, sf.name), sf.name)
	if errors.Is(err, errZseg) {
		return nil, &VerifyError{Segment: sf.name, Seq: sf.first, Problem: ProblemEdited, Detail: err.Error()}
	}
	return z, err
}

// loadSealed checks a sealed segment's first and last record and loads its
// index file if it is usable (else maintenance rebuilds it). It returns
// where the records end: the data size, less a zeroed preallocated tail
// that a crash left uncut.
func loadSealed(dir string, seg *segment, prev *tip, logger *slog.Logger) (int64, error) {
	size, err := seg.data.dataSize()
	if err != nil {
		return 0, err
	}
	if !seg.data.compressed() {
		if size, err = trimZeroTail(seg.data, size); err != nil {
			return 0, err
		}
	}
	name := seg.data.fileName()
	if size == 0 {
		return 0, &VerifyError{Segment: name, Seq: seg.first, Problem: ProblemTruncated, Detail: "segment is empty but is not the last one"}
	}
	first, err := firstLineAt(seg.data, size)
	if err != nil {
		return 0, &VerifyError{Segment: name, Seq: seg.first, Problem: ProblemTruncated, Detail: "first record: " + err.Error()}
	}
	f, h, err := checkLine(name, first)
	if err != nil {
		return 0, err
	}
	if err := checkLink(name, f, prev, h.kind); err != nil {
		return 0, err
	}
	if f.seq != seg.first {
		return 0, &VerifyError{Segment: name, Seq: f.seq, Problem: ProblemEdited,
			Detail: fmt.Sprintf("segment file is named for seq %d but starts with seq %d", seg.first, f.seq)}
	}
	lastLine, _, err := lastLineAt(seg.data, size)
	if err != nil {
		return 0, &VerifyError{Segment: name, Seq: seg.first, Problem: ProblemTruncated,
			Detail: "segment does not end with a whole record: " + err.Error()}
	}
	lf, _, err := checkLine(name, lastLine)
	if err != nil {
		return 0, err
	}
	if lf.seq < f.seq {
		return 0, &VerifyError{Segment: name, Seq: lf.seq, Problem: ProblemReordered, Detail: "the last record's seq is below the first's"}
	}
	t, _ := recordTime(lastLine)
	seg.last = tip{seq: lf.seq, hash: lf.hash, time: t}
	seg.size.Store(size)
	if err := storeSize(seg, size); err != nil {
		return 0, err
	}
	xf, err := os.Open(segPath(dir, idxName(seg.name)))
	if err != nil {
		logger.Info("recorder: index missing; rebuilding it in the background", "segment", seg.name)
		return size, nil
	}
	info, err := xf.Stat()
	var d *diskIndex
	if err == nil {
		d, err = parseIndexHeader(xf, info.Size())
	}
	if err == nil && (d.firstSeq != seg.first || d.segBytes != size) {
		err = fmt.Errorf("%w: it describes another segment", errIndex)
	}
	if err != nil {
		xf.Close()
		logger.Warn("recorder: index unusable; rebuilding it in the background", "segment", seg.name, "err", err)
		return size, nil
	}
	seg.disk, seg.idxf = d, xf
	return size, nil
}

// loadActive checks every record of the last segment and indexes it in
// memory. Its records end at a NUL byte where a line would start (the
// preallocated tail) or at the end of the file; non-zero bytes after the
// last whole record — a line cut by a crash mid-copy, or pages a machine
// crash wrote back without the ones before them — are noted in st as torn,
// not cut. It returns the hash of record ckSeq if the segment holds it.
func (st *loaded) loadActive(seg *segment, prev *tip, ckSeq uint64) ([]byte, error) {
	seg.mem = newMemIndex()
	name := seg.data.fileName()
	if prev != nil {
		seg.last = *prev
	}
	if prev != nil && seg.first != prev.seq+1 {
		p := ProblemDeleted
		if seg.first <= prev.seq {
			p = ProblemReordered
		}
		return nil, &VerifyError{Segment: name, Seq: prev.seq + 1, Problem: p,
			Detail: fmt.Sprintf("segment file is named for seq %d but the previous segment ends at seq %d", seg.first, prev.seq)}
	}
	size, err := seg.data.dataSize()
	if err != nil {
		return nil, err
	}
	var ckHash []byte
	lr := newSegReader(seg.data, 0, size)
	var lastLine []byte
	end := int64(0)
	for {
		line, off, err := lr.next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, errPartial) {
			break
		}
		if err != nil {
			return nil, &VerifyError{Segment: name, Seq: seg.last.seq + 1, Problem: ProblemEdited, Detail: err.Error()}
		}
		f, h, err := checkLine(name, line)
		if err != nil {
			return nil, err
		}
		p := &seg.last
		if seg.last.seq == 0 {
			p = nil
		}
		if err := checkLink(name, f, p, h.kind); err != nil {
			return nil, err
		}
		if off == 0 && f.seq != seg.first {
			return nil, &VerifyError{Segment: name, Seq: f.seq, Problem: ProblemEdited,
				Detail: fmt.Sprintf("segment file is named for seq %d but starts with seq %d", seg.first, f.seq)}
		}
		if len(h.traceID) > 0 {
			seg.mem.add(traceKey(string(h.traceID)), pos{off: uint32(off), n: uint32(len(line) + 1)})
		}
		if f.seq == ckSeq {
			ckHash = append([]byte(nil), f.hash[:]...)
		}
		seg.last.seq, seg.last.hash = f.seq, f.hash
		lastLine = append(lastLine[:0], line...)
		end = off + int64(len(line)) + 1
	}
	if lastLine != nil {
		seg.last.time, _ = recordTime(lastLine)
	}
	if end < size {
		if seg.data.compressed() {
			return nil, &VerifyError{Segment: name, Seq: seg.last.seq + 1, Problem: ProblemTruncated,
				Detail: fmt.Sprintf("segment ends mid-record: %d bytes after the last whole record", size-end)}
		}
		nz, err := lastNonZero(seg.data, end, size)
		if err != nil {
			return nil, err
		}
		if nz > end {
			st.tornAt, st.tornBytes = end, nz-end
		}
	}
	seg.size.Store(end)
	return ckHash, storeSize(seg, end)
}

// storeSize records the bytes a segment whose records end at size takes on
// disk, as retention counts them.
func storeSize(seg *segment, size int64) error {
	if !seg.data.compressed() {
		seg.stored.Store(size)
		return nil
	}
	stored, err := seg.data.storedSize()
	seg.stored.Store(stored)
	return err
}

// hashOfSeq finds record seq in a segment by reading it in order.
func hashOfSeq(seg *segment, seq uint64) ([]byte, error) {
	lr := newSegReader(seg.data, 0, seg.size.Load())
	name := seg.data.fileName()
	for {
		line, _, err := lr.next()
		if err != nil {
			return nil, &VerifyError{Segment: name, Seq: seq, Problem: ProblemDeleted, Detail: "the checkpointed record is missing"}
		}
		f, _, err := checkLine(name, line)
		if err != nil {
			return nil, err
		}
		if f.seq == seq {
			return f.hash[:], nil
		}
	}
}

// cutTail truncates the file at path to size and fsyncs it.
func cutTail(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// removeTemps removes temporary files a crash left behind.
func removeTemps(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".tmp") {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// moveAside moves the log's files into a new recovered-<time> subdirectory
// and returns its name.
func moveAside(dir string, now time.Time) (string, error) {
	name := recoveredPrefix + now.UTC().Format("20060102T150405.000000000Z")
	sub := filepath.Join(dir, name)
	if err := os.Mkdir(sub, 0o700); err != nil {
		return "", err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if _, ok := parseSegName(n); ok || strings.HasSuffix(n, idxSuffix) || n == checkpointsFile {
			if err := os.Rename(filepath.Join(dir, n), filepath.Join(sub, n)); err != nil {
				return "", err
			}
		}
	}
	if err := syncDir(sub); err != nil {
		return "", err
	}
	return name, syncDir(dir)
}
