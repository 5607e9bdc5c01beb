package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/iatp/iatp/internal/wire"
)

// serveInProcess runs one request through the fasthttp front without a
// network on the caller's side (the agent is still a real server).
func serveInProcess(s *Sidecar, req *fasthttp.Request) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	s.serveFast(&ctx)
	resp := &fasthttp.Response{}
	ctx.Response.CopyTo(resp)
	if ctx.Response.IsBodyStream() {
		body, _ := io.ReadAll(ctx.Response.BodyStream())
		_ = ctx.Response.CloseBodyStream()
		resp.SetBody(body)
	}
	return resp
}

// fuzzCards are card numbers the fuzz seeds hide; none may reach a record.
var fuzzCards = []string{"4532015112830366", "378282246310005"}

// FuzzExchange sends the same random request — method, path and query,
// header lines, body — through both fronts, each a sidecar of its own in
// front of an agent of its own. Both must decide alike, send the agent the
// same request, never panic, answer every refusal with a JSON error, and
// record no card number whole.
func FuzzExchange(f *testing.F) {
	type side struct {
		s     *Sidecar
		agent *testAgent
	}
	var sides [2]side
	for i := range sides {
		agent := newTestAgent(&testing.T{})
		defer agent.srv.Close()
		s, err := New(Config{AgentURL: agent.srv.URL, Manifest: loadManifest(f, "untrusted_honeypot.json"), DataDir: f.TempDir(),
			OverrideToken: testOverride, MaxBodyBytes: 64 << 10, RateLimitPerMinute: -1,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			f.Fatal(err)
		}
		defer s.Close()
		sides[i] = side{s, agent}
	}
	f.Add("POST", "/proxy", "", []byte(`{"task":"x"}`))
	f.Add("POST", "/proxy", "X-User-Override: "+testOverride, []byte(`{"task":"x"}`))
	f.Add("POST", "/proxy/a/b?c=d", "X-User-Override: "+testOverride+"\nX-Agent-Trace-ID: t-2", []byte(`[1,"4532015112830366"]`))
	f.Add("POST", "/proxy", "X-Agent-Trace-ID: bad id", []byte(`{"ssn":"123-45-6789"}`))
	f.Add("GET", "/proxy", "", []byte(`{}`))
	f.Add("POST", "/proxy/%2e%2e/x", "", []byte(`{}`))
	f.Add("POST", "/proxy/..;/x", "", []byte(`{}`))
	f.Add("POST", "/proxy/", "X-User-Override: "+testOverride, []byte(`{}`))
	f.Add("POST", "/%70roxy", "", []byte(`{}`))
	f.Add("POST", "/proxy", "X-User-Override: "+testOverride, []byte("{\"a\":\"\xff\"}"))
	f.Add("POST", "/proxy/sse", "X-User-Override: "+testOverride, []byte(`"\u0034532015112830366"`))
	f.Add("POST", "/proxy/4532015112830366?card=4532+0151+1283+0366", "X-User-Override: "+testOverride, []byte(`{}`))
	f.Add("POST", "/proxy?q=%34%35%33%32015112830366", "X-User-Override: "+testOverride, []byte(`{}`))
	f.Add("POST", "/proxy", "X-User-Override: "+testOverride+"\nX-Note: 4532015112830366", []byte(`{}`))
	f.Add("POST", "/proxy", "X-Agent-Trace-ID: a\nX_Agent_Trace_ID: b", []byte(`{}`))
	f.Add("POST", "/proxy", "X-User-Override: "+testOverride+"\nX-IATP-Caller-ID: admin\nX_IATP_Caller_ID: admin", []byte(`{}`))
	f.Add("POST", "/proxy", "X-User-Override: "+testOverride, []byte("not json 4532015112830366 at all"))
	f.Add("POST", "/proxy", "X-User-Override: "+testOverride, []byte(`{"n":4.532015112830366e15,"big":1e400}`))
	f.Add("POST", "/proxy", "X-User-Override: "+testOverride+"\nConnection: X-Secret\nX-Secret: s", []byte(`{}`))
	f.Fuzz(func(t *testing.T, method, target, headerText string, body []byte) {
		if method == "" || !isToken(method) || !strings.HasPrefix(target, "/") ||
			strings.ContainsAny(target, " \t\r\n#") || !validTarget(target) {
			return // not a request line both stacks can carry
		}
		if _, err := url.ParseRequestURI(target); err != nil {
			return // net/http refuses it before any handler runs
		}
		header := http.Header{}
		for line := range strings.SplitSeq(headerText, "\n") {
			name, value, ok := strings.Cut(line, ":")
			value = strings.TrimSpace(value)
			if !ok || !isToken(name) || !validTarget(strings.ReplaceAll(value, " ", "!")) || isFramingHeader(name) {
				continue
			}
			header[name] = append(header[name], value)
		}
		// The fasthttp front.
		freq := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(freq)
		freq.Header.SetMethod(method)
		freq.SetRequestURI(target)
		freq.Header.SetHost("sidecar.test")
		for k, vs := range header {
			for _, v := range vs {
				freq.Header.Add(k, v)
			}
		}
		freq.SetBody(body)
		before := [2]int{len(sides[0].agent.received()), len(sides[1].agent.received())}
		fresp := serveInProcess(sides[0].s, freq)
		// The net/http front.
		hreq := httptest.NewRequestWithContext(context.Background(), method, target, bytes.NewReader(body))
		hreq.Host = "sidecar.test"
		hreq.RemoteAddr = "127.0.0.1:40000"
		for k, vs := range header {
			hreq.Header[k] = vs
		}
		rec := httptest.NewRecorder()
		sides[1].s.ServeHTTP(rec, hreq)
		if n := panics.Load(); n != 0 {
			t.Fatalf("a handler panicked (%d)", n)
		}
		if _, isProxy := wire.SplitProxy(strings.SplitN(target, "?", 2)[0]); !isProxy {
			return // an admin endpoint
		}
		status := [2]int{fresp.StatusCode(), rec.Code}
		answers := [2][]byte{fresp.Body(), rec.Body.Bytes()}
		if status[0] != status[1] {
			t.Fatalf("%s %s: fasthttp %d %q, net/http %d %q", method, target, status[0], answers[0], status[1], answers[1])
		}
		if status[0] >= 400 && status[0] != http.StatusTeapot {
			var e [2]struct {
				Error     string `json:"error"`
				TraceID   string `json:"trace_id"`
				BlockedBy string `json:"blocked_by"`
			}
			for i := range e {
				if err := json.Unmarshal(answers[i], &e[i]); err != nil || e[i].Error == "" || e[i].TraceID == "" {
					t.Fatalf("status %d without a JSON error: %q", status[i], answers[i])
				}
			}
			if e[0].Error != e[1].Error || e[0].BlockedBy != e[1].BlockedBy {
				t.Fatalf("fronts refuse differently: %+v vs %+v", e[0], e[1])
			}
		}
		var calls [2][]agentCall
		for i := range sides {
			calls[i] = sides[i].agent.received()[before[i]:]
		}
		if len(calls[0]) != len(calls[1]) {
			t.Fatalf("fasthttp forwarded %d calls, net/http %d", len(calls[0]), len(calls[1]))
		}
		if status[0] >= 400 && status[0] != http.StatusTeapot && status[0] != 502 && status[0] != 504 && len(calls[0]) != 0 {
			t.Fatalf("refused request (%d) reached the agent", status[0])
		}
		for i := range calls[0] {
			a, b := calls[0][i], calls[1][i]
			if a.Method != b.Method || a.Path != b.Path || a.Query != b.Query || !bytes.Equal(a.Body, b.Body) {
				t.Fatalf("the agent got different requests:\n%+v\n%+v", a, b)
			}
			if header.Get(wire.TraceID) == "" && header.Get("X_Agent_Trace_ID") == "" { // a new id each side
				a.Header.Del(wire.TraceID)
				b.Header.Del(wire.TraceID)
			}
			if ha, hb := headerLines(a.Header), headerLines(b.Header); !slices.Equal(ha, hb) {
				t.Fatalf("the agent got different headers:\n%q\n%q", ha, hb)
			}
		}
		// No card number reaches a record whole.
		for i, traceID := range []string{string(fresp.Header.Peek(wire.TraceID)), rec.Header().Get(wire.TraceID)} {
			recs, err := sides[i].s.rec.Trace(context.Background(), traceID, 100)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(recs)
			for _, c := range fuzzCards {
				if holdsWhole(b, c) {
					t.Fatalf("card %s recorded: %s", c, b)
				}
			}
		}
	})
}

// validTarget reports whether both HTTP stacks read target the same way.
func validTarget(target string) bool {
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// isFramingHeader names headers the test's clients set themselves.
func isFramingHeader(name string) bool {
	switch http.CanonicalHeaderKey(name) {
	case "Content-Length", "Transfer-Encoding", "Host", "Connection", "Expect", "Te", "Trailer", "Upgrade":
		return true
	}
	return false
}

// headerLines lists the header lines an agent got, sorted, without the
// ones that differ by transport.
func headerLines(h http.Header) []string {
	var out []string
	for k, vs := range h {
		switch k {
		case "Content-Length", "Accept-Encoding", "User-Agent":
			continue
		}
		for _, v := range vs {
			out = append(out, k+": "+v)
		}
	}
	slices.Sort(out)
	return out
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// holdsWhole reports whether b holds card as a value of its own: not glued
// to further digits or letters, which would make it another number that is
// not a card (and is rightly not scrubbed).
func holdsWhole(b []byte, card string) bool {
	alnum := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(card))
		if j < 0 {
			return false
		}
		at := i + j
		end := at + len(card)
		if (at == 0 || !alnum(b[at-1])) && (end == len(b) || !alnum(b[end])) {
			return true
		}
		i = at + 1
	}
}
