package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/iatp/iatp/internal/wire"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iatp/iatp/manifest"
)

const (
	testOverride = "operator-override-3f9a7c21d8"
	testAdmin    = "admin-token-91b2e4c7a0f5"
)

// testAgent is a real HTTP agent on loopback that remembers what reached it.
type testAgent struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []agentCall
}

type agentCall struct {
	Method, Path, Query string
	Header              http.Header
	Body                []byte
	URI                 string // the request target as it arrived
}

func newTestAgent(t *testing.T) *testAgent {
	t.Helper()
	a := &testAgent{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.calls = append(a.calls, agentCall{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body, r.RequestURI})
		a.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/slow"):
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
				return
			}
		case strings.HasPrefix(r.URL.Path, "/teapot"):
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set(wire.TrustScore, "10") // an agent cannot speak for the sidecar
			w.WriteHeader(http.StatusTeapot)
			_, _ = io.WriteString(w, "short and stout")
			return
		case strings.HasPrefix(r.URL.Path, "/sse"):
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			for i := range 3 {
				_, _ = io.WriteString(w, "data: {\"event\":"+string(rune('0'+i))+",\"card\":\"4532015112830366\"}\n\n")
				w.(http.Flusher).Flush()
				time.Sleep(150 * time.Millisecond)
			}
			return
		case strings.HasPrefix(r.URL.Path, "/big"):
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"data":"` + strings.Repeat("x", 200<<10) + `"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ok": true, "echo_bytes": len(body), "email": "alice@example.com"})
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	return a
}

func (a *testAgent) received() []agentCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]agentCall(nil), a.calls...)
}

// harness is a real sidecar on loopback in front of a test agent.
type harness struct {
	t     *testing.T
	sc    *Sidecar
	url   string
	agent *testAgent
	logs  *syncBuffer
	dir   string
	front front
	// egressURL is the egress proxy, when the config sets EgressListen.
	egressURL string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func loadManifest(t testing.TB, name string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.ParseFile(filepath.Join("..", "examples", "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// front is one of the sidecar's HTTP fronts.
type front string

// The fronts every end-to-end test runs through: Run's fasthttp server and
// Handler mounted on net/http.
const (
	fastFront front = "fasthttp"
	httpFront front = "net_http"
)

var allFronts = []front{fastFront, httpFront}

// testFronts maps the name of each subtest eachFront runs to its front.
var testFronts sync.Map // test name -> front

// eachFront runs fn once per front, as subtests; start, inside fn, serves
// the sidecar on that front. Every end-to-end test goes through it, so the
// fronts cannot drift apart unnoticed.
func eachFront(t *testing.T, fn func(t *testing.T)) {
	t.Helper()
	for _, f := range allFronts {
		t.Run(string(f), func(t *testing.T) {
			testFronts.Store(t.Name(), f)
			t.Cleanup(func() { testFronts.Delete(t.Name()) })
			fn(t)
		})
	}
}

// start runs a sidecar with cfg (AgentURL, DataDir, tokens and logger
// filled in when empty) on the front eachFront chose, and stops it when
// the test ends.
func start(t *testing.T, manifestFile string, edit func(*Config)) *harness {
	t.Helper()
	var v any
	ok := false
	for name := t.Name(); !ok && name != ""; name = name[:max(0, strings.LastIndexByte(name, '/'))] {
		v, ok = testFronts.Load(name)
	}
	if !ok {
		t.Fatal("start outside eachFront: every end-to-end test runs through every front")
	}
	h := &harness{t: t, agent: newTestAgent(t), logs: &syncBuffer{}, dir: t.TempDir(), front: v.(front)}
	cfg := Config{
		AgentURL:      h.agent.srv.URL,
		Manifest:      loadManifest(t, manifestFile),
		DataDir:       h.dir,
		OverrideToken: testOverride,
		AdminToken:    testAdmin,
		Logger:        slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&cfg)
	}
	sc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.sc = sc
	switch h.front {
	case fastFront:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.url = "http://" + ln.Addr().String()
		var eln net.Listener
		if cfg.EgressListen != "" {
			if eln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			h.egressURL = "http://" + eln.Addr().String()
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sc.ServeAll(ctx, ln, eln) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		})
	case httpFront:
		srv := httptest.NewServer(sc.Handler())
		h.url = srv.URL
		esrv := httptest.NewServer(sc.EgressHandler())
		if cfg.EgressListen != "" {
			h.egressURL = esrv.URL
		}
		t.Cleanup(func() {
			esrv.Close()
			srv.Close()
			if err := sc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	}
	return h
}

// response is a decoded answer of the sidecar.
type response struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (h *harness) do(method, path string, body string, headers ...string) *response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return h.send(req)
}

func (h *harness) send(req *http.Request) *response {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	r := &response{status: resp.StatusCode, header: resp.Header, body: b}
	_ = json.Unmarshal(b, &r.json)
	return r
}

func (r *response) str(key string) string {
	s, _ := r.json[key].(string)
	return s
}

// trace fetches the recorded trace with the admin token.
func (h *harness) trace(id string) *response {
	return h.do("GET", "/trace/"+id, "", "Authorization", "Bearer "+testAdmin)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if n := panics.Load(); n != 0 && code == 0 {
		// No input a test knows may reach the panic handler.
		os.Stderr.WriteString("a request handler panicked during the tests\n")
		code = 1
	}
	os.Exit(code)
}
