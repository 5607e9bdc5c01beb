package sidecar

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/policy"
)

// cardRun returns the first run of 6 consecutive digits of card found in
// s, or "".
func cardRun(s, card string) string {
	for i := 0; i+6 <= len(card); i++ {
		if strings.Contains(s, card[i:i+6]) {
			return card[i : i+6]
		}
	}
	return ""
}

// recorded fetches a trace with the admin token and returns its records as
// JSON, without the members that hold digits whatever was recorded
// (hashes, times, sequence numbers), so that any card digit in it came
// from a request or an answer.
func (h *harness) recorded(id string) (string, int) {
	h.t.Helper()
	tr := h.trace(id)
	if tr.status != 200 {
		return "", tr.status
	}
	var doc struct {
		Logs []map[string]json.RawMessage `json:"logs"`
	}
	if err := json.Unmarshal(tr.body, &doc); err != nil {
		h.t.Fatalf("trace %s: %v", id, err)
	}
	for _, l := range doc.Logs {
		for _, k := range []string{"hash", "prev_hash", "time", "seq", "latency_ms", "trace_id"} {
			delete(l, k)
		}
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(doc.Logs)
	return b.String(), tr.status
}

// waitRecorded polls a trace until ok holds of its records: a streamed
// answer is recorded when it ends, after the caller has its last byte.
func (h *harness) waitRecorded(id string, ok func(string) bool) string {
	h.t.Helper()
	var recs string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if recs, _ = h.recorded(id); ok(recs) {
			return recs
		}
	}
	h.t.Fatalf("trace %s never held the record: %.2000s", id, recs)
	return ""
}

// cardPlaces are the places a request can carry a card number, each with
// how the agent must receive it and what is recorded of the path and query.
var cardPlaces = []struct {
	name    string
	target  string // path and query
	headers []string
	body    string
	uri     string // the request target the agent receives
	details string // the recorded path and query
}{
	{"path", "/proxy/cards/" + card, nil, `{}`, "/cards/" + card,
		`"path":"/proxy/cards/[CREDIT_CARD_REDACTED]"`},
	{"percent-encoded path", "/proxy/cards/%34%35%33%32015112830366", nil, `{}`, "/cards/%34%35%33%32015112830366",
		`"path":"/proxy/cards/[CREDIT_CARD_REDACTED]"`},
	{"query", "/proxy?card=" + card, nil, `{}`, "/?card=" + card,
		`"path":"/proxy","query":"card=[CREDIT_CARD_REDACTED]"`},
	{"percent-encoded query", "/proxy?card=%34%35%33%32%30%31%35%31%31%32%38%33%30%33%36%36", nil, `{}`,
		"/?card=%34%35%33%32%30%31%35%31%31%32%38%33%30%33%36%36", `"path":"/proxy","query":"card=[CREDIT_CARD_REDACTED]"`},
	{"form-encoded query", "/proxy?card=4532+0151+1283+0366", nil, `{}`, "/?card=4532+0151+1283+0366",
		`"path":"/proxy","query":"card=[CREDIT_CARD_REDACTED]"`},
	{"query with a malformed escape", "/proxy?card=" + card + "&x=%zz", nil, `{}`, "/?card=" + card + "&x=%zz",
		`"path":"/proxy","query":"card=[CREDIT_CARD_REDACTED]&x=%zz"`},
	{"header", "/proxy", []string{"X-Note", "card " + card}, `{}`, "/", `"path":"/proxy"`},
	{"body", "/proxy", nil, `{"card":"` + card + `"}`, "/", `"path":"/proxy"`},
}

// TestCardAnywhereIsBlocked sends a card number in each place a request can
// carry one to an agent that stores data permanently: each is refused with
// 403 credit_card_permanent, even with the override token, nothing reaches
// the agent, and the record holds no card digits.
func TestCardAnywhereIsBlocked(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "untrusted_honeypot.json", nil)
		want := "Privacy Violation: Agent 'honeypot-agent' stores data permanently and request contains credit card information. Request blocked for security."
		for i, tt := range cardPlaces {
			t.Run(tt.name, func(t *testing.T) {
				id := "hp-" + string(rune('a'+i))
				r := h.do("POST", tt.target, tt.body, append([]string{wire.TraceID, id, wire.Override, testOverride}, tt.headers...)...)
				if r.status != 403 || r.json["blocked"] != true || r.str("blocked_by") != "credit_card_permanent" || r.str("error") != want || r.str("trace_id") != id {
					t.Fatalf("%d %s", r.status, r.body)
				}
				recs, status := h.recorded(id)
				if status != 200 || !strings.Contains(recs, `"kind":"blocked"`) || !strings.Contains(recs, `"status":403`) {
					t.Errorf("trace: %d %s", status, recs)
				}
				if s := cardRun(recs, card); s != "" {
					t.Errorf("the record holds %q: %s", s, recs)
				}
			})
		}
		if n := len(h.agent.received()); n != 0 {
			t.Errorf("blocked requests reached the agent %d times", n)
		}
	})
}

// TestCardAnywhereIsForwardedUnchanged sends the same requests to an agent
// that keeps nothing (ephemeral): each is forwarded exactly as sent, and
// the records hold the path and query scrubbed and no card digits.
func TestCardAnywhereIsForwardedUnchanged(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		p := newProbe(t, nil)
		h := start(t, "secure_bank.json", withAgent(p.srv.URL, nil))
		for i, tt := range cardPlaces {
			t.Run(tt.name, func(t *testing.T) {
				id := "bank-" + string(rune('a'+i))
				n := len(p.received())
				r := h.do("POST", tt.target, tt.body, append([]string{wire.TraceID, id, wire.Override, testOverride}, tt.headers...)...)
				if r.status != 200 {
					t.Fatalf("%d %s", r.status, r.body)
				}
				calls := p.received()[n:]
				if len(calls) != 1 {
					t.Fatalf("the agent got %d calls", len(calls))
				}
				c := calls[0]
				if c.URI != tt.uri || string(c.Body) != tt.body {
					t.Errorf("the agent got %s %s; want %s %s", c.URI, c.Body, tt.uri, tt.body)
				}
				for j := 0; j+1 < len(tt.headers); j += 2 {
					if got := c.Header.Values(tt.headers[j]); len(got) != 1 || got[0] != tt.headers[j+1] {
						t.Errorf("the agent got %s: %q", tt.headers[j], got)
					}
				}
				if got := c.Header.Get(wire.Override); got != "" {
					t.Errorf("the override token reached the agent")
				}
				recs, _ := h.recorded(id)
				if !strings.Contains(recs, `"kind":"request"`) || !strings.Contains(recs, `"kind":"response"`) ||
					!strings.Contains(recs, tt.details) || !strings.Contains(recs, `"sensitive":["credit_card"]`) {
					t.Errorf("records lack %s: %s", tt.details, recs)
				}
				if s := cardRun(recs, card); s != "" {
					t.Errorf("the record holds %q: %s", s, recs)
				}
			})
		}
	})
}

// filler is text of n bytes with the bytes a record may be cut before.
func filler(n int) string { return strings.Repeat("word, ", n/6+1)[:n] }

// mark is a piece of text placed at an offset.
type mark struct {
	at   int
	text string
}

// textWith returns start, then filler text with each mark (in order of
// offset) starting at its offset in the whole, then filler up to n bytes.
func textWith(start string, n int, marks ...mark) string {
	var b strings.Builder
	b.WriteString(start)
	for _, m := range marks {
		b.WriteString(filler(m.at - b.Len()))
		b.WriteString(m.text)
	}
	b.WriteString(filler(max(0, n-b.Len())))
	return b.String()
}

// pemBlock returns a private key block of about n bytes, without digits.
func pemBlock(n int) string {
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo", 2)[:64] + "\n"
	return "\n-----BEGIN RSA PRIVATE KEY-----\n" + strings.Repeat(line, n/len(line)) + "-----END RSA PRIVATE KEY-----\n"
}

// TestInvalidJSONRecordedWithoutCard sends bodies over the record limit
// that are not JSON, with card numbers straddling the limit and the point
// the recorded prefix is cut at, and one that a JSON escape glues to a
// letter: 400, and the record holds none of their digits.
func TestInvalidJSONRecordedWithoutCard(t *testing.T) {
	const limit = DefaultMaxRecordPayload
	tests := []struct {
		name string
		body string
	}{
		{"cards at the limits", textWith(`{"blob":"`, limit+8<<10,
			mark{1000, `\n` + card + `\n`},             // found only with the escape read as JSON
			mark{limit - 256 - 8, " " + card + " "},    // across the prefix's cut
			mark{limit - 10, " 4532-0151-1283-0366 "}), // across 64 KiB
		},
		{"a private key before them", textWith(`{"blob":"`, limit+8<<10,
			mark{100, pemBlock(8 << 10)}, // recorded 8 KiB shorter: what follows moves into the prefix
			mark{limit - 10, " 4532-0151-1283-0366 "}),
		},
	}
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				id := "big-" + string(rune('a'+i))
				r := h.do("POST", "/proxy", tt.body, wire.TraceID, id)
				if r.status != 400 || !strings.HasPrefix(r.str("error"), "Invalid JSON payload") {
					t.Fatalf("%d %s", r.status, r.body)
				}
				recs, _ := h.recorded(id)
				if !strings.Contains(recs, `"kind":"error"`) || !strings.Contains(recs, `[CREDIT_CARD_REDACTED]`) {
					t.Errorf("records: %.300s", recs)
				}
				if s := cardRun(strings.ReplaceAll(recs, "-", ""), card); s != "" {
					t.Errorf("the record holds %q", s)
				}
			})
		}
		if n := len(h.agent.received()); n != 0 {
			t.Errorf("the agent was called %d times", n)
		}
	})
}

// TestStreamedAnswerRecordedWithoutCard streams answers from the agent
// with cards across the record limit and across the end of the raw copy
// kept to scrub it: the caller gets every byte, the record none of the
// cards' digits.
func TestStreamedAnswerRecordedWithoutCard(t *testing.T) {
	const limit = DefaultMaxResponseRecord
	answers := map[string]struct{ ctype, body string }{
		// A private key early on shrinks what is recorded by 8 KiB, so the
		// end of the raw copy falls within the recorded prefix.
		"/text": {"text/event-stream", textWith("data: ", limit+6<<10,
			mark{100, pemBlock(8 << 10)},
			mark{limit - 8, " " + card + " "},
			mark{limit + 4<<10 - 8, " " + card + " "})},
		"/json": {"application/json", textWith(`{"log":"`, limit+8<<10,
			mark{1000, `\n` + card + `\n`},
			mark{limit - 9, `\n` + card + `\n`}) + `"}`},
	}
	eachFront(t, func(t *testing.T) {
		p := newProbe(t, func(w http.ResponseWriter, r *http.Request) {
			a := answers[r.URL.Path]
			w.Header().Set("Content-Type", a.ctype)
			w.WriteHeader(200)
			for b := []byte(a.body); len(b) > 0; {
				n := min(len(b), 16<<10)
				_, _ = w.Write(b[:n])
				w.(http.Flusher).Flush()
				b = b[n:]
			}
		})
		h := start(t, "secure_bank.json", withAgent(p.srv.URL, nil))
		for path, a := range answers {
			t.Run(path, func(t *testing.T) {
				id := "stream" + strings.ReplaceAll(path, "/", "-")
				r := h.do("POST", "/proxy"+path, `{}`, wire.TraceID, id)
				if r.status != 200 || string(r.body) != a.body {
					t.Fatalf("status %d, %d bytes relayed of %d", r.status, len(r.body), len(a.body))
				}
				recs := h.waitRecorded(id, func(s string) bool { return strings.Contains(s, `"kind":"response"`) })
				if !strings.Contains(recs, `"streamed":true`) || !strings.Contains(recs, `"truncated":true`) {
					t.Errorf("response record: %.300s", recs)
				}
				if s := cardRun(recs, card); s != "" {
					t.Errorf("the record holds %q", s)
				}
			})
		}
	})
}

// TestCallerGoesAway closes the caller's connection while the agent works
// on a slow call: the agent's request is cancelled, and the flight
// recorder says the caller went away (499, canceled).
func TestCallerGoesAway(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		arrived, cancelled := make(chan struct{}, 1), make(chan time.Time, 1)
		p := newProbe(t, func(w http.ResponseWriter, r *http.Request) {
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
				cancelled <- time.Now()
			case <-time.After(20 * time.Second):
			}
		})
		h := start(t, "secure_bank.json", withAgent(p.srv.URL+"/slow", func(c *Config) {
			m := *c.Manifest
			m.Capabilities.SLALatencyMs = 0 // the agent timeout (30 s) bounds the call, not the bank's 2 s SLA
			c.Manifest = &m
		}))
		conn, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(conn, "POST /proxy HTTP/1.1\r\nHost: sidecar.test\r\nContent-Type: application/json\r\n"+
			"X-Agent-Trace-ID: gone-1\r\nContent-Length: 2\r\n\r\n{}")
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the call never reached the agent")
		}
		closed := time.Now()
		conn.Close()
		select {
		case at := <-cancelled:
			t.Logf("the agent's call was cancelled %s after the caller left", at.Sub(closed))
		case <-time.After(10 * time.Second):
			t.Fatal("the agent's call was not cancelled when its caller went away")
		}
		recs := h.waitRecorded("gone-1", func(s string) bool { return strings.Contains(s, `"status":499`) })
		if !strings.Contains(recs, `"outcome":"canceled"`) || !strings.Contains(recs, `"kind":"request"`) {
			t.Errorf("records: %s", recs)
		}
		if strings.Contains(recs, `"kind":"response"`) {
			t.Errorf("an answer was recorded for a call nobody answered: %s", recs)
		}
	})
}

// TestWarnRuleOnHugeNumber checks an operator's warn-only rule reads
// 1e400 as the number it is (too large for float64, so +Inf): the request
// is warned (449), not blocked, and goes ahead with the override.
func TestWarnRuleOnHugeNumber(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) {
			c.Policy.Rules = []policy.Rule{{Name: "large-n", When: `request.body.n > 5`, Decision: "warn", Reason: "n is larger than 5"}}
		})
		r := h.do("POST", "/proxy", `{"n":1e400}`, wire.TraceID, "huge-1")
		if r.status != 449 || r.json["requires_override"] != true || !strings.Contains(r.str("warning"), "n is larger than 5") || r.json["blocked"] != nil {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if n := len(h.agent.received()); n != 0 {
			t.Fatalf("a warned request reached the agent")
		}
		if r := h.do("POST", "/proxy", `{"n":1}`); r.status != 200 {
			t.Errorf("n=1: %d %s", r.status, r.body)
		}
		if r := h.do("POST", "/proxy", `{"n":1e400}`, wire.Override, testOverride); r.status != 200 {
			t.Errorf("overridden: %d %s", r.status, r.body)
		}
		calls := h.agent.received()
		if len(calls) != 2 || string(calls[1].Body) != `{"n":1e400}` {
			t.Errorf("the agent got %d calls; the number must reach it as sent", len(calls))
		}
	})
}

// TestCardInTrailer sends a card number in a trailer of a chunked body:
// blocked on its way to a permanent store, like anywhere else, on both
// fronts; forwarded to an ephemeral one, and recorded as found there.
func TestCardInTrailer(t *testing.T) {
	chunked := func(id string, extra string) string {
		return "POST /proxy HTTP/1.1\r\nHost: sidecar.test\r\nContent-Type: application/json\r\nTrailer: X-Checksum\r\n" +
			"Transfer-Encoding: chunked\r\nX-Agent-Trace-ID: " + id + "\r\n" + extra + "\r\n2\r\n{}\r\n0\r\nX-Checksum: " + card + "\r\n\r\n"
	}
	eachFront(t, func(t *testing.T) {
		hp := start(t, "untrusted_honeypot.json", nil)
		r := hp.sendRaw(chunked("tr-1", wire.Override+": "+testOverride+"\r\n"))
		if r.status != 403 || r.str("blocked_by") != "credit_card_permanent" {
			t.Errorf("honeypot: %d %s", r.status, r.body)
		}
		if n := len(hp.agent.received()); n != 0 {
			t.Errorf("the honeypot's agent was called %d times", n)
		}
		bank := start(t, "secure_bank.json", nil)
		if r := bank.sendRaw(chunked("tr-2", "")); r.status != 200 {
			t.Fatalf("bank: %d %s", r.status, r.body)
		}
		recs, _ := bank.recorded("tr-2")
		if !strings.Contains(recs, `"found_in":["trailer:x-checksum"]`) {
			t.Errorf("records: %s", recs)
		}
		if s := cardRun(recs, card); s != "" {
			t.Errorf("the record holds %q", s)
		}
	})
}
