package sidecar

import (
	"bufio"
	"github.com/iatp/iatp/internal/wire"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestOutageDoesNotLockOut checks that failures of the protected agent,
// which lower its reputation, do not lower the score its own sidecar warns
// on: otherwise warnings would stop every call and the agent could never
// earn its reputation back.
func TestOutageDoesNotLockOut(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "standard_agent.json", nil)
		url := h.agent.srv.URL
		h.agent.srv.Close()
		for i := range 12 {
			if r := h.do("POST", "/proxy", `{}`); r.status != 502 {
				t.Fatalf("call %d during the outage: %d %s", i, r.status, r.body)
			}
		}
		// Its own failures are counted, not held against it by its own
		// sidecar (only its callers report them to the mesh).
		if g := h.do("GET", "/reputation/standard-agent", ""); g.json["negative_events"] != float64(12) || g.json["score"] != float64(5) {
			t.Errorf("reputation after 12 failures: %s", g.body)
		}
		// The agent comes back on the same address.
		ln, err := net.Listen("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			t.Skipf("cannot listen on the agent's old address again: %v", err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{}`)) })}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		if r := h.do("POST", "/proxy", `{}`); r.status != 200 || r.header.Get(wire.TrustScore) != "8" {
			t.Errorf("after the outage: %d score %q %s", r.status, r.header.Get(wire.TrustScore), r.body)
		}
	})
}

func TestCallerCannotSetIATPHeaders(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		headers := []string{"X-IATP-Caller-ID", "root", "X-Iatp-Caller-Attested", "true", "x-iatp-anything", "1", wire.Override, "whatever"}
		for i := range 12 {
			headers = append(headers, "X-Iatp-Extra-"+strconv.Itoa(i), "v")
		}
		h.do("POST", "/proxy", `{}`, headers...)
		got := h.agent.received()[0].Header
		for k := range got {
			if strings.HasPrefix(strings.ToLower(k), "x-iatp-") || strings.EqualFold(k, wire.Override) {
				t.Errorf("the agent received %s: %q", k, got.Get(k))
			}
		}
	})
}

func TestProxyMethodNotAllowed(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		r := h.do("PUT", "/proxy", `{}`, wire.TraceID, "put-1")
		if r.status != 405 || r.header.Get("Allow") != "POST" || r.str("trace_id") != "put-1" {
			t.Errorf("%d %v %s", r.status, r.header, r.body)
		}
		if tr := h.trace("put-1"); tr.status != 200 {
			t.Errorf("the 405 was not recorded: %d", tr.status)
		}
	})
}

func TestSlashAndImportDetails(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		bearer := "Bearer " + testAdmin
		if r := h.do("POST", "/reputation/x/slash", `{"reason":"success"}`, "Authorization", bearer); r.status != 400 {
			t.Errorf("a slash for success: %d %s", r.status, r.body)
		}
		if r := h.do("POST", "/reputation/import", `{"reputation_data":{"x":{"agent_id":"x","score":1}}}`, "Authorization", bearer, wire.TraceID, "imp-1"); r.status != 200 {
			t.Fatalf("import: %d %s", r.status, r.body)
		}
		if tr := h.trace("imp-1"); tr.status != 200 || !strings.Contains(string(tr.body), `"agents_updated":1`) {
			t.Errorf("the import is not in the flight recorder: %d %s", tr.status, tr.body)
		}
	})
}

// TestMalformedAgentAnswerIsNotEchoed checks a broken answer quoted in an
// error is scrubbed before it reaches the caller or the record.
func TestMalformedAgentAnswerIsNotEchoed(t *testing.T) {
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
				go func() {
					defer c.Close()
					_, _ = bufio.NewReader(c).ReadString('\n')
					_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\nX-Card: " + card + "\r\nX-Pad: " + strings.Repeat("p", 20<<10) + "\r\n\r\n"))
					time.Sleep(100 * time.Millisecond)
				}()
			}
		}()
		h := start(t, "secure_bank.json", func(c *Config) { c.AgentURL = "http://" + ln.Addr().String() })
		r := h.do("POST", "/proxy", `{}`, wire.TraceID, "broken-1")
		if r.status != 502 || strings.Contains(string(r.body), card) {
			t.Errorf("%d %s", r.status, r.body)
		}
		if tr := h.trace("broken-1"); strings.Contains(string(tr.body), card) {
			t.Errorf("the card in the agent's broken answer reached the record: %s", tr.body)
		}
		if logs := h.logs.String(); strings.Contains(logs, card) {
			i := strings.Index(logs, card)
			t.Errorf("the card in the agent's broken answer reached the log: …%s…", logs[max(0, i-300):i+20])
		}
	})
}

func TestLargePayloadsFitTheRecorder(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) { c.MaxRecordPayload = 2 << 20; c.MaxBodyBytes = 4 << 20 })
		body := `{"blob":"` + strings.Repeat("a b ", 400<<10) + `"}`
		if r := h.do("POST", "/proxy", body, wire.TraceID, "large-1"); r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if tr := h.trace("large-1"); tr.status != 200 || !strings.Contains(string(tr.body), `"kind":"request"`) {
			t.Errorf("trace: %d", tr.status)
		}
	})
}

// TestTextAnswersAreRecordedAsText checks an HTML answer is kept (scrubbed)
// as text within max_response_bytes, not replaced by a summary because JSON
// escaping of <, > and & made it longer.
func TestTextAnswersAreRecordedAsText(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		h.agent.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(strings.Repeat("<p>a &amp; b</p>", 2000) + "<p>" + card + "</p>"))
		})
		if r := h.do("POST", "/proxy", `{}`, wire.TraceID, "html-1"); r.status != 200 {
			t.Fatalf("%d", r.status)
		}
		tr := string(h.trace("html-1").body)
		if !strings.Contains(tr, "<p>a &amp; b</p>") || !strings.Contains(tr, "[CREDIT_CARD_REDACTED]") || strings.Contains(tr, card) {
			t.Errorf("answer record: %.300s", tr[strings.Index(tr, `"kind":"response"`):])
		}
	})
}

func TestSlashUnknownReasonMessage(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		r := h.do("POST", "/reputation/x/slash", `{"reason":"rude"}`, "Authorization", "Bearer "+testAdmin)
		if r.status != 400 || !strings.Contains(r.str("error"), `unknown reason "rude": a report is hallucination, failure, timeout or error`) {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
}
