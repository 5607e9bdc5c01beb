package recorder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTornTailIsCutAndRecorded(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, Config{})
	appendN(t, l, 10, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, dir)
	torn := []byte(`{"seq":11,"kind":"request","trace_id":"tr`)
	f, _ := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	f.Write(torn)
	f.Close()
	if rep := mustVerify(t, dir, VerifyOptions{}); rep.TornTailBytes != int64(len(torn)) {
		t.Fatalf("Verify reports %d torn bytes, want %d", rep.TornTailBytes, len(torn))
	}

	buf := &logBuffer{}
	l2 := openTest(t, dir, Config{Logger: buf.logger()})
	if !containsAll(buf.String(), "torn last line", "bytes="+itoa(len(torn)), "after_seq=10") {
		t.Fatalf("cut not logged with its byte count: %s", buf.String())
	}
	seq := appendN(t, l2, 1, 1)[0]
	if seq != 12 { // 11 is the recovery record
		t.Fatalf("next seq %d, want 12", seq)
	}
	l2.Close()
	rep := mustVerify(t, dir, VerifyOptions{})
	if rep.TornTailBytes != 0 || rep.Recoveries != 1 || rep.LastSeq != 12 {
		t.Fatalf("report after repair: %+v", rep)
	}
	r, _ := OpenReader(dir)
	defer r.Close()
	recs, _, err := r.Tail(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	json.Unmarshal(recs[0].Details, &d)
	if recs[0].Kind != KindRecovery || d["action"] != "torn_tail_truncated" || d["bytes"] != float64(len(torn)) {
		t.Fatalf("recovery record = %s %s", recs[0].Kind, recs[0].Details)
	}
}

// corruptLog builds a closed three-segment log with checkpoints.
func corruptLog(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l := openTest(t, dir, Config{SegmentBytes: 8 << 10, CheckpointKey: testKey, CheckpointEvery: 20, Compression: CompressionNone})
	for i := 0; i < 4; i++ {
		appendN(t, l, 40, 5)
		l.Sync()
		l.maybeCheckpoint(false)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestOpenRefusesCorruptLog(t *testing.T) {
	base := corruptLog(t)
	segs := segFiles(t, base)
	if len(segs) < 3 {
		t.Fatalf("%d segments", len(segs))
	}
	activeFirst, _ := parseSegName(filepath.Base(segs[len(segs)-1]))
	tests := []struct {
		name    string
		mod     func(t *testing.T, dir string)
		segment string // base name of the segment named, "" = the last
		seq     uint64
		problem Problem
	}{
		{"edited record in the active segment", func(t *testing.T, dir string) {
			p, i := findLine(t, dir, activeFirst+1)
			lines := readLines(t, p)
			lines[i] = bytes.Replace(lines[i], []byte("useful"), []byte("useless"), 1)
			writeLines(t, p, lines)
		}, "", activeFirst + 1, ProblemEdited},
		{"first record of a sealed segment edited", func(t *testing.T, dir string) {
			p := segFiles(t, dir)[1]
			lines := readLines(t, p)
			lines[0] = bytes.Replace(lines[0], []byte("agent-a"), []byte("agent-b"), 1)
			writeLines(t, p, lines)
		}, filepath.Base(segs[1]), 0, ProblemEdited},
		{"middle segment deleted", func(t *testing.T, dir string) {
			os.Remove(segFiles(t, dir)[1])
		}, filepath.Base(segs[2]), 0, ProblemDeleted},
		{"sealed segment cut mid-record", func(t *testing.T, dir string) {
			p := segFiles(t, dir)[0]
			info, _ := os.Stat(p)
			os.Truncate(p, info.Size()-30)
		}, filepath.Base(segs[0]), 0, ProblemTruncated},
		{"tail cut before the last checkpoint", func(t *testing.T, dir string) {
			p, i := findLine(t, dir, activeFirst+1)
			writeLines(t, p, readLines(t, p)[:i])
		}, "", activeFirst + 1, ProblemTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, base)
			tt.mod(t, dir)
			_, err := Open(context.Background(), Config{Dir: dir, Logger: quietLogger(), SegmentBytes: 8 << 10})
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open error = %v, want a *VerifyError", err)
			}
			want := tt.segment
			if want == "" {
				s := segFiles(t, dir)
				want = filepath.Base(s[len(s)-1])
			}
			if ve.Segment != want || ve.Problem != tt.problem || (tt.seq != 0 && ve.Seq != tt.seq) {
				t.Fatalf("Open error = %v, want segment %s, seq %d, %s", ve, want, tt.seq, tt.problem)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("message does not name the segment: %v", err)
			}

			// With Recover the log starts a new chain and says why.
			buf := &logBuffer{}
			l := openTest(t, dir, Config{Recover: true, Logger: buf.logger(), SegmentBytes: 8 << 10, CheckpointKey: testKey})
			seq := appendN(t, l, 1, 1)[0]
			l.Close()
			rep := mustVerify(t, dir, VerifyOptions{TrustedKeys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}})
			if rep.ChainStart != "recovery" || rep.Recoveries != 1 || rep.LastSeq != seq || len(rep.Recovered) != 1 {
				t.Fatalf("after recovery: %+v", rep)
			}
			if !strings.Contains(buf.String(), "starting a new chain") {
				t.Fatalf("recovery not logged: %s", buf.String())
			}
			moved, _ := filepath.Glob(filepath.Join(dir, rep.Recovered[0], "seg-*.log"))
			if len(moved) == 0 {
				t.Fatal("old segments not kept in the recovered directory")
			}
			r, _ := OpenReader(dir)
			recs, _, _ := r.Tail(context.Background(), 2)
			r.Close()
			if recs[0].Kind != KindRecovery || !strings.Contains(string(recs[0].Details), string(tt.problem)) {
				t.Fatalf("first record of the new chain: %s %s", recs[0].Kind, recs[0].Details)
			}
		})
	}
}

func TestCheckpointsByCountAndTime(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	cfg := Config{CheckpointKey: testKey, CheckpointKeyID: "test-key", CheckpointEvery: 10,
		CheckpointInterval: time.Minute, SyncInterval: 1 << 40, Clock: clock.Now}
	l := openTest(t, dir, cfg)
	step := func() { l.syncNow(); l.maybeCheckpoint(false) }
	appendN(t, l, 9, 1)
	step()
	if _, ok := l.LastCheckpoint(); ok {
		t.Fatal("checkpoint before CheckpointEvery records or CheckpointInterval")
	}
	appendN(t, l, 1, 1)
	step()
	c, ok := l.LastCheckpoint()
	if !ok || c.Seq != 10 || c.KeyID != "test-key" {
		t.Fatalf("checkpoint after 10 records = %+v, %v", c, ok)
	}
	appendN(t, l, 1, 1)
	clock.Advance(59 * time.Second)
	step()
	if c, _ := l.LastCheckpoint(); c.Seq != 10 {
		t.Fatalf("checkpoint before the interval: %d", c.Seq)
	}
	clock.Advance(time.Second)
	step()
	if c, _ := l.LastCheckpoint(); c.Seq != 11 || !c.Time.Equal(clock.Now()) {
		t.Fatalf("checkpoint after the interval = %+v", c)
	}
	clock.Advance(time.Hour)
	step()
	if c, _ := l.LastCheckpoint(); c.Seq != 11 {
		t.Fatalf("checkpoint without new records: %d", c.Seq)
	}
	appendN(t, l, 2, 1)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cks, _, _, err := readCheckpoints(filepath.Join(dir, checkpointsFile))
	if err != nil || len(cks) != 3 || cks[2].Seq != 13 {
		t.Fatalf("checkpoint file = %+v, %v (Close must checkpoint the tail)", cks, err)
	}
	rep := mustVerify(t, dir, VerifyOptions{TrustedKeys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}, RequireCheckpoint: true})
	if rep.Checkpoints != 3 || !rep.CheckpointsTrusted || rep.LastCheckpoint.Seq != 13 {
		t.Fatalf("report %+v", rep)
	}
}

func TestRetentionBySize(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	cfg := Config{SegmentBytes: 8 << 10, MaxTotalBytes: 40 << 10, CheckpointKey: testKey, CheckpointEvery: 50}
	l := openTest(t, dir, cfg)
	var seqs []uint64
	// Abuse: keep writing far past the limit; the directory stays bounded.
	for round := 0; round < 10; round++ {
		seqs = append(seqs, appendN(t, l, 100, 50)...)
		l.syncNow()
		l.maybeCheckpoint(false)
		l.sealAll()
		if err := l.enforceRetention(); err != nil {
			t.Fatal(err)
		}
		if b := dirBytes(t, dir); b > cfg.MaxTotalBytes+cfg.SegmentBytes+8<<10 {
			t.Fatalf("round %d: directory holds %d bytes, limit %d", round, b, cfg.MaxTotalBytes)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir, VerifyOptions{})
	if rep.ChainStart != "retention" || rep.Retentions == 0 || rep.FirstSeq <= 1 || rep.CheckpointsRemoved != 0 {
		t.Fatalf("report %+v", rep)
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A trace answers with exactly its records that retention kept (the
	// kept log holds about the last 115 records: trace 0's last one is
	// among them).
	var want []uint64
	for i, s := range seqs {
		if i%50 == 0 && s >= rep.FirstSeq {
			want = append(want, s)
		}
	}
	got, err := r.Trace(ctx, traceName(0), 0)
	if err != nil || len(got) != len(want) || len(want) == 0 {
		t.Fatalf("trace 0 after retention: %d records (%v), want %d", len(got), err, len(want))
	}
	for i := range got {
		if got[i].Seq != want[i] {
			t.Fatalf("trace 0 record %d: seq %d, want %d", i, got[i].Seq, want[i])
		}
	}
	cks, _, _, _ := readCheckpoints(filepath.Join(dir, checkpointsFile))
	if len(cks) == 0 || len(cks) > 10 {
		t.Fatalf("%d checkpoints kept", len(cks))
	}

	// Deleting one more old segment by hand is caught.
	os.Remove(segFiles(t, dir)[0])
	_, err = Verify(ctx, dir, VerifyOptions{})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Problem != ProblemDeleted || ve.Seq != rep.FirstSeq {
		t.Fatalf("Verify after deleting the oldest segment = %v, want deleted at seq %d", err, rep.FirstSeq)
	}
}

func TestRetentionByAge(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	l := openTest(t, dir, Config{SegmentBytes: 8 << 10, MaxAge: 24 * time.Hour, Clock: clock.Now})
	appendN(t, l, 200, 10)
	clock.Advance(23 * time.Hour)
	appendN(t, l, 1, 1)
	l.sealAll()
	if err := l.enforceRetention(); err != nil {
		t.Fatal(err)
	}
	before := len(segFiles(t, dir))
	clock.Advance(2 * time.Hour)
	appendN(t, l, 60, 1) // rotate, so the segment with the 23h record is sealed
	if err := l.enforceRetention(); err != nil {
		t.Fatal(err)
	}
	after := segFiles(t, dir)
	if len(after) >= before {
		t.Fatalf("%d segments before, %d after the age limit passed", before, len(after))
	}
	r, _ := OpenReader(dir)
	recs, _, _ := r.Tail(context.Background(), MaxTail)
	r.Close()
	var found bool
	for _, rec := range recs {
		if rec.Kind == KindRetention {
			found = strings.Contains(string(rec.Details), `"reason":"max_age"`)
		}
		if rec.Kind == KindRequest && clock.Now().Sub(rec.Time) > 25*time.Hour {
			t.Fatalf("record seq %d of %v survived", rec.Seq, rec.Time)
		}
	}
	if !found {
		t.Fatal("no max_age retention record")
	}
	l.Close()
	mustVerify(t, dir, VerifyOptions{})
}

func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var n int64
	for _, e := range ents {
		if info, err := e.Info(); err == nil && e.Type().IsRegular() && e.Name() != checkpointsFile {
			n += info.Size()
		}
	}
	return n
}
