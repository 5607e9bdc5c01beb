package sidecar

import (
	"bufio"
	"encoding/json"
	"github.com/iatp/iatp/internal/wire"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/manifest"
)

const card = "4532015112830366"

func TestProxyAllowed(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		body := `{"task":"transfer","amount":100,"card":"` + card + `","note":"ok"}`
		r := h.do("POST", "/proxy", body, wire.TraceID, "trace-bank-1")
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if got := r.header.Get(wire.TrustScore); got != "10" {
			t.Errorf("%s = %q, want 10", wire.TrustScore, got)
		}
		if _, err := strconv.Atoi(r.header.Get(wire.Latency)); err != nil {
			t.Errorf("%s = %q, want a number of milliseconds", wire.Latency, r.header.Get(wire.Latency))
		}
		if got := r.header.Get(wire.TraceID); got != "trace-bank-1" {
			t.Errorf("trace id %q, want trace-bank-1", got)
		}
		if r.header.Get(wire.Quarantined) != "" {
			t.Errorf("bank answer is quarantined")
		}
		if r.json["ok"] != true {
			t.Errorf("agent answer not relayed: %s", r.body)
		}
		calls := h.agent.received()
		if len(calls) != 1 {
			t.Fatalf("agent received %d calls, want 1", len(calls))
		}
		c := calls[0]
		if string(c.Body) != body {
			t.Errorf("forwarded body altered:\n got %s\nwant %s", c.Body, body)
		}
		if got := c.Header.Get(wire.TraceID); got != "trace-bank-1" {
			t.Errorf("agent got trace id %q", got)
		}
		if c.Path != "/" {
			t.Errorf("POST /proxy reached agent path %q, want the agent URL exactly (/)", c.Path)
		}
	})
}

func TestProxyTraceIDs(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		// Absent or empty: a new UUID, passed to the agent.
		r := h.do("POST", "/proxy", `{}`)
		id := r.header.Get(wire.TraceID)
		if r.status != 200 || len(id) != 36 {
			t.Fatalf("status %d, trace id %q", r.status, id)
		}
		if got := h.agent.received()[0].Header.Get(wire.TraceID); got != id {
			t.Errorf("agent got %q, caller got %q", got, id)
		}
		for _, bad := range []string{"has space", "semi;colon", strings.Repeat("a", 129), "ünïcode", "../../etc/passwd"} {
			r := h.do("POST", "/proxy", `{}`, wire.TraceID, bad)
			if r.status != 400 || !strings.Contains(r.str("error"), "X-Agent-Trace-ID") || r.str("trace_id") == bad {
				t.Errorf("trace id %q: status %d %s", bad, r.status, r.body)
			}
		}
		if n := len(h.agent.received()); n != 1 {
			t.Errorf("agent received %d calls, want 1", n)
		}
	})
}

func TestProxyInvalidInput(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) { c.MaxBodyBytes = 1 << 10 })
		deep := strings.Repeat("[", 257) + strings.Repeat("]", 257)
		tests := []struct {
			name   string
			body   string
			status int
			want   string
		}{
			{"not json", `{"task": `, 400, "Invalid JSON payload"},
			{"trailing garbage", `{} x`, 400, "Invalid JSON payload"},
			{"empty", ``, 400, "Invalid JSON payload"},
			{"too deep", deep, 400, "exceeded max nesting depth of 256"},
			{"invalid utf-8", "{\"a\":\"\xff\xfe\"}", 400, "invalid UTF-8"},
			{"too large", `{"a":"` + strings.Repeat("x", 2<<10) + `"}`, 413, "request body larger than 1024 bytes"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := h.do("POST", "/proxy", tt.body)
				if r.status != tt.status || !strings.Contains(r.str("error"), tt.want) || r.str("trace_id") == "" {
					t.Errorf("status %d body %s; want %d with %q", r.status, r.body, tt.status, tt.want)
				}
			})
		}
		// Any JSON value is a valid payload.
		for _, ok := range []string{`[1,2]`, `"text"`, `42`, `null`, `true`, strings.Repeat("[", 256) + strings.Repeat("]", 256)} {
			if r := h.do("POST", "/proxy", ok); r.status != 200 {
				t.Errorf("payload %.20s: status %d %s", ok, r.status, r.body)
			}
		}
		if got := len(h.agent.received()); got != 6 {
			t.Errorf("agent received %d calls, want only the 6 valid ones", got)
		}
		if r := h.do("GET", "/proxy", ""); r.status != 405 || r.str("trace_id") == "" {
			t.Errorf("GET /proxy: %d %s", r.status, r.body)
		}
	})
}

// TestProxyTooLargeNotRead checks a body over the limit is refused from its
// Content-Length, before it is sent.
func TestProxyTooLargeNotRead(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) { c.MaxBodyBytes = 1 << 10 })
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Declare 10 MiB and send none of it: the answer must come anyway.
		_, _ = conn.Write([]byte("POST /proxy HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"))
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != 413 || body["trace_id"] == nil || !strings.Contains(body["error"].(string), "larger than") {
			t.Errorf("status %d body %v, want a JSON 413", resp.StatusCode, body)
		}
	})
}

func TestHoneypot(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "untrusted_honeypot.json", nil)
		t.Run("card is blocked and never reaches the agent", func(t *testing.T) {
			for _, body := range []string{
				`{"payment":"` + card + `"}`,
				`{"payment":"4532-0151-1283-0366"}`,
				`{"payment":4532015112830366}`,
				`{"\u0034532015112830366":"key"}`,
				`{"amex":"3782 822463 10005"}`,
			} {
				r := h.do("POST", "/proxy", body)
				if r.status != 403 || r.json["blocked"] != true || r.str("blocked_by") != "credit_card_permanent" {
					t.Errorf("%s: status %d %s", body, r.status, r.body)
				}
				want := "Privacy Violation: Agent 'honeypot-agent' stores data permanently and request contains credit card information. Request blocked for security."
				if r.str("error") != want {
					t.Errorf("error %q", r.str("error"))
				}
			}
		})
		t.Run("ssn is blocked", func(t *testing.T) {
			r := h.do("POST", "/proxy", `{"ssn":"123-45-6789"}`)
			if r.status != 403 || r.str("blocked_by") != "ssn_non_ephemeral" ||
				r.str("error") != "Privacy Violation: Agent 'honeypot-agent' retains data beyond session lifetime and request contains SSN. Request blocked for security." {
				t.Errorf("status %d %s", r.status, r.body)
			}
		})
		if n := len(h.agent.received()); n != 0 {
			t.Fatalf("blocked requests reached the agent %d times", n)
		}
		t.Run("plain call warns", func(t *testing.T) {
			r := h.do("POST", "/proxy", `{"task":"hello"}`)
			if r.status != 449 || r.json["requires_override"] != true || r.json["trust_score"] != float64(0) || r.str("trace_id") == "" {
				t.Fatalf("status %d %s", r.status, r.body)
			}
			want := "⚠️  WARNING:\n  • Low trust score (0/10) for agent 'honeypot-agent'\n  • Agent 'honeypot-agent' does not support transaction reversal\n  • Agent 'honeypot-agent' may not handle duplicate requests safely\n  • Agent 'honeypot-agent' stores data indefinitely\n  • Agent 'honeypot-agent' may have humans review your data"
			if r.str("warning") != want {
				t.Errorf("warning:\n%s\nwant\n%s", r.str("warning"), want)
			}
			if !strings.Contains(r.str("message"), "X-User-Override") {
				t.Errorf("message does not say how to proceed: %q", r.str("message"))
			}
		})
		t.Run("weak overrides never pass", func(t *testing.T) {
			for _, v := range []string{"true", "yes", "1", "TRUE", testOverride + "x", " "} {
				if r := h.do("POST", "/proxy", `{"task":"hello"}`, wire.Override, v); r.status != 449 {
					t.Errorf("X-User-Override %q: status %d", v, r.status)
				}
			}
		})
		if n := len(h.agent.received()); n != 0 {
			t.Fatalf("warned requests reached the agent %d times", n)
		}
		t.Run("override passes, quarantined", func(t *testing.T) {
			r := h.do("POST", "/proxy", `{"task":"hello"}`, wire.Override, "  "+testOverride+" ", wire.TraceID, "q-1")
			if r.status != 200 || r.header.Get(wire.Quarantined) != "true" || r.header.Get(wire.TrustScore) != "0" {
				t.Fatalf("status %d quarantined %q: %s", r.status, r.header.Get(wire.Quarantined), r.body)
			}
			if got := h.agent.received(); len(got) != 1 || got[0].Header.Get(wire.Override) != "" {
				t.Errorf("agent calls %d; the override token must never reach the agent", len(got))
			}
			q := h.do("GET", "/quarantine/q-1", "", "Authorization", "Bearer "+testAdmin)
			if q.status != 200 || q.str("trace_id") != "q-1" || q.json["user_override"] != true || !strings.Contains(q.str("warning_message"), "Low trust score") {
				t.Errorf("quarantine session: %d %s", q.status, q.body)
			}
			var sess QuarantineSession
			if err := json.Unmarshal(q.body, &sess); err != nil {
				t.Fatal(err)
			}
			m, err := manifest.Parse(sess.Manifest)
			if err != nil || m.AgentID() != "honeypot-agent" {
				t.Errorf("session manifest: %v %v", m, err)
			}
		})
		t.Run("override never lifts a block", func(t *testing.T) {
			if r := h.do("POST", "/proxy", `{"c":"`+card+`"}`, wire.Override, testOverride); r.status != 403 {
				t.Errorf("status %d", r.status)
			}
		})
		if r := h.do("GET", "/quarantine/nope", "", "Authorization", "Bearer "+testAdmin); r.status != 404 {
			t.Errorf("unknown quarantine: %d", r.status)
		}
	})
}

func TestReviewerWarns(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "reviewer_agent.json", nil)
		r := h.do("POST", "/proxy", `{"diff":"+1 -1"}`)
		if r.status != 449 || r.json["trust_score"] != float64(7) ||
			r.str("warning") != "⚠️  WARNING:\n  • Agent 'reviewer-agent' does not support transaction reversal" {
			t.Errorf("status %d %s", r.status, r.body)
		}
	})
}

func TestOverrideDisabledWithoutStrongToken(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "untrusted_honeypot.json", func(c *Config) { c.OverrideToken = "changeme" })
		r := h.do("POST", "/proxy", `{}`, wire.Override, "changeme")
		if r.status != 449 || !strings.Contains(r.str("message"), "overrides are disabled") {
			t.Errorf("status %d %s", r.status, r.body)
		}
		if !strings.Contains(h.logs.String(), "user override disabled") {
			t.Errorf("start-up log does not say override is disabled:\n%s", h.logs)
		}
		if strings.Contains(h.logs.String(), "changeme") {
			t.Errorf("the log holds the token's value")
		}
	})
}

func TestAgentAnswerPassesThrough(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		r := h.do("POST", "/proxy/teapot", `{}`)
		if r.status != 418 || string(r.body) != "short and stout" || r.header.Get("Content-Type") != "text/plain" {
			t.Errorf("status %d %q %q", r.status, r.body, r.header.Get("Content-Type"))
		}
		if r.header.Get(wire.TrustScore) != "10" || len(r.header.Values(wire.TrustScore)) != 1 {
			t.Errorf("the agent's own %s must be replaced: %v", wire.TrustScore, r.header.Values(wire.TrustScore))
		}
		big := h.do("POST", "/proxy/big", `{}`)
		if big.status != 200 || len(big.body) != 200<<10+len(`{"data":""}`) {
			t.Errorf("large answer: status %d, %d bytes", big.status, len(big.body))
		}
	})
}

func TestSubPaths(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) {})
		if r := h.do("POST", "/proxy/tasks/run?x=1", `{}`); r.status != 200 {
			t.Fatalf("status %d %s", r.status, r.body)
		}
		c := h.agent.received()[0]
		if c.Path != "/tasks/run" || c.Query != "x=1" {
			t.Errorf("agent got %s?%s, want /tasks/run?x=1", c.Path, c.Query)
		}
		for _, p := range []string{"/proxy/a/%2e%2e/admin", "/proxy/%2E", "/proxy/a%2Fb"} {
			if r := h.do("POST", p, `{}`); r.status != 400 {
				t.Errorf("%s: status %d", p, r.status)
			}
		}
	})
}

func TestAgentFailures(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		t.Run("agent down", func(t *testing.T) {
			h := start(t, "secure_bank.json", nil)
			h.agent.srv.Close()
			r := h.do("POST", "/proxy", `{}`)
			rec, _ := r.json["recovery"].(map[string]any)
			if r.status != 502 || !strings.HasPrefix(r.str("error"), "Backend agent error") || rec["strategy"] != "retry" {
				t.Errorf("status %d %s", r.status, r.body)
			}
		})
		t.Run("agent slower than its SLA", func(t *testing.T) {
			h := start(t, "secure_bank.json", func(c *Config) {
				m := *c.Manifest
				m.Capabilities.SLALatencyMs = 300
				c.Manifest = &m
			})
			r := h.do("POST", "/proxy/slow", `{}`)
			rec, _ := r.json["recovery"].(map[string]any)
			if r.status != 504 || !strings.Contains(r.str("error"), "300ms") || rec["strategy"] != "retry" {
				t.Errorf("status %d %s", r.status, r.body)
			}
		})
		t.Run("give up on an agent that cannot repeat or undo", func(t *testing.T) {
			h := start(t, "untrusted_honeypot.json", func(c *Config) { c.AgentTimeout = 200 * time.Millisecond })
			r := h.do("POST", "/proxy/slow", `{}`, wire.Override, testOverride)
			rec, _ := r.json["recovery"].(map[string]any)
			if r.status != 504 || rec["strategy"] != "give_up" || !strings.Contains(rec["message"].(string), "neither idempotent nor reversible") {
				t.Errorf("status %d %s", r.status, r.body)
			}
		})
	})
}

func TestRateLimit(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) { c.RateLimitPerMinute = 2 })
		for i := range 2 {
			if r := h.do("POST", "/proxy", `{}`); r.status != 200 {
				t.Fatalf("request %d: %d", i, r.status)
			}
		}
		r := h.do("POST", "/proxy", `{}`)
		if r.status != 429 || r.header.Get("Retry-After") == "" || !strings.Contains(r.str("error"), "rate limit") {
			t.Errorf("status %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
		}
		if n, _ := strconv.Atoi(r.header.Get("Retry-After")); n < 1 || n > 30 {
			t.Errorf("Retry-After %d, want the seconds until a token is back (about 30)", n)
		}
	})
}

func TestStreamedAnswer(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		req, _ := http.NewRequest("POST", h.url+"/proxy/sse", strings.NewReader(`{}`))
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set(wire.TraceID, "sse-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		first, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		firstAt := time.Now()
		rest := 0
		var lastAt time.Time
		for {
			line, err := br.ReadString('\n')
			if strings.HasPrefix(line, "data:") {
				rest++
				lastAt = time.Now()
			}
			if err != nil {
				break
			}
		}
		if !strings.HasPrefix(first, "data:") || rest != 2 {
			t.Fatalf("first line %q, then %d events", first, rest)
		}
		// The agent sleeps 150 ms between events: the first must arrive before
		// the last was even sent.
		if gap := lastAt.Sub(firstAt); gap < 200*time.Millisecond {
			t.Errorf("events arrived within %s of each other: the answer was buffered, not streamed", gap)
		}
		// The record of the streamed answer is written when it ends, scrubbed.
		var tr *response
		for range 50 {
			if tr = h.trace("sse-1"); tr.status == 200 && strings.Contains(string(tr.body), `"kind":"response"`) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(string(tr.body), `"streamed":true`) || strings.Contains(string(tr.body), card) {
			t.Errorf("trace of the stream: %s", tr.body)
		}
	})
}
