package sidecar

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
)

// mesh is two agents, each behind its own sidecar: A calls B through A's
// egress proxy. Both are attested by one control plane.
type mesh struct {
	a, b   *harness
	cp     identity.PrivateKey
	keyA   identity.PrivateKey
	keyB   identity.PrivateKey
	client *http.Client // A's agent: every call through A's egress proxy
}

func attest(t *testing.T, cp identity.PrivateKey, agentID string, key identity.PrivateKey) *identity.Attestation {
	t.Helper()
	att, err := identity.CreateAttestation(cp, "cp-1", identity.Claims{AgentID: agentID,
		CodebaseHash: "sha256:" + strings.Repeat("a", 64), ConfigHash: "sha256:" + strings.Repeat("b", 64),
		VerificationKey: key.PublicKey()}, identity.AttestationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return att
}

// newMesh starts B (the bank by default) and A (the coder agent, with
// egress). editA and editB may change their configs.
func newMesh(t *testing.T, manifestB string, editA, editB func(*Config)) *mesh {
	t.Helper()
	m := &mesh{cp: mustKey(t), keyA: mustKey(t), keyB: mustKey(t)}
	cps := map[string]ed25519.PublicKey{"cp-1": m.cp.PublicKey()}
	m.b = start(t, manifestB, func(c *Config) {
		c.Key = m.keyB
		c.Attestation = attest(t, m.cp, c.Manifest.AgentID(), m.keyB)
		c.ControlPlaneKeys = cps
		c.RateLimitPerMinute = -1
		if editB != nil {
			editB(c)
		}
	})
	m.a = start(t, "coder_agent.json", func(c *Config) {
		c.Key = m.keyA
		c.Attestation = attest(t, m.cp, c.Manifest.AgentID(), m.keyA)
		c.ControlPlaneKeys = cps
		c.EgressListen = "on"
		if editA != nil {
			editA(c)
		}
	})
	proxy, _ := url.Parse(m.a.egressURL)
	m.client = &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}, Timeout: 20 * time.Second}
	return m
}

// call sends a POST through A's egress to target + path.
func (m *mesh) call(t *testing.T, target, path, body string, headers ...string) *response {
	t.Helper()
	req, err := http.NewRequest("POST", target+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := m.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := &response{status: resp.StatusCode, header: resp.Header, body: b}
	_ = json.Unmarshal(b, &r.json)
	return r
}

func TestEgressHandshake(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "secure_bank.json", nil, nil)
		r := m.call(t, m.b.url, "/proxy", `{"task":"balance"}`, wire.TraceID, "eg-1")
		if r.status != 200 || r.json["ok"] != true {
			t.Fatalf("A → B: %d %s", r.status, r.body)
		}
		// B's agent learns who called: A, authenticated and attested.
		calls := m.b.agent.received()
		if len(calls) != 1 || calls[0].Header.Get(wire.CallerID) != "coder-agent" || calls[0].Header.Get(wire.CallerAttested) != "true" {
			t.Fatalf("B's agent got %+v", calls)
		}
		if got := calls[0].Header.Get(wire.TraceID); got != "eg-1" {
			t.Errorf("trace id at B: %q", got)
		}
		// A's answer carries A's view of B: attested verified partner, 10.
		if got := r.header.Get(wire.TrustScore); got != "10" {
			t.Errorf("A's trust score of B: %q", got)
		}
		// Both flight recorders hold the call under the same trace.
		if tr := m.b.trace("eg-1"); !strings.Contains(string(tr.body), `"caller_id":"coder-agent","authenticated":true,"attested":true`) {
			t.Errorf("B's record: %s", tr.body)
		}
		tr := m.a.trace("eg-1")
		if !strings.Contains(string(tr.body), `"agent_id":"secure-bank-agent","caller_id":"coder-agent"`) ||
			!strings.Contains(string(tr.body), `"proven":"attested"`) {
			t.Errorf("A's record: %s", tr.body)
		}
	})
}

// TestEgressPathAsSigned sends paths whose escapes a normalising client
// would rewrite (%41 is A, %7e is ~): A's egress signs the path as the
// agent wrote it, so it must send that path, byte for byte, or B refuses
// the signature; and B's agent gets the same bytes (after /proxy).
func TestEgressPathAsSigned(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "secure_bank.json", nil, nil)
		for _, uri := range []string{"/proxy/%41b", "/proxy/a%7eb", "/proxy/a%20b", "/proxy/ab?q=%41&r=a%7Eb"} {
			r := m.call(t, m.b.url, uri, `{"task":"balance"}`)
			if r.status != 200 {
				t.Errorf("%s: %d %s", uri, r.status, r.body)
				continue
			}
			calls := m.b.agent.received()
			if got, want := calls[len(calls)-1].URI, strings.TrimPrefix(uri, "/proxy"); got != want {
				t.Errorf("B's agent got %s, want %s", got, want)
			}
		}
	})
}

func TestEgressRefusesBeforeAnyByteLeaves(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "untrusted_honeypot.json", nil, nil)
		r := m.call(t, m.b.url, "/proxy", `{"card":"`+card+`"}`, wire.Override, testOverride)
		if r.status != 403 || r.str("blocked_by") != "credit_card_permanent" ||
			!strings.Contains(r.str("error"), "Agent 'honeypot-agent' stores data permanently") {
			t.Fatalf("card to the honeypot: %d %s", r.status, r.body)
		}
		if n := len(m.b.agent.received()); n != 0 {
			t.Fatalf("the honeypot's agent was reached %d times", n)
		}
		// Without a card, the honeypot is still warned about, by A.
		r = m.call(t, m.b.url, "/proxy", `{"task":"x"}`)
		if r.status != 449 || !strings.Contains(r.str("warning"), "Low trust score (0/10) for agent 'honeypot-agent'") {
			t.Fatalf("plain call to the honeypot: %d %s", r.status, r.body)
		}
	})
}

func TestEgressRequiredScope(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "secure_bank.json", func(c *Config) {
			c.Egress.Targets = []client.TargetRule{{Match: "secure-bank-agent", PathPrefix: "/proxy/transfer"}}
			c.Egress.Targets[0].Scopes = []string{"payments:refund"}
		}, nil)
		if r := m.call(t, m.b.url, "/proxy/balance", `{}`); r.status != 200 {
			t.Fatalf("a path without requirements: %d %s", r.status, r.body)
		}
		r := m.call(t, m.b.url, "/proxy/transfer", `{}`)
		if r.status != 403 || r.str("blocked_by") != "missing_scope" || r.str("error") != "Agent missing required scopes: payments:refund" {
			t.Fatalf("missing scope: %d %s", r.status, r.body)
		}
	})
}

func TestEgressSlashedTargetRefused(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "secure_bank.json", nil, nil)
		if r := m.call(t, m.b.url, "/proxy", `{}`); r.status != 200 {
			t.Fatalf("before: %d %s", r.status, r.body)
		}
		for range 2 { // 5.0 → 3.0 → 1.0: untrusted
			m.a.do("POST", "/reputation/secure-bank-agent/slash", `{"reason":"hallucination","severity":"critical"}`, "Authorization", "Bearer "+testAdmin)
		}
		r := m.call(t, m.b.url, "/proxy", `{}`)
		if r.status != 403 || r.str("blocked_by") != "untrusted_target" {
			t.Fatalf("slashed target: %d %s", r.status, r.body)
		}
		if n := len(m.b.agent.received()); n != 1 {
			t.Errorf("B reached %d times, want 1", n)
		}
	})
}

// tamperer sits between A and B and can change what passes.
type tamperer struct {
	srv      *httptest.Server
	body     func([]byte) []byte // rewrites POST bodies
	manifest func([]byte) []byte // rewrites the manifest
	twice    atomic.Bool         // sends each POST to B twice (a replay)
	replayed atomic.Int64        // status of the replay
}

func newTamperer(t *testing.T, b string) *tamperer {
	tp := &tamperer{}
	target, _ := url.Parse(b)
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // the signature covers the URI A addressed
			if tp.manifest != nil {
				pr.Out.Header.Del("If-None-Match") // the document changes: so does its ETag
			}
			if pr.In.Method == "POST" && tp.body != nil {
				body, _ := io.ReadAll(pr.In.Body)
				body = tp.body(body)
				pr.Out.Body, pr.Out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.Request.URL.Path == client.ManifestPath && tp.manifest != nil && resp.StatusCode == 200 {
				body, _ := io.ReadAll(resp.Body)
				body = tp.manifest(body)
				resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
				resp.Header.Del("Content-Length")
				resp.Header.Set("ETag", client.ETag(body))
			}
			return nil
		},
	}
	tp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tp.twice.Load() && r.Method == "POST" {
			body, _ := io.ReadAll(r.Body)
			again, _ := http.NewRequest("POST", b+r.URL.RequestURI(), bytes.NewReader(body))
			again.Header = r.Header.Clone()
			again.Host = r.Host
			r.Body = io.NopCloser(bytes.NewReader(body))
			rp.ServeHTTP(w, r)
			if resp, err := http.DefaultClient.Do(again); err == nil {
				tp.replayed.Store(int64(resp.StatusCode))
				resp.Body.Close()
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(tp.srv.Close)
	return tp
}

func TestEgressTamperingAndReplay(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "secure_bank.json", nil, nil)
		tp := newTamperer(t, m.b.url)
		if r := m.call(t, tp.srv.URL, "/proxy", `{"amount":1}`); r.status != 200 {
			t.Fatalf("untouched: %d %s", r.status, r.body)
		}
		tp.body = func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("1"), []byte("9")) }
		r := m.call(t, tp.srv.URL, "/proxy", `{"amount":1}`)
		if r.status != 401 || !strings.Contains(r.str("error"), "digest") {
			t.Fatalf("tampered body: %d %s", r.status, r.body)
		}
		tp.body = nil
		tp.twice.Store(true)
		if r := m.call(t, tp.srv.URL, "/proxy", `{"amount":2}`); r.status != 200 {
			t.Fatalf("original before the replay: %d %s", r.status, r.body)
		}
		if got := tp.replayed.Load(); got != 401 {
			t.Fatalf("replay answered %d, want 401", got)
		}
		if n := len(m.b.agent.received()); n != 2 {
			t.Errorf("B's agent reached %d times, want 2", n)
		}
	})
}

func TestEgressBrokenManifestSignature(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "secure_bank.json", nil, nil)
		tp := newTamperer(t, m.b.url)
		tp.manifest = func(b []byte) []byte {
			return bytes.Replace(b, []byte(`"rate_limit":100`), []byte(`"rate_limit":101`), 1)
		}
		r := m.call(t, tp.srv.URL, "/proxy", `{}`)
		if r.status != 449 || !strings.Contains(string(r.body), "signature does not verify") {
			t.Fatalf("forged manifest: %d %s", r.status, r.body)
		}
		if n := len(m.b.agent.received()); n != 0 {
			t.Errorf("B's agent reached %d times", n)
		}
	})
}

func TestEgressRevalidatesChangedManifest(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "secure_bank.json", nil, func(c *Config) { c.ManifestMaxAge = time.Millisecond })
		tp := newTamperer(t, m.b.url)
		if r := m.call(t, tp.srv.URL, "/proxy", `{}`); r.status != 200 {
			t.Fatalf("first: %d %s", r.status, r.body)
		}
		// B now answers with another manifest (its operator re-deployed it
		// as a permanent-retention agent); max-age=0 makes A revalidate.
		tp.manifest = func(b []byte) []byte {
			var doc map[string]any
			_ = json.Unmarshal(b, &doc)
			doc["privacy"].(map[string]any)["retention_policy"] = "permanent"
			delete(doc, "signatures")
			out, _ := json.Marshal(doc)
			return out
		}
		r := m.call(t, tp.srv.URL, "/proxy", `{"card":"`+card+`"}`, wire.Override, testOverride)
		if r.status != 403 || r.str("blocked_by") != "credit_card_permanent" {
			t.Fatalf("after the change: %d %s", r.status, r.body)
		}
	})
}

func TestEgressHangingTarget(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close() // accept, never answer
			}
		}()
		m := newMesh(t, "secure_bank.json", func(c *Config) { c.Egress.FetchTimeout = 300 * time.Millisecond }, nil)
		start := time.Now()
		r := m.call(t, "http://"+ln.Addr().String(), "/proxy", `{}`)
		if r.status != 449 || !strings.Contains(string(r.body), "unreachable: no answer within 300ms") {
			t.Fatalf("hanging target: %d %s", r.status, r.body)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("the handshake waited %v", d)
		}
	})
}

func TestEgressRefusesConnect(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "secure_bank.json", nil, nil)
		conn, err := net.Dial("tcp", strings.TrimPrefix(m.a.egressURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "CONNECT bank.example:443 HTTP/1.1\r\nHost: bank.example:443\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 403 || !strings.Contains(string(body), "CONNECT") {
			t.Fatalf("CONNECT: %d %s", resp.StatusCode, body)
		}
	})
}

func TestEgressConnectWhenAllowed(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		pool := x509.NewCertPool() // filled once the TLS servers run
		trust := &tls.Config{RootCAs: pool}
		m := newMesh(t, "secure_bank.json", func(c *Config) {
			c.Egress.AllowConnect = true
			c.Egress.DiscoveryClient = &http.Client{Transport: &http.Transport{TLSClientConfig: trust}}
		}, nil)
		tlsB := httptest.NewTLSServer(m.b.sc.Handler())
		defer tlsB.Close()
		pot := start(t, "untrusted_honeypot.json", nil)
		tlsPot := httptest.NewTLSServer(pot.sc.Handler())
		defer tlsPot.Close()
		pool.AddCert(tlsB.Certificate())
		proxy, _ := url.Parse(m.a.egressURL)
		agent := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: trust,
			ProxyConnectHeader: http.Header{wire.TraceID: {"tunnel-1"}}}}

		resp, err := agent.Post(tlsB.URL+"/proxy", "application/json", strings.NewReader(`{"task":"x"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok":true`) {
			t.Fatalf("through the tunnel: %d %s", resp.StatusCode, body)
		}
		recs, err := m.a.sc.rec.Trace(t.Context(), "tunnel-1", 10)
		if err != nil || len(recs) == 0 || !strings.Contains(strings.Join(recs[0].Reasons, " "), "not inspected") {
			t.Fatalf("A's record of the tunnel: %+v %v", recs, err)
		}
		// The handshake still applies: the honeypot is warned about, and
		// no tunnel is opened.
		_, err = agent.Post(tlsPot.URL+"/proxy", "application/json", strings.NewReader(`{}`))
		if err == nil {
			t.Fatal("CONNECT to the honeypot went through")
		}
		if n := len(pot.agent.received()); n != 0 {
			t.Errorf("the honeypot was reached %d times", n)
		}
	})
}
