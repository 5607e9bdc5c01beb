package recorder

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is an injectable clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testKey is a fixed checkpoint key.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// logBuffer captures slog output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// openTest opens a log in dir with cfg (Dir, Logger and Clock filled in if
// unset) and closes it at the end of the test.
func openTest(t testing.TB, dir string, cfg Config) *Log {
	t.Helper()
	cfg.Dir = dir
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	l, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// appendN appends n request records of traces trace-<i%traces>.
func appendN(t testing.TB, l *Log, n, traces int) []uint64 {
	t.Helper()
	var seqs []uint64
	for i := 0; i < n; i++ {
		r := &Record{Kind: KindRequest, TraceID: traceName(i % traces), AgentID: "agent-a",
			Payload: []byte(`{"task":"do something useful","i":` + itoa(i) + `}`)}
		seq, err := l.Append(context.Background(), r)
		if err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

func traceName(i int) string { return "trace-" + itoa(i) }

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

// segFiles lists the segment files of dir, plain and compressed, oldest
// first.
func segFiles(t testing.TB, dir string) []string {
	t.Helper()
	files, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, sf := range files {
		out = append(out, filepath.Join(dir, sf.name))
	}
	return out
}

// segBytes returns the records of a segment file, decompressed if need be.
func segBytes(t testing.TB, path string) []byte {
	t.Helper()
	if !strings.HasSuffix(path, zsegSuffix) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	z, err := openZseg(path, filepath.Base(path))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	data := make([]byte, z.size)
	if _, err := z.ReadAt(data, 0); err != nil {
		t.Fatal(err)
	}
	return data
}

// readLines returns the lines of a segment file (with their newlines),
// without a preallocated zero tail.
func readLines(t testing.TB, path string) [][]byte {
	t.Helper()
	data := segBytes(t, path)
	if i := bytes.IndexByte(data, 0); i >= 0 {
		data = data[:i]
	}
	var out [][]byte
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			out = append(out, data)
			break
		}
		out = append(out, data[:i+1])
		data = data[i+1:]
	}
	return out
}

func writeLines(t testing.TB, path string, lines [][]byte) {
	t.Helper()
	if strings.HasSuffix(path, zsegSuffix) {
		t.Fatalf("writeLines on a compressed segment %s: build the fixture with CompressionNone", path)
	}
	if err := os.WriteFile(path, bytes.Join(lines, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// findLine returns the segment path and line index of record seq.
func findLine(t testing.TB, dir string, seq uint64) (string, int) {
	t.Helper()
	want := []byte(`{"seq":` + itoa(int(seq)) + `,`)
	for _, p := range segFiles(t, dir) {
		for i, line := range readLines(t, p) {
			if bytes.HasPrefix(line, want) {
				return p, i
			}
		}
	}
	t.Fatalf("seq %d not found", seq)
	return "", 0
}

// copyDir copies the regular files of src into a new temporary directory
// (a live log's too: what a crash would leave).
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || e.Name() == lockFile || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if errors.Is(err, os.ErrNotExist) {
			continue // a live log's maintenance replaced it meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// mustVerify fails the test unless dir verifies.
func mustVerify(t testing.TB, dir string, opts VerifyOptions) *VerifyReport {
	t.Helper()
	rep, err := Verify(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// withPwrite makes the logs a test opens write with pwrite(2) instead of a
// memory mapping (or not), until the test ends.
func withPwrite(t testing.TB, on bool) {
	t.Helper()
	old := usePwrite
	usePwrite = on
	t.Cleanup(func() { usePwrite = old })
}

// sidecarWords make up the text of sidecarRecord's payloads.
var sidecarWords = strings.Fields(`book flight hotel meeting invoice refund customer order shipping address
please confirm the a for with tomorrow urgent schedule report quarterly summary analysis agent
tool search result document contract review approve budget travel window seat vegetarian`)

// sidecarRecord is a request record as the sidecar writes it: a scrubbed
// JSON payload of about 1 kB (a task, ids, items, free text, redaction
// markers) and the request details, with a random 32-hex trace id.
func sidecarRecord(rng *rand.Rand, t time.Time) *Record {
	text := func(n int) string {
		var b strings.Builder
		for b.Len() < n {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(sidecarWords[rng.IntN(len(sidecarWords))])
		}
		return b.String()
	}
	items := make([]any, 5)
	for i := range items {
		items[i] = map[string]any{"sku": fmt.Sprintf("SKU-%06d", rng.IntN(999999)), "qty": 1 + rng.IntN(5),
			"price": float64(rng.IntN(100000)) / 100, "desc": text(30)}
	}
	payload, _ := json.Marshal(map[string]any{
		"task": text(40), "request_id": fmt.Sprintf("%016x", rng.Uint64()),
		"customer": map[string]any{"name": "[EMAIL_REDACTED]", "card": "[CREDIT_CARD_REDACTED]",
			"tier": []string{"gold", "silver", "basic"}[rng.IntN(3)], "id": rng.IntN(1000000)},
		"items": items, "notes": text(240),
		"context": map[string]any{"session": fmt.Sprintf("s-%08x", rng.Uint32()), "turn": rng.IntN(40), "model": "gpt-x", "temperature": 0.2},
	})
	details, _ := json.Marshal(map[string]any{"method": "POST", "path": "/proxy/v1/tasks", "trust_score": 0.82, "sensitive": []string{"email", "credit_card"}})
	return &Record{Kind: KindRequest, TraceID: fmt.Sprintf("%016x%016x", rng.Uint64(), rng.Uint64()), Time: t,
		AgentID: "booking-agent", CallerID: "travel-planner", Authenticated: true, Decision: "allow",
		Payload: payload, PayloadValid: true, Details: details}
}
