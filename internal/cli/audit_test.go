package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/config"
	"github.com/iatp/iatp/recorder"
)

var auditKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))

// auditClock ticks one second per call from a fixed time.
func auditClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

// auditDataDir writes a data dir whose recorder holds 30 records (traces
// t-0..t-4, request and response each time) in several segments, with
// checkpoints, and returns it. Sealed segments are stored plain, so that
// tests can edit their lines; auditZipDir has them compressed.
func auditDataDir(t *testing.T) string {
	t.Helper()
	return auditFixture(t, recorder.CompressionNone)
}

// auditZipDir is auditDataDir with its sealed segments compressed.
func auditZipDir(t *testing.T) string {
	t.Helper()
	data := auditFixture(t, recorder.CompressionZstd)
	// Compression happens in the background: reopen until every sealed
	// segment is compressed.
	for deadline := time.Now().Add(30 * time.Second); ; {
		zst, _ := filepath.Glob(filepath.Join(data, "recorder", "seg-*.log.zst"))
		plain, _ := filepath.Glob(filepath.Join(data, "recorder", "seg-*.log"))
		if len(zst) > 0 && len(plain) == 1 {
			return data
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealed segments not compressed: %d compressed, %d plain", len(zst), len(plain))
		}
		l, err := recorder.Open(context.Background(), recorder.Config{Dir: filepath.Join(data, "recorder"), SegmentBytes: 4096,
			MaxAge: 1 << 62, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		l.Close()
	}
}

func auditFixture(t *testing.T, compression recorder.Compression) string {
	t.Helper()
	data := t.TempDir()
	l, err := recorder.Open(context.Background(), recorder.Config{
		Dir: filepath.Join(data, "recorder"), SegmentBytes: 4096, CheckpointKey: auditKey, CheckpointKeyID: "audit-test",
		CheckpointEvery: 10, Clock: auditClock(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Compression: compression,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 15; i++ {
		tr := fmt.Sprintf("t-%d", i%5)
		reqs := []*recorder.Record{
			{Kind: recorder.KindRequest, TraceID: tr, AgentID: "booking-agent", CallerID: "planner", Authenticated: true,
				Decision: "allow", Payload: json.RawMessage(fmt.Sprintf(`{"task":"book","n":%d}`, i))},
			{Kind: recorder.KindResponse, TraceID: tr, AgentID: "booking-agent", Status: 200, LatencyMs: 1.5,
				Payload: json.RawMessage(`{"ok":true}`)},
		}
		for j, r := range reqs {
			r.Time = time.Date(2026, 1, 2, 3, 4, 5+2*i+j, 0, time.UTC)
			if _, err := l.Append(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		if i%4 == 3 {
			l.Sync() // let the group commit and checkpoints run on their own too
			time.Sleep(15 * time.Millisecond)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return data
}

// runAudit executes the CLI with ctx and returns exit code and output.
func runAudit(ctx context.Context, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(ctx, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// segmentOf returns the path and line index of record seq.
func segmentOf(t *testing.T, data string, seq int) (string, [][]byte, int) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(data, "recorder", "seg-*.log"))
	prefix := []byte(fmt.Sprintf(`{"seq":%d,`, seq))
	if len(segs) < 2 {
		t.Fatalf("%d plain segments: build the fixture with auditDataDir", len(segs))
	}
	for _, p := range segs {
		raw, _ := os.ReadFile(p)
		lines := bytes.SplitAfter(raw, []byte("\n"))
		for i, l := range lines {
			if bytes.HasPrefix(l, prefix) {
				return p, lines, i
			}
		}
	}
	t.Fatalf("seq %d not found", seq)
	return "", nil, 0
}

func TestAuditVerify(t *testing.T) {
	base := auditDataDir(t)
	pubFile := filepath.Join(t.TempDir(), "cp.pub")
	os.WriteFile(pubFile, []byte(identity.FormatPublicKey(auditKey.Public().(ed25519.PublicKey))+"\n"), 0o600)
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{4}, 32))
	otherKey := identity.FormatPublicKey(other.Public().(ed25519.PublicKey))

	tests := []struct {
		name   string
		mod    func(t *testing.T, data string)
		args   []string // after "audit verify DATA"
		code   int
		stdout []string
		stderr string
	}{
		{"intact", nil, nil, 0, []string{"OK ", "30 records, seq 1 to 30, in ", "chain starts at seq 1",
			"checkpoints hold, the newest at seq 30", "checked against the key they carry"}, ""},
		{"intact with the trusted key", nil, []string{"--key", pubFile, "--require-checkpoint"}, 0,
			[]string{"signed by a trusted key"}, ""},
		{"byte edited", func(t *testing.T, data string) {
			p, lines, i := segmentOf(t, data, 7)
			lines[i] = bytes.Replace(lines[i], []byte(`"n":3`), []byte(`"n":4`), 1)
			os.WriteFile(p, bytes.Join(lines, nil), 0o600)
		}, nil, 1, []string{"FAILED", "record 7 in segment seg-", "was altered: hash does not match"}, "was altered (edited)"},
		{"line deleted", func(t *testing.T, data string) {
			p, lines, i := segmentOf(t, data, 9)
			os.WriteFile(p, bytes.Join(append(lines[:i], lines[i+1:]...), nil), 0o600)
		}, nil, 1, []string{"record 9 was deleted"}, "record 9 was deleted"},
		{"lines swapped", func(t *testing.T, data string) {
			p, lines, i := segmentOf(t, data, 11)
			lines[i], lines[i+1] = lines[i+1], lines[i]
			os.WriteFile(p, bytes.Join(lines, nil), 0o600)
		}, nil, 1, []string{"record 11 in segment seg-", "is out of order"}, "is out of order (reordered)"},
		{"tail cut before a checkpoint", func(t *testing.T, data string) {
			p, lines, i := segmentOf(t, data, 29)
			os.WriteFile(p, bytes.Join(lines[:i], nil), 0o600)
		}, nil, 1, []string{"record 29 on is missing from segment seg-", "the log ends at seq 28 but the checkpoint"}, "the log was cut short"},
		{"checkpoint damaged", func(t *testing.T, data string) {
			p := filepath.Join(data, "recorder", "checkpoints.jsonl")
			raw, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(raw, []byte(`"time":"2026`), []byte(`"time":"2027`), 1), 0o600)
		}, nil, 1, []string{"a checkpoint in checkpoints.jsonl is damaged"}, "bad checkpoint"},
		{"signed by another key", nil, []string{"--key", otherKey}, 3, []string{"KEY MISMATCH", `key id "audit-test"`, "Check --key"},
			"the checkpoints are signed by a different key (key id audit-test): check --key"},
		{"altered and signed by another key", func(t *testing.T, data string) {
			p, lines, i := segmentOf(t, data, 7)
			lines[i] = bytes.Replace(lines[i], []byte(`"n":3`), []byte(`"n":4`), 1)
			os.WriteFile(p, bytes.Join(lines, nil), 0o600)
		}, []string{"--key", otherKey}, 1, []string{"record 7 in segment"}, "was altered"},
		{"bad key", nil, []string{"--key", "ed25519:nope"}, 2, nil, "--key ed25519:nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			copyTree(t, base, data)
			if tt.mod != nil {
				tt.mod(t, data)
			}
			code, out, errOut := runAudit(context.Background(), append([]string{"audit", "verify", data}, tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out, errOut)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %q:\n%s", want, out)
				}
			}
			if !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stderr lacks %q: %s", tt.stderr, errOut)
			}
			if tt.code == 1 && tt.stderr != "bad checkpoint" && !strings.Contains(errOut, "segment seg-") {
				t.Errorf("failure does not name the segment: %s", errOut)
			}
			// The same with --data-dir and with --json.
			args := append([]string{"audit", "verify", "--data-dir", data}, tt.args...)
			if code, out2, _ := runAudit(context.Background(), args...); code != tt.code || out2 != out {
				t.Errorf("--data-dir: exit %d, want %d; output differs: %v", code, tt.code, out2 != out)
			}
			code, js, _ := runAudit(context.Background(), append(args, "--json")...)
			var rep recorder.VerifyReport
			if code != tt.code || (tt.code != 2 && json.Unmarshal([]byte(js), &rep) != nil) {
				t.Errorf("--json: exit %d, want %d: %s", code, tt.code, js)
			}
			if tt.code == 3 && (rep.UntrustedKey == nil || rep.UntrustedKey.KeyID != "audit-test" || rep.Problem != nil) {
				t.Errorf("--json report of a key mismatch: %s", js)
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		code, out, _ := runAudit(context.Background(), "audit", "verify", base, "--json")
		var rep recorder.VerifyReport
		if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Records != 30 || rep.Problem != nil {
			t.Fatalf("exit %d, report %s", code, out)
		}
		data := t.TempDir()
		copyTree(t, base, data)
		p, lines, i := segmentOf(t, data, 5)
		os.WriteFile(p, bytes.Join(append(lines[:i], lines[i+1:]...), nil), 0o600)
		code, out, _ = runAudit(context.Background(), "audit", "verify", data, "--json")
		rep = recorder.VerifyReport{}
		if code != 1 || json.Unmarshal([]byte(out), &rep) != nil || rep.Problem == nil || rep.Problem.Seq != 5 || rep.Problem.Problem != recorder.ProblemDeleted {
			t.Fatalf("exit %d, report %s", code, out)
		}
	})
	t.Run("usage", func(t *testing.T) {
		empty := t.TempDir()
		for _, args := range [][]string{
			{"audit", "verify"},
			{"audit", "verify", filepath.Join(empty, "missing")},
			{"audit", "verify", empty},
			{"audit", "verify", base, base},
			{"audit", "verify", base, "--data-dir", t.TempDir()},
		} {
			if code, _, errOut := runAudit(context.Background(), args...); code != 2 {
				t.Errorf("%v: exit %d (%s), want 2", args, code, errOut)
			}
		}
	})
}

func TestAuditShow(t *testing.T) {
	data := auditDataDir(t)
	ctx := context.Background()
	code, out, errOut := runAudit(ctx, "audit", "show", "t-2", "--data-dir", data)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `trace t-2: 6 records

#5  2026-01-02T03:04:09Z  request  allow
    agent booking-agent  caller planner (authenticated)
    payload: {"task":"book","n":2}

#6  2026-01-02T03:04:10Z  response
    agent booking-agent
    status 200  latency 1.5 ms
    payload: {"ok":true}
`
	if !strings.HasPrefix(out, want) || strings.Count(out, "\n#") != 6 {
		t.Fatalf("output:\n%s\nwant it to start with:\n%s", out, want)
	}

	code, out, _ = runAudit(ctx, "audit", "show", "t-2", "--data-dir", data, "--json", "--limit", "2")
	var doc struct {
		TraceID string            `json:"trace_id"`
		Records []recorder.Record `json:"records"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || doc.TraceID != "t-2" || len(doc.Records) != 2 || doc.Records[1].Seq != 6 {
		t.Fatalf("exit %d, json %s", code, out)
	}

	tests := []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"audit", "show", "t-9", "--data-dir", data}, 1, "no records for trace t-9"},
		{[]string{"audit", "show", "bad id", "--data-dir", data}, 2, `trace id "bad id" is not`},
		{[]string{"audit", "show", "t-1", "--data-dir", ""}, 2, "--data-dir is empty"},
		{[]string{"audit", "show", "--data-dir", data}, 2, "needs one TRACE_ID"},
		{[]string{"audit", "show", "t-1", "--data-dir", t.TempDir()}, 2, "no flight recorder in"},
	}
	for _, tt := range tests {
		code, _, errOut := runAudit(ctx, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.stderr) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tt.args, code, errOut, tt.code, tt.stderr)
		}
	}
	code, out, _ = runAudit(ctx, "audit", "show", "t-9", "--data-dir", data, "--json")
	if code != 1 || !strings.Contains(out, `"records": []`) {
		t.Fatalf("unknown trace as JSON: exit %d, %s", code, out)
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestAuditTail(t *testing.T) {
	data := auditDataDir(t)
	ctx := context.Background()
	code, out, errOut := runAudit(ctx, "audit", "tail", "--data-dir", data, "-n", "3")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("exit %d, %d lines (%s): %s", code, len(lines), errOut, out)
	}
	if want := "2026-01-02T03:04:34Z  #30  response       trace=t-4  agent=booking-agent  200  1.5ms"; lines[2] != want {
		t.Fatalf("last line\n got %q\nwant %q", lines[2], want)
	}

	// --json prints the stored lines byte for byte.
	code, out, _ = runAudit(ctx, "audit", "tail", "--data-dir", data, "-n", "2", "--json")
	p, stored, i := segmentOf(t, data, 29)
	_ = p
	if code != 0 || out != string(stored[i])+string(stored[i+1]) {
		t.Fatalf("exit %d, json tail\n%s\nwant\n%s%s", code, out, stored[i], stored[i+1])
	}

	// -f follows what a running sidecar appends, across rotations.
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var buf lockedBuffer
	done := make(chan int)
	go func() {
		done <- Main(fctx, []string{"audit", "tail", "--data-dir", data, "-n", "100", "-f", "--interval", "10ms"},
			strings.NewReader(""), &buf, io.Discard)
	}()
	// Append only once the follower has printed the existing records, so
	// what follows is really followed.
	for wait := time.Now().Add(30 * time.Second); !strings.Contains(buf.String(), "#30 ") && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	// The fixture's records are dated 2026-01-02: keep age retention out of it.
	l, err := recorder.Open(ctx, recorder.Config{Dir: filepath.Join(data, "recorder"), SegmentBytes: 4096,
		MaxAge: 1 << 62, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < 40; i++ {
		if _, err := l.Append(ctx, &recorder.Record{Kind: recorder.KindRequest, TraceID: "followed", AgentID: "a",
			Payload: json.RawMessage(`{"pad":"` + strings.Repeat("x", 200) + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(buf.String(), "trace=followed") < 40 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail -f exit %d", code)
	}
	got := buf.String()
	if n := strings.Count(got, "trace=followed"); n != 40 || !strings.Contains(got, "#31 ") || !strings.Contains(got, "#70 ") {
		t.Fatalf("tail -f printed %d of 40 records:\n%s", n, got)
	}
}

// TestAuditDataDir: every subcommand reads the data directory the same
// way — --data-dir, defaulting to the sidecar's default — and prints JSON
// with --json; compressed segments read like plain ones.
func TestAuditDataDir(t *testing.T) {
	zip := auditZipDir(t)
	ctx := context.Background()
	cmds := []struct {
		name string
		args []string
		want string // in the human output
	}{
		{"verify", []string{"audit", "verify"}, "segments compressed"},
		{"show", []string{"audit", "show", "t-1"}, "trace t-1: 6 records"},
		{"tail", []string{"audit", "tail", "-n", "30"}, "#1  request"},
	}
	for _, c := range cmds {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := runAudit(ctx, append(c.args, "--data-dir", zip)...)
			if code != 0 || !strings.Contains(out, c.want) {
				t.Fatalf("--data-dir: exit %d, %s%s", code, out, errOut)
			}
			code, js, errOut := runAudit(ctx, append(c.args, "--data-dir", zip, "--json")...)
			if code != 0 {
				t.Fatalf("--json: exit %d: %s", code, errOut)
			}
			dec := json.NewDecoder(strings.NewReader(js))
			for dec.More() {
				var v map[string]any
				if err := dec.Decode(&v); err != nil {
					t.Fatalf("--json output is not JSON: %v\n%s", err, js)
				}
			}
			// Without --data-dir: the sidecar's default, relative to the
			// working directory.
			wd := t.TempDir()
			t.Chdir(wd)
			code, _, errOut = runAudit(ctx, c.args...)
			if code != 2 || !strings.Contains(errOut, "no flight recorder in "+config.DefaultDataDir) || !strings.Contains(errOut, "--data-dir") {
				t.Fatalf("no data dir: exit %d, %s", code, errOut)
			}
			if err := os.Symlink(zip, filepath.Join(wd, config.DefaultDataDir)); err != nil {
				t.Fatal(err)
			}
			if code, out, errOut := runAudit(ctx, c.args...); code != 0 || !strings.Contains(out, c.want) {
				t.Fatalf("default data dir: exit %d, %s%s", code, out, errOut)
			}
		})
	}
	// verify DIR stays an alias of --data-dir DIR.
	code, out, _ := runAudit(ctx, "audit", "verify", zip)
	if code != 0 || !strings.Contains(out, "OK ") {
		t.Fatalf("verify DIR: exit %d: %s", code, out)
	}

	// A damaged compressed segment is reported like a damaged plain one.
	data := t.TempDir()
	copyTree(t, zip, data)
	zst, _ := filepath.Glob(filepath.Join(data, "recorder", "seg-*.log.zst"))
	raw, _ := os.ReadFile(zst[0])
	raw[len(raw)/3] ^= 0x55
	os.WriteFile(zst[0], raw, 0o600)
	code, out, errOut := runAudit(ctx, "audit", "verify", "--data-dir", data)
	if code != 1 || !strings.Contains(out, "in segment "+filepath.Base(zst[0])+" was altered") {
		t.Fatalf("damaged compressed segment: exit %d\n%s%s", code, out, errOut)
	}
}

// copyTree copies a directory tree.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}
