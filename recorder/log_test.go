package recorder

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// checkTraces asserts that every trace-<i> holds the seqs appendN gave it.
func checkTraces(t *testing.T, query func(string) ([]Record, error), seqs []uint64, traces int) {
	t.Helper()
	for tr := 0; tr < traces; tr++ {
		var want []uint64
		for i, s := range seqs {
			if i%traces == tr {
				want = append(want, s)
			}
		}
		got, err := query(traceName(tr))
		if err != nil {
			t.Fatalf("trace %d: %v", tr, err)
		}
		if len(got) != len(want) {
			t.Fatalf("trace %d: %d records, want %d", tr, len(got), len(want))
		}
		for i, r := range got {
			if r.Seq != want[i] || r.TraceID != traceName(tr) {
				t.Fatalf("trace %d record %d: seq %d trace %q, want seq %d", tr, i, r.Seq, r.TraceID, want[i])
			}
		}
	}
}

func TestTraceAcrossRotationAndRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := openTest(t, dir, Config{SegmentBytes: 8 << 10})
	seqs := appendN(t, l, 600, 37)
	l.sealAll()
	if n := len(segFiles(t, dir)); n < 5 {
		t.Fatalf("only %d segments after 600 records of ~150 bytes in 8 KiB segments", n)
	}
	live := func(id string) ([]Record, error) { return l.Trace(ctx, id, 0) }
	checkTraces(t, live, seqs, 37)

	// Sealed segments answer from their index files, not from memory.
	l.idxMu.RLock()
	for _, s := range l.segs[:len(l.segs)-1] {
		if s.disk == nil || s.mem != nil {
			t.Fatalf("sealed segment %s: disk index %v, memory index %v", s.name, s.disk != nil, s.mem != nil)
		}
	}
	l.idxMu.RUnlock()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l2 := openTest(t, dir, Config{SegmentBytes: 8 << 10})
	checkTraces(t, func(id string) ([]Record, error) { return l2.Trace(ctx, id, 0) }, seqs, 37)
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	checkTraces(t, func(id string) ([]Record, error) { return r.Trace(ctx, id, 0) }, seqs, 37)

	if got, err := l2.Trace(ctx, "unknown-trace", 0); err != nil || len(got) != 0 {
		t.Fatalf("unknown trace = %d records, %v", len(got), err)
	}
	if _, err := l2.Trace(ctx, "bad id", 0); !errors.Is(err, ErrInvalidTraceID) {
		t.Fatalf("bad trace id error = %v", err)
	}
	got, err := l2.Trace(ctx, traceName(3), 5)
	if err != nil || len(got) != 5 || got[0].Seq != seqs[3] {
		t.Fatalf("limited trace = %d records, %v", len(got), err)
	}
}

func TestIndexRebuiltWhenLost(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := openTest(t, dir, Config{SegmentBytes: 8 << 10})
	seqs := appendN(t, l, 400, 11)
	l.sealAll()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	idx, _ := filepath.Glob(filepath.Join(dir, "*.idx"))
	if len(idx) < 3 {
		t.Fatalf("only %d index files", len(idx))
	}
	for i, p := range idx {
		if i%2 == 0 {
			os.Remove(p) // lost
		} else {
			os.WriteFile(p, []byte("garbage"), 0o600) // damaged
		}
	}
	l2 := openTest(t, dir, Config{SegmentBytes: 8 << 10})
	// Before maintenance rebuilds them, queries read the segments.
	checkTraces(t, func(id string) ([]Record, error) { return l2.Trace(ctx, id, 0) }, seqs, 11)
	l2.sealAll()
	for _, p := range idx {
		f, err := os.Open(p)
		if err != nil {
			t.Fatalf("index %s not rebuilt: %v", filepath.Base(p), err)
		}
		info, _ := f.Stat()
		if _, err := parseIndexHeader(f, info.Size()); err != nil {
			t.Fatalf("rebuilt index %s: %v", filepath.Base(p), err)
		}
		f.Close()
	}
	checkTraces(t, func(id string) ([]Record, error) { return l2.Trace(ctx, id, 0) }, seqs, 11)

	// A block damaged while open: the query falls back to reading the
	// segment and maintenance rebuilds the index.
	l2.idxMu.RLock()
	s := l2.segs[0]
	l2.idxMu.RUnlock()
	p := segPath(dir, idxName(s.name))
	data, _ := os.ReadFile(p)
	data[len(data)-3] ^= 0xff
	os.WriteFile(p, data, 0o600) // same inode: the open handle sees it
	checkTraces(t, func(id string) ([]Record, error) { return l2.Trace(ctx, id, 0) }, seqs, 11)
}

func TestConcurrentAppendersShareOneChain(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Config{SegmentBytes: 16 << 10})
	const workers, each = 8, 300
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint64]bool{}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				seq, err := l.Append(context.Background(), &Record{Kind: KindRequest, TraceID: fmt.Sprintf("w%d", w), AgentID: "a"})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[seq] = true
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	if len(seen) != workers*each {
		t.Fatalf("%d distinct seqs, want %d", len(seen), workers*each)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, VerifyOptions{})
	if rep.Records != workers*each || rep.FirstSeq != 1 || rep.LastSeq != workers*each {
		t.Fatalf("report %+v", rep)
	}
}

func TestCloseAndLock(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l := openTest(t, dir, Config{})
	appendN(t, l, 3, 1)
	if _, err := Open(ctx, Config{Dir: dir, Logger: quietLogger()}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open error = %v, want ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := l.Append(ctx, &Record{Kind: KindRequest}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if _, err := l.Trace(ctx, "t", 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Trace after Close = %v", err)
	}
	if err := l.Sync(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync after Close = %v", err)
	}
	l2 := openTest(t, dir, Config{})
	if seq := appendN(t, l2, 1, 1)[0]; seq != 4 {
		t.Fatalf("after reopen the next seq is %d, want 4", seq)
	}
}

func TestSyncModes(t *testing.T) {
	ctx := context.Background()
	t.Run("always", func(t *testing.T) {
		l := openTest(t, t.TempDir(), Config{Sync: SyncAlways})
		for i := 0; i < 5; i++ {
			seq, err := l.Append(ctx, &Record{Kind: KindRequest, AgentID: "a"})
			if err != nil {
				t.Fatal(err)
			}
			if st := l.Stats(); st.SyncedSeq < seq {
				t.Fatalf("Append returned seq %d before it was fsynced (synced %d)", seq, st.SyncedSeq)
			}
		}
	})
	t.Run("batch", func(t *testing.T) {
		l := openTest(t, t.TempDir(), Config{SyncInterval: 1 << 40})
		seq := appendN(t, l, 5, 1)[4]
		if st := l.Stats(); st.WrittenSeq != seq || st.SyncedSeq != 0 {
			t.Fatalf("before Sync: %+v", st)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
		if st := l.Stats(); st.SyncedSeq != seq {
			t.Fatalf("after Sync: %+v", st)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, cfg := range []Config{
			{},
			{Dir: "x", Sync: "sometimes"},
			{Dir: "x", SegmentBytes: 100},
			{Dir: "x", MaxRecordBytes: 10},
			{Dir: "x", SyncInterval: -1},
			{Dir: "x", CheckpointKey: notEd25519(t)},
		} {
			if _, err := Open(ctx, cfg); err == nil || !strings.HasPrefix(err.Error(), "recorder: config: ") {
				t.Errorf("Open(%+v) error = %v", cfg, err)
			}
		}
	})
}

// TestMemoryIndexBoundedBySegment: the in-memory index only ever covers the
// active segment; sealing drops it.
func TestMemoryIndexBoundedBySegment(t *testing.T) {
	l := openTest(t, t.TempDir(), Config{SegmentBytes: 8 << 10})
	for round := 0; round < 5; round++ {
		appendN(t, l, 200, 50)
		l.sealAll()
		l.idxMu.RLock()
		active := l.segs[len(l.segs)-1]
		for _, s := range l.segs[:len(l.segs)-1] {
			if s.mem != nil {
				t.Fatalf("sealed segment %s keeps its memory index", s.name)
			}
		}
		// Each record is at least 150 bytes.
		if max := int(active.size.Load()/150) + 1; active.mem.n > max {
			t.Fatalf("active memory index has %d entries for %d bytes", active.mem.n, active.size.Load())
		}
		l.idxMu.RUnlock()
	}
}

// TestWriteFailureBreaksLog: after a failed write the log refuses records
// (fail closed) and what is on disk still verifies. A mapped segment fails
// by a memory fault (its file was cut behind the log's back), which must
// not crash the process; a pwrite one by a failed system call.
func TestWriteFailureBreaksLog(t *testing.T) {
	tests := []struct {
		name   string
		pwrite bool
		fail   func(t *testing.T, l *Log)
	}{
		{"mapped segment truncated", false, func(t *testing.T, l *Log) {
			if l.out.mem == nil {
				t.Skip("segments are not memory-mapped on this system")
			}
			if err := os.Truncate(segPath(l.dir, l.active.name), 0); err != nil {
				t.Fatal(err)
			}
		}},
		{"pwrite to a closed file", true, func(t *testing.T, l *Log) { l.out.f.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withPwrite(t, tt.pwrite)
			dir := t.TempDir()
			buf := &logBuffer{}
			l := openTest(t, dir, Config{Logger: buf.logger()})
			appendN(t, l, 3, 1)
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
			tt.fail(t, l)
			_, err := l.Append(context.Background(), &Record{Kind: KindRequest, AgentID: "a", Payload: []byte(`{"pad":"` + strings.Repeat("x", 5000) + `"}`)})
			if !errors.Is(err, ErrBroken) {
				t.Fatalf("Append after a write failure = %v, want ErrBroken", err)
			}
			_, err = l.Append(context.Background(), &Record{Kind: KindRequest, AgentID: "a"})
			if !errors.Is(err, ErrBroken) {
				t.Fatalf("second Append = %v, want ErrBroken", err)
			}
			if !strings.Contains(buf.String(), "log is broken") {
				t.Fatalf("not logged: %s", buf.String())
			}
			l.Close()
			if tt.pwrite {
				if rep := mustVerify(t, dir, VerifyOptions{}); rep.LastSeq != 3 {
					t.Fatalf("last seq %d, want 3", rep.LastSeq)
				}
			}
		})
	}
}

// TestFsyncFailureBreaksLog: a failed fsync fails closed too.
func TestFsyncFailureBreaksLog(t *testing.T) {
	l := openTest(t, t.TempDir(), Config{SyncInterval: 1 << 40})
	appendN(t, l, 2, 1)
	l.out.f.Close() // the fsync of the written records now fails
	err := l.Sync()
	if !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), "fsync seg-") ||
		strings.Count(err.Error(), ErrBroken.Error()) != 1 {
		t.Fatalf("Sync = %v, want one ErrBroken naming the fsync", err)
	}
	if _, err := l.Append(context.Background(), &Record{Kind: KindRequest, AgentID: "a"}); !errors.Is(err, ErrBroken) {
		t.Fatalf("Append after a failed fsync = %v, want ErrBroken", err)
	}
}

// notEd25519 is a signing key of the wrong algorithm for checkpoints.
func notEd25519(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
