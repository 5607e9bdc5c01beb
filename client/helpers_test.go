package client_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/sidecar"
)

const (
	// testOverride is a strong override token, the same on both sides.
	testOverride = "operator-override-3f9a7c21d8"
	// card is a valid (Luhn) card number.
	card = "4532015112830366"
	// bigAnswer is the size of the data in the answer to /big.
	bigAnswer = 200 << 10
)

func mustKey(t testing.TB) identity.PrivateKey {
	t.Helper()
	k, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// attest has the control plane cp (key id kid) vouch for agentID running
// with key: a v2 attestation.
func attest(t testing.TB, cp identity.PrivateKey, kid, agentID string, key identity.PrivateKey) *identity.Attestation {
	t.Helper()
	att, err := identity.CreateAttestation(cp, kid, identity.Claims{AgentID: agentID,
		CodebaseHash: "sha256:" + strings.Repeat("a", 64), ConfigHash: "sha256:" + strings.Repeat("b", 64),
		VerificationKey: key.PublicKey()}, identity.AttestationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return att
}

func attestationJSON(t testing.TB, a *identity.Attestation) []byte {
	t.Helper()
	b, err := a.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadManifest(t testing.TB, name string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.ParseFile(filepath.Join("..", "examples", "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// testAgent is a real HTTP agent on loopback that remembers who reached it.
type testAgent struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []http.Header
	// more lets the answer to /big go on; finished is set once it is sent.
	more     chan struct{}
	finished atomic.Bool
}

func newTestAgent(t testing.TB) *testAgent {
	t.Helper()
	a := &testAgent{more: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		a.mu.Lock()
		a.calls = append(a.calls, r.Header.Clone())
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.URL.Path, "/big") {
			// Larger than the client buffers: the first half, then the
			// rest once the caller has read the first (or after 1 s,
			// within the bank's SLA).
			half := `{"ok":true,"data":"` + strings.Repeat("x", bigAnswer/2)
			_, _ = io.WriteString(w, half)
			w.(http.Flusher).Flush()
			select {
			case <-a.more:
			case <-time.After(time.Second):
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, strings.Repeat("x", bigAnswer-bigAnswer/2)+`"}`)
			a.finished.Store(true)
			return
		}
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *testAgent) received() []http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]http.Header(nil), a.calls...)
}

// front is how a test serves a sidecar.
type front string

const (
	fastFront front = "fasthttp" // ServeAll, what `iatp sidecar` runs
	httpFront front = "net_http" // Handler on net/http
	tlsFront  front = "tls"      // Handler on net/http over TLS
)

// remote is a real sidecar on loopback in front of a test agent: the
// target the client under test calls.
type remote struct {
	sc    *sidecar.Sidecar
	url   string
	agent *testAgent
	// tls is the TLS server of a tlsFront remote, whose Client() trusts it.
	tls *httptest.Server
}

// startRemote runs a sidecar protecting an agent with the example manifest
// file on front f; edit may change its config.
func startRemote(t testing.TB, f front, manifestFile string, edit func(*sidecar.Config)) *remote {
	t.Helper()
	r := &remote{agent: newTestAgent(t)}
	cfg := sidecar.Config{
		AgentURL:           r.agent.srv.URL,
		Manifest:           loadManifest(t, manifestFile),
		DataDir:            t.TempDir(),
		OverrideToken:      testOverride,
		RateLimitPerMinute: -1,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if edit != nil {
		edit(&cfg)
	}
	sc, err := sidecar.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.sc = sc
	switch f {
	case fastFront:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r.url = "http://" + ln.Addr().String()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sc.ServeAll(ctx, ln, nil) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("ServeAll: %v", err)
			}
		})
	case httpFront, tlsFront:
		var srv *httptest.Server
		if f == tlsFront {
			srv = httptest.NewTLSServer(sc.Handler())
			r.tls = srv
		} else {
			srv = httptest.NewServer(sc.Handler())
		}
		r.url = srv.URL
		t.Cleanup(func() {
			srv.Close()
			if err := sc.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
	default:
		t.Fatalf("unknown front %q", f)
	}
	return r
}

// mesh is a control plane and the keys of the agents it attests.
type mesh struct {
	cp        identity.PrivateKey
	cpKeys    map[string]ed25519.PublicKey
	keyA      identity.PrivateKey // the calling agent, coder-agent
	keyB      identity.PrivateKey // the remote agent
	attestedA []byte
}

func newMesh(t testing.TB) *mesh {
	t.Helper()
	m := &mesh{cp: mustKey(t), keyA: mustKey(t), keyB: mustKey(t)}
	m.cpKeys = map[string]ed25519.PublicKey{"cp-1": m.cp.PublicKey()}
	m.attestedA = attestationJSON(t, attest(t, m.cp, "cp-1", "coder-agent", m.keyA))
	return m
}

// attested returns an edit that makes a remote sidecar attested by the
// mesh's control plane, with the mesh's key B, accepting attested callers.
func (m *mesh) attested(t testing.TB) func(*sidecar.Config) {
	return func(c *sidecar.Config) {
		c.Key = m.keyB
		c.Attestation = attest(t, m.cp, "cp-1", c.Manifest.AgentID(), m.keyB)
		c.ControlPlaneKeys = m.cpKeys
	}
}

// newClient returns coder-agent's client: signed, attested, trusting the
// mesh's control plane. edit may change its config.
func (m *mesh) newClient(t testing.TB, edit func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{
		AgentID:       "coder-agent",
		Key:           m.keyA,
		Attestation:   m.attestedA,
		Discovery:     client.DiscoveryConfig{ControlPlaneKeys: m.cpKeys, FetchTimeout: 2 * time.Second},
		OverrideToken: testOverride,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// origin is a plain HTTP server that serves a manifest document (and,
// when set, an attestation) the way a sidecar does — ETag, Cache-Control,
// 304 on a matching If-None-Match — and counts what it is asked.
type origin struct {
	srv *httptest.Server

	mu           sync.Mutex
	doc          []byte
	etag         string
	cacheControl string
	attestation  []byte
	status       int           // if not 0, answer every manifest request with it
	delay        time.Duration // before answering a manifest request
	gate         chan struct{} // if not nil, manifest requests wait for it to close
	stallBody    bool          // send the manifest's headers, never its body
	stallAtt     bool          // never answer attestation requests
	inm          []string      // If-None-Match of each manifest request

	manifests    atomic.Int64  // manifest requests
	notModified  atomic.Int64  // of which answered 304
	attestations atomic.Int64  // attestation requests
	others       atomic.Int64  // requests for any other path
	arrived      chan struct{} // receives once per manifest request, when not full
}

func newOrigin(t testing.TB, doc []byte) *origin {
	t.Helper()
	o := &origin{arrived: make(chan struct{}, 1)}
	o.set(doc, client.ETag(doc), "")
	o.srv = httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(o.srv.Close)
	return o
}

// set changes what the origin serves.
func (o *origin) set(doc []byte, etag, cacheControl string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.doc, o.etag, o.cacheControl = doc, etag, cacheControl
}

func (o *origin) serve(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	doc, etag, cc, att, status, delay, gate := o.doc, o.etag, o.cacheControl, o.attestation, o.status, o.delay, o.gate
	stallBody, stallAtt := o.stallBody, o.stallAtt
	o.mu.Unlock()
	switch r.URL.Path {
	case client.ManifestPath:
		o.manifests.Add(1)
		o.mu.Lock()
		o.inm = append(o.inm, r.Header.Get("If-None-Match"))
		o.mu.Unlock()
		select {
		case o.arrived <- struct{}{}:
		default:
		}
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		time.Sleep(delay)
		if status != 0 {
			if status/100 == 3 {
				w.Header().Set("Location", "/moved")
			}
			w.WriteHeader(status)
			_, _ = w.Write(doc)
			return
		}
		if etag != "" {
			w.Header().Set("ETag", etag)
		}
		if cc != "" {
			w.Header().Set("Cache-Control", cc)
		}
		if etag != "" && r.Header.Get("If-None-Match") == etag {
			o.notModified.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if stallBody {
			w.Header().Set("Content-Length", strconv.Itoa(len(doc)))
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		_, _ = w.Write(doc)
	case client.AttestationPath:
		o.attestations.Add(1)
		if stallAtt {
			<-r.Context().Done()
			return
		}
		if att == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(att)
	default:
		o.others.Add(1)
		http.NotFound(w, r)
	}
}

// ifNoneMatch returns the If-None-Match of each manifest request so far.
func (o *origin) ifNoneMatch() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.inm...)
}

// document returns m's served document, signed by key (kid = agent id)
// unless key is the zero value, with att embedded when not nil.
func document(t testing.TB, m *manifest.Manifest, key identity.PrivateKey, att []byte) []byte {
	t.Helper()
	c := *m
	if !key.IsZero() {
		c.Identity.VerificationKey = identity.FormatPublicKey(key.PublicKey())
	}
	c.Attestation = att
	doc, err := c.Document()
	if err != nil {
		t.Fatal(err)
	}
	if !key.IsZero() {
		if doc, err = identity.SignManifest(doc, key, c.AgentID()); err != nil {
			t.Fatal(err)
		}
	}
	return doc
}

// clock is a test time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// decoded is an answer of the Transport, read and decoded.
type decoded struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (d *decoded) str(key string) string {
	s, _ := d.json[key].(string)
	return s
}

// send does req with hc and reads the answer.
func send(t testing.TB, hc *http.Client, req *http.Request) *decoded {
	t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	d := &decoded{status: resp.StatusCode, header: resp.Header, body: b}
	_ = json.Unmarshal(b, &d.json)
	return d
}

func post(t testing.TB, hc *http.Client, url, body string, headers ...string) *decoded {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return send(t, hc, req)
}
