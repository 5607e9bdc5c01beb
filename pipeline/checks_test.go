package pipeline

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// fixedIDs returns a trace id maker giving fresh-1, fresh-2, …
func fixedIDs() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("fresh-%d", n) }
}

func TestHeaders(t *testing.T) {
	type row struct {
		name   string
		edit   func(x *Exchange)
		status int    // 0: passes
		msg    string // fragment of the refusal's message
		trace  string // x.TraceID after the check
	}
	tests := []row{
		{"valid trace id kept", func(*Exchange) {}, 0, "", "trace-1"},
		{"no trace id: a new one", func(x *Exchange) { x.Header = without(x.Header, wire.TraceID) }, 0, "", "fresh-1"},
		{"empty trace id: a new one", func(x *Exchange) { x.Header = Fields{{wire.TraceID, ""}} }, 0, "", "fresh-1"},
		{"underscore spelling read", func(x *Exchange) { x.Header = Fields{{"X_Agent_Trace_ID", "t-under"}} }, 0, "", "t-under"},
		{"both spellings", func(x *Exchange) { x.Header = append(x.Header, Field{"X_Agent_Trace_ID", "trace-2"}) },
			400, "header X-Agent-Trace-ID appears 2 times (spellings with '_' for '-' count as the same header); send it once", ""},
		{"space in trace id", func(x *Exchange) { x.Header = Fields{{wire.TraceID, "a b"}} },
			400, "X-Agent-Trace-ID holds ' ' at position 1", "fresh-1"},
		{"129 characters", func(x *Exchange) { x.Header = Fields{{wire.TraceID, strings.Repeat("a", 129)}} },
			400, "X-Agent-Trace-ID is 129 characters long", "fresh-1"},
		{"card in trace id", func(x *Exchange) { x.Header = Fields{{wire.TraceID, card}} },
			400, "X-Agent-Trace-ID holds sensitive data (credit_card); use an opaque id such as a UUID", "fresh-1"},
		{"dashed card in trace id", func(x *Exchange) { x.Header = Fields{{wire.TraceID, "t-4532-0151-1283-0366"}} },
			400, "holds sensitive data (credit_card)", "fresh-1"},
		{"ssn in trace id", func(x *Exchange) { x.Header = Fields{{wire.TraceID, ssn}} },
			400, "X-Agent-Trace-ID holds sensitive data (ssn)", "fresh-1"},
		{"email in trace id", func(x *Exchange) { x.Header = Fields{{wire.TraceID, "alice@example.com"}} },
			400, "X-Agent-Trace-ID holds '@' at position 5", "fresh-1"},
		{"space in a header name", func(x *Exchange) { x.Header = append(x.Header, Field{"0 0", "x"}) },
			400, `header name "0 0" is not a valid field name`, "trace-1"},
		{"colon in a header name", func(x *Exchange) { x.Header = append(x.Header, Field{"X-A:b", "x"}) },
			400, `header name "X-A:b" is not a valid field name`, "trace-1"},
		{"empty header name", func(x *Exchange) { x.Header = append(x.Header, Field{"", "x"}) },
			400, `header name "" is not a valid field name`, "trace-1"},
		{"bad trailer name", func(x *Exchange) { x.Trailer = Fields{{"X\tb", "x"}} },
			400, "is not a valid field name", "trace-1"},
		{"card in a header name, scrubbed", func(x *Exchange) { x.Header = append(x.Header, Field{"n " + card, "x"}) },
			400, "[CREDIT_CARD_REDACTED]", "trace-1"},
		{"every token character", func(x *Exchange) { x.Header = append(x.Header, Field{"!#$%&'*+-.^_`|~aZ09", "x"}) }, 0, "", "trace-1"},
	}
	// Every owned header, repeated under one spelling or two.
	for _, name := range wire.Owned {
		for _, second := range []string{name, strings.ReplaceAll(name, "-", "_"), strings.ToLower(name)} {
			tests = append(tests, row{"repeated " + name + " as " + second, func(x *Exchange) {
				x.Header = append(x.Header, Field{name, "v1"}, Field{second, "v2"})
			}, 400, "header " + name + " appears", ""})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := baseExchange()
			tt.edit(x)
			r := Headers{NewTraceID: fixedIDs()}.Run(context.Background(), x)
			if tt.status == 0 {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
			} else if r == nil || r.Status != tt.status || r.Reason != Header || !strings.Contains(r.Msg, tt.msg) {
				t.Fatalf("refusal %+v; want %d %s with %q", r, tt.status, Header, tt.msg)
			}
			if tt.trace != "" && x.TraceID != tt.trace {
				t.Errorf("trace id %q, want %q", x.TraceID, tt.trace)
			}
		})
	}
}

// TestHeadersRefusalRecordedUnderFreshID checks a trace id that carries
// sensitive data is neither answered nor recorded: the refusal is recorded
// under a new id.
func TestHeadersRefusalRecordedUnderFreshID(t *testing.T) {
	for _, bad := range []string{card, ssn, "order-4532-0151-1283-0366"} {
		t.Run(bad, func(t *testing.T) {
			l := newLog(t)
			p := newPipe(l, Headers{NewTraceID: NewTraceID})
			x := baseExchange()
			x.Header = Fields{{wire.TraceID, bad}}
			a := p.Serve(context.Background(), x)
			fresh := a.Header.Get(wire.TraceID)
			if a.Status != 400 || fresh == "" || fresh == bad || x.TraceID != fresh {
				t.Fatalf("answer %d trace id %q (x.TraceID %q)", a.Status, fresh, x.TraceID)
			}
			if strings.Contains(string(a.Body), bad) {
				t.Errorf("the answer quotes the trace id: %s", a.Body)
			}
			if recs := records(t, l, bad); len(recs) != 0 {
				t.Errorf("recorded under the sensitive id: %+v", recs)
			}
			recs := records(t, l, fresh)
			if kinds(recs) != "error" || recs[0].Status != 400 {
				t.Fatalf("records under the fresh id: %+v", recs)
			}
			if s := leak(jsonOf(t, recs), bad); s != "" && bad != ssn {
				t.Errorf("the record holds %q: %s", s, jsonOf(t, recs))
			}
			if strings.Contains(string(jsonOf(t, recs)), bad) {
				t.Errorf("the record holds the id: %s", jsonOf(t, recs))
			}
		})
	}
}

func TestRoute(t *testing.T) {
	const agent = "http://agent.test/api?k=v"
	tests := []struct {
		name     string
		agentURL string // "" means agent
		method   string // "" means POST
		path     string
		query    string
		status   int
		reason   Reason
		msg      string
		upstream string
	}{
		{name: "/proxy is the agent URL as written", path: "/proxy", upstream: "http://agent.test/api?k=v"},
		{name: "/proxy/", path: "/proxy/", upstream: "http://agent.test/api/?k=v"},
		{name: "/proxy/a/b", path: "/proxy/a/b", upstream: "http://agent.test/api/a/b?k=v"},
		{name: "escapes passed on as sent", path: "/proxy/a%20b", upstream: "http://agent.test/api/a%20b?k=v"},
		{name: "query joins the agent's", path: "/proxy/a/b", query: "x=1&y=2", upstream: "http://agent.test/api/a/b?k=v&x=1&y=2"},
		{name: "query on /proxy joins the agent's", path: "/proxy", query: "x=1", upstream: "http://agent.test/api?k=v&x=1"},
		{name: "agent URL without a query", agentURL: "http://agent.test/api", path: "/proxy", query: "x=1", upstream: "http://agent.test/api?x=1"},
		{name: "agent URL without a query, subpath", agentURL: "http://agent.test/api", path: "/proxy/a", query: "x=1", upstream: "http://agent.test/api/a?x=1"},
		{name: "agent URL with a trailing slash", agentURL: "http://agent.test/api/", path: "/proxy/a", upstream: "http://agent.test/api/a"},
		{name: "agent URL with a trailing slash, /proxy", agentURL: "http://agent.test/api/", path: "/proxy", upstream: "http://agent.test/api/"},
		{name: "agent URL with a fragment", agentURL: "http://agent.test/api#f", path: "/proxy", query: "x=1", upstream: "http://agent.test/api?x=1"},
		{name: "agent URL with a query and a fragment", agentURL: "http://agent.test/api?k=v#f", path: "/proxy/a", query: "x=1", upstream: "http://agent.test/api/a?k=v&x=1"},
		{name: "GET", method: "GET", path: "/proxy", status: 405, reason: Method, msg: "method GET not allowed: the protected call is POST /proxy"},
		{name: "PUT", method: "PUT", path: "/proxy/a", status: 405, reason: Method, msg: "method PUT not allowed"},
		{name: "lower-case post", method: "post", path: "/proxy", status: 405, reason: Method, msg: "method post not allowed"},
		{name: "not the route", path: "/proxyx", status: 404, reason: NoRoute, msg: "no such endpoint: /proxyx"},
		{name: "encoded route", path: "/%70roxy", status: 404, reason: NoRoute, msg: "no such endpoint: /%70roxy"},
		{name: "dot dot", path: "/proxy/..", status: 400, reason: Path, msg: "must not hold '.' or '..' segments"},
		{name: "dot", path: "/proxy/.", status: 400, reason: Path, msg: "must not hold '.' or '..' segments"},
		{name: "dot dot inside", path: "/proxy/a/../b", status: 400, reason: Path, msg: "must not hold '.' or '..' segments"},
		{name: "encoded dot dot", path: "/proxy/%2e%2e/x", status: 400, reason: Path, msg: "must not hold '.' or '..' segments"},
		{name: "dot dot with a parameter", path: "/proxy/..;x/y", status: 400, reason: Path, msg: "must not hold '.' or '..' segments"},
		{name: "encoded slash", path: "/proxy/a%2Fb", status: 400, reason: Path, msg: "must not hold encoded slashes"},
		{name: "encoded backslash", path: "/proxy/a%5Cb", status: 400, reason: Path, msg: "must not hold encoded slashes"},
		{name: "raw backslash", path: `/proxy/a\b`, status: 400, reason: Path, msg: "holds a backslash"},
		{name: "double encoding", path: "/proxy/%252e%252e/x", status: 400, reason: Path, msg: "doubly encoded"},
		{name: "control character", path: "/proxy/a%0d%0aX-Injected:1", status: 400, reason: Path, msg: "control character"},
		{name: "bad escape", path: "/proxy/a%zz", status: 400, reason: Path, msg: "malformed percent-escape"},
		{name: "truncated escape", path: "/proxy/a%2", status: 400, reason: Path, msg: "malformed percent-escape"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := agent
			if tt.agentURL != "" {
				u = tt.agentURL
			}
			x := baseExchange()
			x.Path, x.RawQuery = tt.path, tt.query
			if tt.method != "" {
				x.Method = tt.method
			}
			r := NewRoute(u).Run(context.Background(), x)
			if tt.status == 0 {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
				if x.Upstream != tt.upstream {
					t.Errorf("upstream %q, want %q", x.Upstream, tt.upstream)
				}
				if sub, _ := wire.SplitProxy(tt.path); x.Sub != sub {
					t.Errorf("sub %q, want %q", x.Sub, sub)
				}
				return
			}
			if r == nil || r.Status != tt.status || r.Reason != tt.reason || !strings.Contains(r.Msg, tt.msg) {
				t.Fatalf("refusal %+v; want %d %s with %q", r, tt.status, tt.reason, tt.msg)
			}
			if x.Upstream != "" {
				t.Errorf("a refused exchange has upstream %q", x.Upstream)
			}
			if tt.status == 405 && r.Allow != "POST" {
				t.Errorf("Allow %q, want POST", r.Allow)
			}
			if a := r.Answer("t"); tt.status == 405 && a.Header.Get("Allow") != "POST" {
				t.Errorf("the 405 answer lacks Allow: %v", a.Header)
			}
		})
	}
}

func TestReadBody(t *testing.T) {
	broken := errors.New("connection reset")
	tests := []struct {
		name   string
		err    error
		status int
		reason Reason
		msg    string
	}{
		{"read whole", nil, 0, "", ""},
		{"too large", ErrBodyTooLarge, 413, TooLarge, "request body larger than 1024 bytes (max_body_bytes)"},
		{"too large, wrapped", fmt.Errorf("front: %w", ErrBodyTooLarge), 413, TooLarge, "request body larger than 1024 bytes"},
		{"broken", broken, 400, BadBody, "cannot read the request body"},
		{"unexpected end", io.ErrUnexpectedEOF, 400, BadBody, "cannot read the request body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := baseExchange()
			x.BodyErr = tt.err
			r := ReadBody{MaxBytes: 1024}.Run(context.Background(), x)
			if tt.status == 0 {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
				return
			}
			if r == nil || r.Status != tt.status || r.Reason != tt.reason || r.Msg != tt.msg && !strings.HasPrefix(r.Msg, tt.msg) {
				t.Fatalf("refusal %+v; want %d %s %q", r, tt.status, tt.reason, tt.msg)
			}
			if tt.status == 400 && !errors.Is(r, tt.err) {
				t.Errorf("the cause %v is not kept", tt.err)
			}
			if strings.Contains(string(r.Body("t")), "reset") {
				t.Errorf("the cause reached the answer: %s", r.Body("t"))
			}
		})
	}
}

// signer signs exchanges as caller-a.
type signer struct {
	key  identity.PrivateKey
	sign *identity.RequestSigner
}

func newSigner(t *testing.T, agentID string) *signer {
	t.Helper()
	k, err := identity.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &signer{key: k, sign: &identity.RequestSigner{AgentID: agentID, Key: k}}
}

// signed returns the base exchange signed by s (trace id, digest and
// signature headers added).
func (s *signer) signed(t *testing.T) *Exchange {
	t.Helper()
	x := baseExchange()
	sh, err := s.sign.Sign(identity.Message{Method: x.Method, TargetURI: x.TargetURI, Header: x.Header.exact, Body: x.Body})
	if err != nil {
		t.Fatal(err)
	}
	sh.Set(func(name, value string) { x.Header = append(x.Header, Field{name, value}) })
	return x
}

func TestIdentify(t *testing.T) {
	a := newSigner(t, "caller-a")
	stranger := newSigner(t, "stranger")
	verifier := func(t *testing.T) *identity.CallerVerifier {
		v, err := identity.NewCallerVerifier(identity.CallerVerifierConfig{
			TrustedAgents: map[string]ed25519.PublicKey{"caller-a": a.key.PublicKey()}})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	pinned := func(id string) bool { return id == "caller-a" }
	rep := func(id string) policy.Reputation { return policy.Reputation{Known: true, Hundredths: 420} }
	tests := []struct {
		name    string
		x       func(t *testing.T) *Exchange
		edit    func(c *Identify)
		status  int
		msg     string
		blocked bool
		caller  policy.Caller
	}{
		{name: "unsigned allowed", x: func(*testing.T) *Exchange { return baseExchange() },
			caller: policy.Caller{AgentID: "unknown", TrustLevel: manifest.Unknown}},
		{name: "unsigned refused when required", x: func(*testing.T) *Exchange { return baseExchange() }, edit: func(c *Identify) { c.Require = true },
			status: 401, msg: "this sidecar accepts signed requests only (require_authenticated_callers)"},
		{name: "signed, pinned key", x: a.signed,
			caller: policy.Caller{AgentID: "caller-a", Authenticated: true, TrustLevel: manifest.Trusted, Reputation: policy.Reputation{Known: true, Hundredths: 420}}},
		{name: "signed, pinned key, required", x: a.signed, edit: func(c *Identify) { c.Require = true },
			caller: policy.Caller{AgentID: "caller-a", Authenticated: true, TrustLevel: manifest.Trusted, Reputation: policy.Reputation{Known: true, Hundredths: 420}}},
		{name: "signed, key known but not pinned", x: a.signed, edit: func(c *Identify) { c.Pinned = nil; c.Reputation = nil },
			caller: policy.Caller{AgentID: "caller-a", Authenticated: true, TrustLevel: manifest.Standard}},
		{name: "signed, no verifier: unknown", x: a.signed, edit: func(c *Identify) { c.Verifier = nil },
			caller: policy.Caller{AgentID: "unknown", TrustLevel: manifest.Unknown}},
		{name: "signed, no verifier, signed callers required", x: a.signed, edit: func(c *Identify) { c.Verifier, c.Require = nil, true },
			status: 401, msg: "this sidecar does not know the signer's key"},
		{name: "body changed after signing", x: func(t *testing.T) *Exchange {
			x := a.signed(t)
			x.Body = []byte(`{"task":"other"}`)
			return x
		}, status: 401, msg: "digest", blocked: true},
		{name: "method changed after signing", x: func(t *testing.T) *Exchange {
			x := a.signed(t)
			x.Method = "PUT"
			return x
		}, status: 401, msg: "signature", blocked: true},
		{name: "trace id changed after signing", x: func(t *testing.T) *Exchange {
			x := a.signed(t)
			for i := range x.Header {
				if x.Header[i].Name == wire.TraceID {
					x.Header[i].Value = "trace-2"
				}
			}
			return x
		}, status: 401, msg: "signature", blocked: true},
		{name: "unknown signer: unknown", x: stranger.signed, caller: policy.Caller{AgentID: "unknown", TrustLevel: manifest.Unknown}},
		{name: "unknown signer, signed callers required", x: stranger.signed, edit: func(c *Identify) { c.Require = true },
			status: 401, msg: "does not know the signer's key"},
		{name: "too old", x: a.signed, edit: func(c *Identify) { c.Clock = func() time.Time { return time.Now().Add(time.Hour) } },
			status: 401, msg: "", blocked: true},
		{name: "Signature-Input alone", x: func(*testing.T) *Exchange {
			x := baseExchange()
			x.Header = append(x.Header, Field{wire.SignatureInput, `iatp=("@method");keyid="caller-a"`})
			return x
		}, status: 401, blocked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Identify{Verifier: verifier(t), Pinned: pinned, Reputation: rep, Clock: time.Now}
			if tt.edit != nil {
				tt.edit(&c)
			}
			x := tt.x(t)
			r := c.Run(context.Background(), x)
			if tt.status == 0 {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
				if x.Caller != tt.caller {
					t.Errorf("caller %+v, want %+v", x.Caller, tt.caller)
				}
				return
			}
			if r == nil || r.Status != tt.status || r.Reason != Unauthenticated || !strings.Contains(r.Msg, tt.msg) {
				t.Fatalf("refusal %+v; want %d with %q", r, tt.status, tt.msg)
			}
			if blocked := r.Kind == recorder.KindBlocked && r.Decision == "block"; blocked != tt.blocked {
				t.Errorf("kind %q decision %q; want recorded as blocked: %v", r.Kind, r.Decision, tt.blocked)
			}
			if x.Caller.Authenticated {
				t.Errorf("a refused caller is authenticated: %+v", x.Caller)
			}
		})
	}
}

// TestIdentifyBadSignatureRecordedAsBlocked runs Identify in a pipeline: a
// bad signature is recorded once, as blocked, with its 401.
func TestIdentifyBadSignatureRecordedAsBlocked(t *testing.T) {
	a := newSigner(t, "caller-a")
	v, err := identity.NewCallerVerifier(identity.CallerVerifierConfig{TrustedAgents: map[string]ed25519.PublicKey{"caller-a": a.key.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	l := newLog(t)
	p := newPipe(l, Headers{NewTraceID: NewTraceID}, Identify{Verifier: v, Clock: time.Now})
	x := a.signed(t)
	x.Body = []byte(`{"task":"tampered"}`)
	if a := p.Serve(context.Background(), x); a.Status != 401 {
		t.Fatalf("status %d %s", a.Status, a.Body)
	}
	recs := records(t, l, "trace-1")
	if kinds(recs) != "blocked" || recs[0].Status != 401 || recs[0].Decision != "block" || recs[0].CallerID != "unknown" || recs[0].Authenticated {
		t.Errorf("records %+v", recs)
	}
}

// countingLimiter lets limit calls through per key, then refuses.
type countingLimiter struct {
	limit int
	keys  map[string]int
}

func (c *countingLimiter) Allow(key string, _ time.Time) (bool, int) {
	c.keys[key]++
	if c.keys[key] > c.limit {
		return false, 30
	}
	return true, 0
}

func TestRateLimit(t *testing.T) {
	t.Run("off", func(t *testing.T) {
		x := baseExchange()
		for range 100 {
			if r := (RateLimit{}).Run(context.Background(), x); r != nil {
				t.Fatalf("a nil limiter refused: %v", r)
			}
		}
	})
	tests := []struct {
		name   string
		caller policy.Caller
		peer   string
		key    string
	}{
		{"unknown caller by address", policy.Caller{AgentID: "unknown"}, "10.0.0.7", "ip:10.0.0.7"},
		{"authenticated caller by id", policy.Caller{AgentID: "caller-a", Authenticated: true}, "10.0.0.7", "agent:caller-a"},
		{"claimed but unauthenticated id by address", policy.Caller{AgentID: "caller-a"}, "10.0.0.8", "ip:10.0.0.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := &countingLimiter{limit: 2, keys: map[string]int{}}
			rl := RateLimit{Limiter: lim, PerMinute: 2, Clock: time.Now}
			for i := range 3 {
				x := baseExchange()
				x.Caller, x.Peer = tt.caller, tt.peer
				r := rl.Run(context.Background(), x)
				if i < 2 {
					if r != nil {
						t.Fatalf("call %d refused: %v", i, r)
					}
					continue
				}
				if r == nil || r.Status != 429 || r.Reason != RateLimited || r.RetryAfter != 30 ||
					r.Msg != "rate limit exceeded: at most 2 requests per minute; retry after 30s" ||
					r.Kind != recorder.KindBlocked || r.Decision != "block" {
					t.Fatalf("refusal %+v", r)
				}
				if a := r.Answer("t"); a.Header.Get("Retry-After") != "30" {
					t.Errorf("Retry-After %q", a.Header.Get("Retry-After"))
				}
			}
			if lim.keys[tt.key] != 3 || len(lim.keys) != 1 {
				t.Errorf("keys %v, want 3 calls on %s", lim.keys, tt.key)
			}
		})
	}
}

// TestRefusalAnswer checks the JSON answer of a refusal: error, trace_id
// and the fields, with Content-Type and the trace id header.
func TestRefusalAnswer(t *testing.T) {
	r := &Refusal{Status: 403, Reason: Blocked, Msg: "no <script> & co", Fields: map[string]any{"blocked": true, "error": "shadowed"}}
	a := r.Answer("t-9")
	if a.Status != 403 || a.Header.Get("Content-Type") != "application/json" || a.Header.Get(wire.TraceID) != "t-9" {
		t.Errorf("answer %+v", a)
	}
	if got := string(a.Body); got != `{"blocked":true,"error":"no <script> & co","trace_id":"t-9"}` {
		t.Errorf("body %s", got)
	}
	if r := AsRefusal(errors.New("boom")); r.Status != http.StatusInternalServerError || r.Reason != Internal || r.Msg != "internal error" {
		t.Errorf("AsRefusal: %+v", r)
	}
	wrapped := fmt.Errorf("x: %w", r)
	if AsRefusal(wrapped) != r {
		t.Errorf("AsRefusal does not unwrap")
	}
}
