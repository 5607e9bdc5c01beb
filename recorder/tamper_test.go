package recorder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tamperBase builds a closed log of 200 records in several 8 KiB segments,
// with a checkpoint every 30 records, and returns its directory.
func tamperBase(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	l := openTest(t, dir, Config{SegmentBytes: 8 << 10, CheckpointKey: testKey, CheckpointEvery: 30, Compression: CompressionNone})
	for i := 0; i < 10; i++ {
		appendN(t, l, 20, 7)
		l.syncNow()
		l.maybeCheckpoint(false)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rechain rewrites every record from seq on, applying mutate to record seq
// and recomputing all hashes: an attacker without the checkpoint key.
func rechain(t *testing.T, dir string, seq uint64, mutate func(*Record)) {
	t.Helper()
	var prev [hashHexLen]byte
	for _, p := range segFiles(t, dir) {
		lines := readLines(t, p)
		for i, line := range lines {
			var r Record
			if err := decodeLine(line[:len(line)-1], &r); err != nil {
				t.Fatal(err)
			}
			if r.Seq < seq {
				copy(prev[:], r.Hash)
				continue
			}
			if r.Seq == seq {
				mutate(&r)
			}
			body, err := appendBody(nil, &r)
			if err != nil {
				t.Fatal(err)
			}
			lines[i], prev = appendLine(nil, r.Seq, body, &prev)
		}
		writeLines(t, p, lines)
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	base := tamperBase(t)
	segs := segFiles(t, base)
	if len(segs) < 4 {
		t.Fatalf("%d segments", len(segs))
	}
	trusted := []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}
	rep := mustVerify(t, base, VerifyOptions{TrustedKeys: trusted, RequireCheckpoint: true})
	if rep.Records != 200 || rep.Checkpoints < 5 || rep.ChainStart != "genesis" {
		t.Fatalf("baseline report %+v", rep)
	}
	seg1 := filepath.Base(segs[1])
	seg1First, _ := parseSegName(seg1)
	x := seg1First + 5 // a record inside the second segment
	last := filepath.Base(segs[len(segs)-1])
	lastFirst, _ := parseSegName(last)
	ck0 := mustCheckpoints(t, base)[0].Seq
	otherKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))

	tests := []struct {
		name    string
		mod     func(t *testing.T, dir string)
		opts    VerifyOptions
		segment string
		seq     uint64
		problem Problem
		detail  string
	}{
		{"byte edited", func(t *testing.T, dir string) {
			p, i := findLine(t, dir, x)
			lines := readLines(t, p)
			lines[i] = bytes.Replace(lines[i], []byte(`"i":`), []byte(`"j":`), 1)
			writeLines(t, p, lines)
		}, VerifyOptions{}, seg1, x, ProblemEdited, "hash does not match the record's bytes"},
		{"record edited and chain rehashed without the key", func(t *testing.T, dir string) {
			rechain(t, dir, x, func(r *Record) { r.AgentID = "someone-else" })
		}, VerifyOptions{}, "", 0, ProblemEdited, "does not match the checkpoint signed at"},
		{"line deleted", func(t *testing.T, dir string) {
			p, i := findLine(t, dir, x)
			lines := readLines(t, p)
			writeLines(t, p, append(lines[:i], lines[i+1:]...))
		}, VerifyOptions{}, seg1, x, ProblemDeleted, "missing"},
		{"two lines swapped", func(t *testing.T, dir string) {
			p, i := findLine(t, dir, x)
			lines := readLines(t, p)
			lines[i], lines[i+1] = lines[i+1], lines[i]
			writeLines(t, p, lines)
		}, VerifyOptions{}, seg1, x, ProblemReordered, "appears after"},
		{"line duplicated", func(t *testing.T, dir string) {
			p, i := findLine(t, dir, x)
			lines := readLines(t, p)
			lines = append(lines[:i+1], lines[i:]...)
			writeLines(t, p, lines)
		}, VerifyOptions{}, seg1, x, ProblemReordered, "appears after"},
		{"sealed segment truncated in the middle of a record", func(t *testing.T, dir string) {
			p, i := findLine(t, dir, x)
			lines := readLines(t, p)
			keep := bytes.Join(lines[:i], nil)
			keep = append(keep, lines[i][:40]...)
			os.WriteFile(p, keep, 0o600)
		}, VerifyOptions{}, seg1, x, ProblemTruncated, "segment ends mid-record: 40 bytes"},
		{"tail truncated before the last checkpoint", func(t *testing.T, dir string) {
			p, i := findLine(t, dir, lastFirst+2)
			writeLines(t, p, readLines(t, p)[:i])
		}, VerifyOptions{}, last, lastFirst + 2, ProblemTruncated, "but the checkpoint signed at"},
		{"whole last segment deleted", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, last))
		}, VerifyOptions{}, filepath.Base(segs[len(segs)-2]), lastFirst, ProblemTruncated,
			"the log ends at seq " + itoa(int(lastFirst-1)) + " but the checkpoint"},
		{"middle segment deleted", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, seg1))
		}, VerifyOptions{}, filepath.Base(segs[2]), seg1First, ProblemDeleted, "missing"},
		{"first segment deleted", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, filepath.Base(segs[0])))
		}, VerifyOptions{}, seg1, seg1First - 1, ProblemDeleted, "no retention record accounts"},
		{"segment renamed", func(t *testing.T, dir string) {
			os.Rename(filepath.Join(dir, seg1), filepath.Join(dir, segName(seg1First+1)))
		}, VerifyOptions{}, segName(seg1First + 1), seg1First, ProblemEdited, "named for seq"},
		{"checkpoint signature damaged", func(t *testing.T, dir string) {
			p := filepath.Join(dir, checkpointsFile)
			data, _ := os.ReadFile(p)
			i := bytes.Index(data, []byte(`"signature":"`)) + len(`"signature":"`)
			if data[i] == 'A' {
				data[i] = 'B'
			} else {
				data[i] = 'A'
			}
			os.WriteFile(p, data, 0o600)
		}, VerifyOptions{}, checkpointsFile, ck0, ProblemCheckpoint, "bad signature"},
		{"checkpoints reordered", func(t *testing.T, dir string) {
			p := filepath.Join(dir, checkpointsFile)
			lines := readLines(t, p)
			lines[0], lines[1] = lines[1], lines[0]
			writeLines(t, p, lines)
		}, VerifyOptions{}, checkpointsFile, ck0, ProblemCheckpoint, "out of order"},
		{"checkpoint file deleted but required", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, checkpointsFile))
		}, VerifyOptions{RequireCheckpoint: true}, checkpointsFile, 200, ProblemCheckpoint, "no checkpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, base)
			tt.mod(t, dir)
			rep, err := Verify(context.Background(), dir, tt.opts)
			var ve *VerifyError
			if !errors.As(err, &ve) || !errors.Is(err, ErrCorrupt) || rep.Problem != ve {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			if (tt.segment != "" && ve.Segment != tt.segment) || (tt.seq != 0 && ve.Seq != tt.seq) ||
				ve.Problem != tt.problem || !strings.Contains(ve.Detail, tt.detail) {
				t.Fatalf("Verify = %v\nwant segment %q, seq %d, %s, detail containing %q", ve, tt.segment, tt.seq, tt.problem, tt.detail)
			}
			if tt.name == "record edited and chain rehashed without the key" {
				// Caught at the first checkpoint at or after the edit.
				var want uint64
				for _, c := range mustCheckpoints(t, base) {
					if c.Seq >= x {
						want = c.Seq
						break
					}
				}
				if ve.Seq != want {
					t.Fatalf("caught at seq %d, want the first checkpoint after the edit, %d", ve.Seq, want)
				}
			}
		})
	}

	// Intact checkpoints signed by another key are not tampering by
	// themselves: the wrong key was given, or the log was re-signed. Verify
	// says which key signed them, apart from a VerifyError.
	t.Run("checkpoints by an untrusted key", func(t *testing.T) {
		for _, damaged := range []bool{false, true} {
			dir := copyDir(t, base)
			if damaged { // tampering wins over a key mismatch
				p, i := findLine(t, dir, x)
				lines := readLines(t, p)
				lines[i] = bytes.Replace(lines[i], []byte(`"i":`), []byte(`"j":`), 1)
				writeLines(t, p, lines)
			}
			rep, err := Verify(context.Background(), dir, VerifyOptions{TrustedKeys: []ed25519.PublicKey{otherKey.Public().(ed25519.PublicKey)}})
			var ke *KeyError
			var ve *VerifyError
			switch {
			case damaged && (!errors.As(err, &ve) || errors.Is(err, ErrUntrustedKey) || rep.UntrustedKey != nil):
				t.Fatalf("damaged log with the wrong key: %v, want the VerifyError", err)
			case !damaged && (!errors.As(err, &ke) || !errors.Is(err, ErrUntrustedKey) || errors.Is(err, ErrCorrupt)):
				t.Fatalf("Verify = %v, want a *KeyError", err)
			case !damaged && (ke.Seq != ck0 || ke.PublicKey != publicKeyString(testKey.Public().(ed25519.PublicKey)) ||
				rep.UntrustedKey != ke || rep.Problem != nil || rep.CheckpointsTrusted || rep.Records != 200):
				t.Fatalf("KeyError %+v, report %+v", ke, rep)
			}
		}
	})

	// What the chain alone cannot catch, stated as tests so the documented
	// limits stay true: cutting whole records off the tail is undetectable
	// once the checkpoints are gone too.
	t.Run("tail cut and checkpoint file deleted", func(t *testing.T) {
		dir := copyDir(t, base)
		os.Remove(filepath.Join(dir, checkpointsFile))
		p, i := findLine(t, dir, lastFirst+2)
		writeLines(t, p, readLines(t, p)[:i])
		rep := mustVerify(t, dir, VerifyOptions{})
		if rep.LastSeq != lastFirst+1 || rep.LastCheckpoint != nil {
			t.Fatalf("report %+v", rep)
		}
	})
}

func mustCheckpoints(t *testing.T, dir string) []Checkpoint {
	t.Helper()
	cks, _, _, err := readCheckpoints(filepath.Join(dir, checkpointsFile))
	if err != nil {
		t.Fatal(err)
	}
	return cks
}

// FuzzParseCheckpoint feeds arbitrary lines to the checkpoint reader.
func FuzzParseCheckpoint(f *testing.F) {
	c, err := signCheckpoint(testKey, "k", tip{seq: 5, hash: zeroHash}, newFakeClock().Now())
	if err != nil {
		f.Fatal(err)
	}
	line, _ := jsonMarshal(c)
	f.Add(line)
	f.Add([]byte(`{"seq":1,"hash":"","time":"2026-01-01T00:00:00Z","key_id":"","public_key":"ed25519:","signature":""}`))
	f.Add([]byte(`{"seq":1,"extra":true}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		c, err := parseCheckpoint(line)
		if err != nil {
			return
		}
		if c.verify() == nil && (c.Seq == 0 || len(c.Hash) != hashHexLen) {
			t.Fatalf("verify accepted a malformed checkpoint %+v", c)
		}
	})
}
