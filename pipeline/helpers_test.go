package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// card is a valid card number (Luhn) the tests hide in requests.
const card = "4532015112830366"

// ssn is a social security number the tests hide in requests.
const ssn = "123-45-6789"

// newLog opens a real flight recorder in a temporary directory, closed
// when the test ends.
func newLog(t testing.TB) *recorder.Log {
	t.Helper()
	l, err := recorder.Open(context.Background(), recorder.Config{Dir: filepath.Join(t.TempDir(), "recorder")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// records returns the records of one trace.
func records(t testing.TB, l *recorder.Log, traceID string) []recorder.Record {
	t.Helper()
	recs, err := l.Trace(context.Background(), traceID, 0)
	if err != nil {
		t.Fatalf("trace %q: %v", traceID, err)
	}
	return recs
}

// kinds lists the kinds of recs, in order.
func kinds(recs []recorder.Record) string {
	var k []string
	for _, r := range recs {
		k = append(k, string(r.Kind))
	}
	return strings.Join(k, ",")
}

func loadManifest(t testing.TB, name string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.ParseFile(filepath.Join("..", "examples", "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newEngine(t testing.TB, rules ...policy.Rule) *policy.Engine {
	t.Helper()
	e, err := policy.New(policy.Config{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newPipe returns a pipeline over checks recording to l.
func newPipe(l Recorder, checks ...Check) *Pipeline {
	return New(Config{Recorder: l, AgentID: "test-agent"}, checks...)
}

// baseExchange is a valid ingress exchange: POST /proxy with a small JSON
// body and a trace id. Each test row changes one thing on it.
func baseExchange() *Exchange {
	return &Exchange{
		Kind:        Ingress,
		Method:      "POST",
		Path:        "/proxy",
		Header:      Fields{{"Content-Type", "application/json"}, {wire.TraceID, "trace-1"}},
		Body:        []byte(`{"task":"hello"}`),
		ContentType: "application/json",
		Peer:        "127.0.0.1",
		TargetURI:   "http://sidecar.test/proxy",
	}
}

// run runs one check over x as the pipeline p would.
func run(p *Pipeline, c Check, x *Exchange) *Refusal {
	x.pipe = p
	return c.Run(context.Background(), x)
}

// without returns f with every line named name removed.
func without(f Fields, name string) Fields {
	var out Fields
	for _, h := range f {
		if !wire.Same(h.Name, name) {
			out = append(out, h)
		}
	}
	return out
}

// testToken is an override token (PROTOCOL §6) for Override.
type testToken struct{ secret string }

func (k testToken) IsSet() bool { return k.secret != "" }
func (k testToken) Matches(p string) bool {
	return k.secret != "" && strings.TrimSpace(p) == k.secret
}

const overrideSecret = "operator-override-3f9a7c21d8"

// cardRuns returns every substring of the formatted card c that starts and
// ends on a digit and holds exactly n digits: what a record must not hold.
func cardRuns(c string, n int) []string {
	var out []string
	for i := 0; i < len(c); i++ {
		if !isDigit(c[i]) {
			continue
		}
		d := 0
		for j := i; j < len(c); j++ {
			if isDigit(c[j]) {
				d++
			}
			if d == n {
				out = append(out, c[i:j+1])
				break
			}
		}
	}
	return out
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// leak reports the first run of 6 consecutive digits of the formatted card
// c found in b, or "".
func leak(b []byte, c string) string {
	for _, r := range cardRuns(c, 6) {
		if bytes.Contains(b, []byte(r)) {
			return r
		}
	}
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, c)
	for _, r := range cardRuns(digits, 6) {
		if bytes.Contains(b, []byte(r)) {
			return r
		}
	}
	return ""
}

// jsonOf encodes recs for searching.
func jsonOf(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stream is a streamed answer body over a byte slice.
type stream struct {
	mu      sync.Mutex
	r       *bytes.Reader
	closed  int
	closeBy error
}

func newStream(b []byte) *stream { return &stream{r: bytes.NewReader(b)} }

func (s *stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.r.Read(p)
}
func (s *stream) Close() error { return s.CloseWithError(nil) }
func (s *stream) CloseWithError(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed++
	s.closeBy = err
	return nil
}

// sendFunc is a Sender in a function (Sender is the pipeline's own
// interface: the transport's part of Forward).
type sendFunc func(ctx context.Context, x *Exchange) (*Answer, *Refusal)

func (f sendFunc) Send(ctx context.Context, x *Exchange) (*Answer, *Refusal) { return f(ctx, x) }

// answerWith returns a Sender answering every call with a copy of a.
func answerWith(a Answer) Sender {
	return sendFunc(func(context.Context, *Exchange) (*Answer, *Refusal) {
		c := a
		c.Header = append(Fields(nil), a.Header...)
		return &c, nil
	})
}

var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
