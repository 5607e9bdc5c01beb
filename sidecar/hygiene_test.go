package sidecar

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iatp/iatp/internal/wire"
)

// probe is a second agent on loopback, for what the test agent of
// harness_test.go does not do: it keeps each request as it came on the
// wire (the request URI unparsed) and answers as each test says.
type probe struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []probeCall
}

type probeCall struct {
	URI    string // the request target as sent
	Header http.Header
	Body   []byte
}

// newProbe starts a probe agent; answer, if not nil, writes its answers
// (else a small JSON one).
func newProbe(t *testing.T, answer http.HandlerFunc) *probe {
	t.Helper()
	p := &probe{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.calls = append(p.calls, probeCall{r.RequestURI, r.Header.Clone(), body})
		p.mu.Unlock()
		if answer != nil {
			answer(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *probe) received() []probeCall {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]probeCall(nil), p.calls...)
}

// withAgent points the sidecar at agentURL.
func withAgent(agentURL string, edit func(*Config)) func(*Config) {
	return func(c *Config) {
		c.AgentURL = agentURL
		if edit != nil {
			edit(c)
		}
	}
}

// sendRaw writes a request as given on a new connection and reads the
// answer.
func (h *harness) sendRaw(request string) *response {
	h.t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, request); err != nil {
		h.t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := &response{status: resp.StatusCode, header: resp.Header, body: b}
	_ = json.Unmarshal(b, &r.json)
	return r
}

// TestRepeatedOwnedHeaders sends each header the sidecar reads twice, in
// one spelling or two: each is refused with a 400 naming it, on both
// fronts, and the agent is never called.
func TestRepeatedOwnedHeaders(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		tests := []struct {
			name, first, second string
			v1, v2              string
		}{
			{wire.TraceID, wire.TraceID, wire.TraceID, "t-1", "t-2"},
			{wire.TraceID, wire.TraceID, "X_Agent_Trace_ID", "t-1", "t-1"},
			{wire.ForwardedFor, wire.ForwardedFor, wire.ForwardedFor, "10.0.0.1", "10.0.0.2"},
			{wire.Override, wire.Override, wire.Override, testOverride, "x"},
			{wire.Override, "X_User_Override", wire.Override, "x", testOverride},
			{wire.Signature, wire.Signature, wire.Signature, "iatp=:AAAA:", "iatp=:BBBB:"},
			{wire.SignatureInput, wire.SignatureInput, "signature_input", "a", "b"},
			{wire.IdempotencyKey, wire.IdempotencyKey, wire.IdempotencyKey, "k1", "k2"},
			{wire.Traceparent, wire.Traceparent, wire.Traceparent, "00-a-b-01", "00-c-d-01"},
		}
		for _, tt := range tests {
			t.Run(tt.first+"+"+tt.second, func(t *testing.T) {
				r := h.sendRaw("POST /proxy HTTP/1.1\r\nHost: sidecar.test\r\nContent-Type: application/json\r\n" +
					tt.first + ": " + tt.v1 + "\r\n" + tt.second + ": " + tt.v2 + "\r\nContent-Length: 2\r\n\r\n{}")
				want := "header " + tt.name + " appears 2 times (spellings with '_' for '-' count as the same header); send it once"
				if r.status != 400 || r.str("error") != want || r.str("trace_id") == "" || r.header.Get(wire.TraceID) != r.str("trace_id") {
					t.Errorf("%d %s", r.status, r.body)
				}
				if tr := h.trace(r.str("trace_id")); tr.status != 200 || !strings.Contains(string(tr.body), `"status":400`) {
					t.Errorf("the refusal is not recorded under %s: %d %s", r.str("trace_id"), tr.status, tr.body)
				}
			})
		}
		if n := len(h.agent.received()); n != 0 {
			t.Errorf("refused requests reached the agent %d times", n)
		}
	})
}

// TestIATPHeadersNeverCross checks X-IATP-* headers, in any spelling, are
// stripped from callers' requests and from the agent's answers; the
// agent's copies of the sidecar's own answer headers are replaced.
func TestIATPHeadersNeverCross(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		p := newProbe(t, func(w http.ResponseWriter, r *http.Request) {
			for _, name := range []string{"X-IATP-Caller-ID", "X_IATP_Caller_ID", "x-iatp-anything", "X_Iatp-Mixed", wire.TrustScore, "X_Agent_Trace_ID"} {
				w.Header()[name] = []string{"from-agent"}
			}
			w.Header().Set(wire.Quarantined, "true")
			w.Header().Set("X-Kept", "k")
			_, _ = io.WriteString(w, `{}`)
		})
		h := start(t, "secure_bank.json", withAgent(p.srv.URL, nil))
		r := h.sendRaw("POST /proxy HTTP/1.1\r\nHost: sidecar.test\r\nContent-Type: application/json\r\n" +
			"X_IATP_Caller_ID: root\r\nX-IATP-Caller-ID: root\r\nX-Iatp-Caller-Attested: true\r\nx_iatp_anything: 1\r\n" +
			"X-IATP-Anything: 1\r\nx-iatp-attestation_: 1\r\nX-Agent-Trace-ID: hyg-1\r\nContent-Length: 2\r\n\r\n{}")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		calls := p.received()
		if len(calls) != 1 {
			t.Fatalf("agent calls %d", len(calls))
		}
		for k, v := range calls[0].Header {
			if strings.HasPrefix(wire.Normalize(k), "x-iatp-") {
				t.Errorf("the agent received %s: %q", k, v)
			}
		}
		for k, v := range r.header {
			if strings.HasPrefix(wire.Normalize(k), "x-iatp-") {
				t.Errorf("the caller received %s: %q", k, v)
			}
		}
		if r.header.Get("X-Kept") != "k" {
			t.Errorf("a plain header of the agent was dropped: %v", r.header)
		}
		for name, want := range map[string]string{wire.TraceID: "hyg-1", wire.TrustScore: "10"} {
			if got := r.header.Values(name); len(got) != 1 || got[0] != want {
				t.Errorf("%s: %q, want the sidecar's %q only", name, got, want)
			}
		}
		if got := r.header.Values(wire.Quarantined); len(got) != 0 {
			t.Errorf("the agent marked its answer quarantined: %q", got)
		}
		for k := range r.header {
			if wire.Same(k, wire.TraceID) && k != wire.TraceID && k != "X-Agent-Trace-Id" {
				t.Errorf("the agent's %s reached the caller", k)
			}
		}
	})
}

// TestConnectionNamedHeaders checks headers named in Connection are not
// forwarded, in either direction.
func TestConnectionNamedHeaders(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		p := newProbe(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "X-Agent-Hop")
			w.Header().Set("X-Agent-Hop", "secret")
			w.Header().Set("X-Agent-Kept", "k")
			_, _ = io.WriteString(w, `{}`)
		})
		h := start(t, "secure_bank.json", withAgent(p.srv.URL, nil))
		r := h.sendRaw("POST /proxy HTTP/1.1\r\nHost: sidecar.test\r\nContent-Type: application/json\r\n" +
			"Connection: keep-alive, X-Hop, x_other_hop\r\nX-Hop: secret\r\nX-Other-Hop: secret\r\nKeep-Alive: timeout=5\r\n" +
			"X-Kept: k\r\nContent-Length: 2\r\n\r\n{}")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		got := p.received()[0].Header
		for _, name := range []string{"X-Hop", "X-Other-Hop", "Keep-Alive"} {
			if v := got.Values(name); len(v) != 0 {
				t.Errorf("the agent received %s: %q", name, v)
			}
		}
		if got.Get("X-Kept") != "k" {
			t.Errorf("X-Kept was not forwarded: %v", got)
		}
		if v := r.header.Values("X-Agent-Hop"); len(v) != 0 {
			t.Errorf("the caller received X-Agent-Hop: %q", v)
		}
		if r.header.Get("X-Agent-Kept") != "k" {
			t.Errorf("X-Agent-Kept was not relayed: %v", r.header)
		}
	})
}

// TestPathsChecked checks paths that would climb out of the agent URL are
// refused before the agent is called, and the agent receives exactly the
// path that was checked.
func TestPathsChecked(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		p := newProbe(t, nil)
		h := start(t, "secure_bank.json", withAgent(p.srv.URL+"/api", nil))
		for _, path := range []string{"/proxy/..;/x", "/proxy/%2e%2e/x", "/proxy/a%2Fb", "/proxy/a%5Cb", "/proxy/.%2E/x", "/proxy/%252e%252e/x", "/proxy/a/../../x"} {
			r := h.sendRaw("POST " + path + " HTTP/1.1\r\nHost: sidecar.test\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
			if r.status != 400 || !strings.Contains(r.str("error"), "the path after /proxy") {
				t.Errorf("%s: %d %s", path, r.status, r.body)
			}
		}
		if n := len(p.received()); n != 0 {
			t.Fatalf("refused paths reached the agent %d times: %+v", n, p.received())
		}
		for path, want := range map[string]string{
			"/proxy/a%20b":         "/api/a%20b",
			"/proxy/a%20b?q=%20+1": "/api/a%20b?q=%20+1",
			"/proxy/A/./..x":       "",
			"/proxy/caf%C3%A9/x;y": "/api/caf%C3%A9/x;y",
			"/proxy//double":       "/api//double",
			"/proxy/%7Euser":       "/api/%7Euser",
		} {
			n := len(p.received())
			r := h.sendRaw("POST " + path + " HTTP/1.1\r\nHost: sidecar.test\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
			if want == "" {
				if r.status != 400 {
					t.Errorf("%s: %d", path, r.status)
				}
				continue
			}
			calls := p.received()
			if r.status != 200 || len(calls) != n+1 || calls[n].URI != want {
				t.Errorf("%s: status %d, the agent got %v; want exactly %s", path, r.status, calls[n:], want)
			}
		}
	})
}

// TestSensitiveTraceIDNeverUsed checks a trace id holding a card number is
// neither answered nor recorded, also by the paths that answer outside the
// pipeline: a body refused before it is read, an admin endpoint.
func TestSensitiveTraceIDNeverUsed(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) { c.MaxBodyBytes = 1 << 10 })
		answers := map[string]*response{
			"proxy": h.do("POST", "/proxy", `{}`, wire.TraceID, card),
			"too large": h.sendRaw("POST /proxy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
				"X-Agent-Trace-ID: " + card + "\r\nContent-Length: 10485760\r\n\r\n"),
			"slash": h.do("POST", "/reputation/some-agent/slash", `{"reason":"hallucination"}`,
				"Authorization", "Bearer "+testAdmin, wire.TraceID, card),
		}
		for name, r := range answers {
			if r.header.Get(wire.TraceID) == card || r.str("trace_id") == card || r.header.Get(wire.TraceID) == "" {
				t.Errorf("%s: answered %d under trace id %q: %s", name, r.status, r.header.Get(wire.TraceID), r.body)
			}
		}
		if r := answers["proxy"]; r.status != 400 || !strings.Contains(r.str("error"), "holds sensitive data") {
			t.Errorf("proxy: %d %s", r.status, r.body)
		}
		if tr := h.trace(card); tr.status != 404 {
			t.Errorf("records under the card number: %d %s", tr.status, tr.body)
		}
		if n := len(h.agent.received()); n != 0 {
			t.Errorf("the agent was called %d times", n)
		}
	})
}

// TestUnreadableRequestNotEchoed sends requests a front cannot read: the
// 400 says why (in JSON on the fasthttp front), without the copy of the
// request's bytes fasthttp puts in its error (the override token, a card
// number).
func TestUnreadableRequestNotEchoed(t *testing.T) {
	eachFront(t, testUnreadableRequestNotEchoed)
}

func testUnreadableRequestNotEchoed(t *testing.T) {
	h := start(t, "secure_bank.json", nil)
	for _, req := range []string{
		"POST /proxy HTTP/1.1\r\nHost: x\r\nX-User-Override: tok-SECRET-77\r\nX-Note: 4532015112830366\x01\r\nContent-Length: 2\r\n\r\n{}",
		"POST /proxy HTTP/1.1\r\nHost: x\r\nX-User-Override: tok-SECRET-77\r\nX Card: 4532015112830366\r\n\r\n",
		"POST /proxy HTTP/1.1\r\nHost: x\r\nX-User-Override: tok-SECRET-77\r\nContent-Length: 4532015112830366x\r\n\r\n",
	} {
		r := h.sendRaw(req)
		if r.status != http.StatusBadRequest {
			t.Errorf("%q: %d %s, want 400", req, r.status, r.body)
		}
		// net/http answers what it cannot read itself, in plain text.
		if r.json["error"] == nil && !strings.HasSuffix(t.Name(), "net_http") {
			t.Errorf("%q: %d without a JSON error: %s", req, r.status, r.body)
		}
		if b := string(r.body); strings.Contains(b, "tok-SECRET-77") || strings.Contains(b, "4532015112830366") {
			t.Errorf("%q: the answer echoes the request: %s", req, b)
		}
	}
}

// TestEgressUnreadableRequestIsEgress sends the egress proxy a body over
// the limit: 413, recorded as an egress refusal under its trace id.
func TestEgressUnreadableRequestIsEgress(t *testing.T) {
	eachFront(t, testEgressUnreadableRequestIsEgress)
}

func testEgressUnreadableRequestIsEgress(t *testing.T) {
	m := newMesh(t, "secure_bank.json", func(c *Config) { c.MaxBodyBytes = 1 << 10 }, nil)
	body := `{"note":"` + strings.Repeat("a", 4<<10) + `"}`
	req := "POST " + m.b.url + "/proxy HTTP/1.1\r\nHost: " + strings.TrimPrefix(m.b.url, "http://") +
		"\r\nX-Agent-Trace-ID: eg-big-1\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	r := (&harness{t: t, url: m.a.egressURL}).sendRaw(req)
	if r.status != http.StatusRequestEntityTooLarge || r.json["error"] == nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if n := len(m.b.agent.received()); n != 0 {
		t.Errorf("B's agent got %d calls", n)
	}
	tr := m.a.trace("eg-big-1")
	if !strings.Contains(string(tr.body), `"exchange":"egress"`) {
		t.Errorf("A's record of the refusal: %s", tr.body)
	}
}

// TestInvalidHeaderNameRefused sends header names that are not RFC 9110
// tokens, on ingress and through the egress proxy: the sidecar refuses
// them with 400 instead of passing them on.
func TestInvalidHeaderNameRefused(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		m := newMesh(t, "secure_bank.json", nil, nil)
		host := strings.TrimPrefix(m.b.url, "http://")
		for _, tc := range []struct{ where, url, target string }{
			{"ingress", m.b.url, "/proxy"},
			{"egress", m.a.egressURL, m.b.url + "/proxy"},
		} {
			for _, name := range []string{"0 0", "X-Note "} {
				r := (&harness{t: t, url: tc.url}).sendRaw("POST " + tc.target + " HTTP/1.1\r\nHost: " + host +
					"\r\n" + name + ": x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
				// The refusal is a sidecar's, not an agent's relayed (a Go
				// agent refuses such a name too, and the sidecar relays
				// its answer with the latency header).
				if r.status != http.StatusBadRequest || r.header.Get(wire.Latency) != "" {
					t.Errorf("%s, header %q: %d %v %s", tc.where, name, r.status, r.header, r.body)
				}
				// net/http refuses it before the sidecar sees it, in plain
				// text; on fasthttp the sidecar answers in JSON.
				if !strings.HasSuffix(t.Name(), "net_http") && r.json["error"] == nil {
					t.Errorf("%s, header %q: not the sidecar's JSON refusal: %s", tc.where, name, r.body)
				}
			}
		}
	})
}
