package pipeline

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/policy"
)

// The Sender in these tests is a function: Sender is the pipeline's own
// interface (the transport's part of Forward), and only Forward's header
// rules and recording are tested here. The sidecar's tests run the real
// agent client.

func TestForwardAnswerHeader(t *testing.T) {
	tests := []struct {
		name        string
		lines       Fields
		quarantined bool
		keep, drop  []string // header names expected present, absent
	}{
		{name: "plain header kept", lines: Fields{{"X-Kept", "yes"}}, keep: []string{"X-Kept"}},
		{name: "Set-Cookie kept", lines: Fields{{"Set-Cookie", "a=b"}}, keep: []string{"Set-Cookie"}},
		{name: "Connection", lines: Fields{{"Connection", "close"}}, drop: []string{"Connection"}},
		{name: "named in Connection", lines: Fields{{"Connection", "X-Secret"}, {"X-Secret", "s"}, {"X-Kept", "k"}},
			drop: []string{"Connection", "X-Secret"}, keep: []string{"X-Kept"}},
		{name: "named in Connection, list and spellings", lines: Fields{{"connection", " keep-alive , x_secret,X-Other"}, {"X-Secret", "s"}, {"x-other", "o"}},
			drop: []string{"Connection", "X-Secret", "X-Other"}},
		{name: "named in a second Connection line", lines: Fields{{"Connection", "close"}, {"Connection", "X-Secret"}, {"X-Secret", "s"}},
			drop: []string{"Connection", "X-Secret"}},
		{name: "Keep-Alive", lines: Fields{{"Keep-Alive", "timeout=5"}}, drop: []string{"Keep-Alive"}},
		{name: "Proxy-Connection", lines: Fields{{"Proxy-Connection", "keep-alive"}}, drop: []string{"Proxy-Connection"}},
		{name: "Proxy-Authenticate", lines: Fields{{"Proxy-Authenticate", "Basic"}}, drop: []string{"Proxy-Authenticate"}},
		{name: "Transfer-Encoding", lines: Fields{{"Transfer-Encoding", "chunked"}}, drop: []string{"Transfer-Encoding"}},
		{name: "TE", lines: Fields{{"TE", "trailers"}}, drop: []string{"TE"}},
		{name: "Trailer", lines: Fields{{"Trailer", "X-Sum"}}, drop: []string{"Trailer"}},
		{name: "Upgrade", lines: Fields{{"Upgrade", "h2c"}}, drop: []string{"Upgrade"}},
		{name: "Content-Length", lines: Fields{{"Content-Length", "999"}}, drop: []string{"Content-Length"}},
		{name: "X-IATP-Caller-ID", lines: Fields{{"X-IATP-Caller-ID", "root"}}, drop: []string{"X-IATP-Caller-ID"}},
		{name: "X_IATP_Caller_ID", lines: Fields{{"X_IATP_Caller_ID", "root"}}, drop: []string{"X_IATP_Caller_ID"}},
		{name: "x-iatp-anything", lines: Fields{{"x-iatp-anything", "1"}}, drop: []string{"x-iatp-anything"}},
		{name: "X_Iatp-Mixed", lines: Fields{{"X_Iatp-Mixed", "1"}}, drop: []string{"X_Iatp-Mixed"}},
		{name: "agent's trace id replaced", lines: Fields{{wire.TraceID, "forged"}, {"X_Agent_Trace_ID", "forged"}}},
		{name: "agent's trust score replaced", lines: Fields{{wire.TrustScore, "10"}, {"x_agent_trust_score", "10"}}},
		{name: "agent's latency replaced", lines: Fields{{wire.Latency, "0"}, {"X_Agent_Latency_Ms", "0"}}},
		{name: "agent's quarantine flag dropped", lines: Fields{{wire.Quarantined, "true"}, {"X_Agent_Quarantined", "true"}}},
		{name: "agent's quarantine flag replaced", quarantined: true, lines: Fields{{wire.Quarantined, "false"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLog(t)
			lines := append(Fields{{"Content-Type", "text/plain"}}, tt.lines...)
			f := Forward{Sender: answerWith(Answer{Status: 200, Header: lines, Body: []byte("ok"), Latency: 42 * time.Millisecond}), MaxRecord: 1024}
			x := baseExchange()
			x.TraceID = "trace-1"
			x.Quarantined = tt.quarantined
			x.Decision = policy.Decision{Outcome: policy.Allow, TrustScore: 3}
			if r := run(newPipe(l), f, x); r != nil {
				t.Fatal(r)
			}
			h := x.Answer.Header
			for _, n := range tt.keep {
				if !h.Has(n) {
					t.Errorf("%s dropped: %v", n, h)
				}
			}
			for _, n := range tt.drop {
				if h.Has(n) {
					t.Errorf("%s kept: %v", n, h)
				}
			}
			for _, n := range []string{wire.TraceID, wire.TrustScore, wire.Latency} {
				if h.Count(n) != 1 {
					t.Errorf("%s appears %d times: %v", n, h.Count(n), h)
				}
			}
			if h.Get(wire.TraceID) != "trace-1" || h.Get(wire.TrustScore) != "3" || h.Get(wire.Latency) != "42" {
				t.Errorf("the sidecar's headers: %v", h)
			}
			if want := map[bool]int{true: 1, false: 0}[tt.quarantined]; h.Count(wire.Quarantined) != want || tt.quarantined && h.Get(wire.Quarantined) != "true" {
				t.Errorf("%s: %q", wire.Quarantined, h.Values(wire.Quarantined))
			}
			for _, line := range h {
				if wire.IsIATP(line.Name) || wire.IsHopByHop(line.Name) {
					t.Errorf("%s relayed", line.Name)
				}
			}
			if h.Get("Content-Type") != "text/plain" {
				t.Errorf("Content-Type lost: %v", h)
			}
		})
	}
}

func TestForwardRecordsBufferedAnswerBeforeReturning(t *testing.T) {
	l := newLog(t)
	var outcomes []string
	body := `{"card":"` + card + `","ok":true}`
	f := Forward{
		Sender: answerWith(Answer{Status: 201, Header: Fields{{"Content-Type", "application/json"}}, Body: []byte(body),
			Latency: 1500 * time.Microsecond, Length: -1}),
		MaxRecord: 1024, MaxJSONDepth: 8,
		Outcome: func(x *Exchange, status int, r *Refusal) {
			outcomes = append(outcomes, x.TraceID+":"+string(rune('0'+status/100)))
		},
	}
	x := baseExchange()
	x.TraceID = "trace-1"
	x.Decision.Outcome = policy.Allow
	if r := run(newPipe(l), f, x); r != nil {
		t.Fatal(r)
	}
	// The record is on disk once Run returns, before the front writes.
	recs := records(t, l, "trace-1")
	if kinds(recs) != "response" {
		t.Fatalf("records %+v", recs)
	}
	rec := recs[0]
	if rec.Status != 201 || rec.Decision != "allow" || rec.LatencyMs != 1.5 || string(rec.Payload) != `{"card":"[CREDIT_CARD_REDACTED]","ok":true}` ||
		string(rec.Details) != `{"bytes":`+strconv.Itoa(len(body))+`}` {
		t.Errorf("record %+v payload %s details %s", rec, rec.Payload, rec.Details)
	}
	if string(x.Answer.Body) != body {
		t.Errorf("relayed body %s, want the agent's unchanged", x.Answer.Body)
	}
	if !slices.Equal(outcomes, []string{"trace-1:2"}) {
		t.Errorf("outcomes %q", outcomes)
	}
}

func TestForwardRefusal(t *testing.T) {
	l := newLog(t)
	var got []*Refusal
	want := &Refusal{Status: 504, Reason: UpstreamTimeout, Msg: "Backend agent timeout"}
	f := Forward{Sender: sendFunc(func(context.Context, *Exchange) (*Answer, *Refusal) { return nil, want }),
		Outcome: func(_ *Exchange, status int, r *Refusal) { got = append(got, r) }}
	x := baseExchange()
	x.TraceID = "trace-1"
	if r := run(newPipe(l), f, x); r != want {
		t.Fatalf("refusal %v", r)
	}
	if len(got) != 1 || got[0] != want || x.Answer != nil {
		t.Errorf("outcomes %v answer %v", got, x.Answer)
	}
	if recs := records(t, l, "trace-1"); len(recs) != 0 {
		t.Errorf("Forward recorded %+v; the pipeline records refusals", recs)
	}
}

// TestForwardStreamRecordedAtClose streams answers with cards around the
// record limit and around the end of the raw capture: the record, written
// when the stream closes, never holds one whole or in part.
func TestForwardStreamRecordedAtClose(t *testing.T) {
	const limit = 1000
	pad := func(n int) string { return strings.Repeat("word, ", n/6+1)[:n] }
	tests := []struct {
		name  string
		body  string
		ctype string
		cut   bool // the record is a truncated prefix
	}{
		{"card straddling the record limit", pad(limit-8) + " " + card + " " + pad(8000), "text/plain", true},
		{"dashed card straddling the record limit", pad(limit-30) + " 4532-0151-1283-0366 " + pad(8000), "text/plain", true},
		{"card straddling the end of the capture", pad(limit+captureMargin-8) + " " + card + " " + pad(2000), "text/plain", true},
		{"card just past the record limit", pad(limit+1) + " " + card + " " + pad(6000), "text/event-stream", true},
		{"card in a short JSON stream", `{"card":"` + card + `"}`, "application/json", false},
		{"card at the end of a short stream", pad(100) + " " + card, "text/plain", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLog(t)
			src := newStream([]byte(tt.body))
			f := Forward{Sender: answerWith(Answer{Status: 200, Header: Fields{{"Content-Type", tt.ctype}}, Stream: src, Length: -1}),
				MaxRecord: limit, MaxJSONDepth: 8}
			x := baseExchange()
			x.TraceID = "trace-1"
			if r := run(newPipe(l), f, x); r != nil {
				t.Fatal(r)
			}
			if recs := records(t, l, "trace-1"); len(recs) != 0 {
				t.Fatalf("recorded before the stream ended: %+v", recs)
			}
			relayed, err := io.ReadAll(x.Answer.Stream)
			if err != nil || string(relayed) != tt.body {
				t.Fatalf("relayed %d bytes (%v), want the agent's %d unchanged", len(relayed), err, len(tt.body))
			}
			if err := x.Answer.Stream.Close(); err != nil {
				t.Fatal(err)
			}
			_ = x.Answer.Stream.Close() // a second close is harmless
			recs := records(t, l, "trace-1")
			if kinds(recs) != "response" {
				t.Fatalf("records %+v", recs)
			}
			rec := recs[0]
			if s := leak(rec.Payload, card); s != "" {
				t.Errorf("the record holds %q: %.200s…", s, rec.Payload)
			}
			if s := leak(rec.Payload, "4532-0151-1283-0366"); s != "" {
				t.Errorf("the record holds %q", s)
			}
			if len(rec.Payload) > limit {
				t.Errorf("payload of %d bytes, limit %d", len(rec.Payload), limit)
			}
			wantDetails := `{"bytes":` + strconv.Itoa(len(tt.body)) + `,"streamed":true`
			if tt.cut {
				wantDetails += `,"truncated":true`
			}
			if string(rec.Details) != wantDetails+"}" {
				t.Errorf("details %s, want %s}", rec.Details, wantDetails)
			}
			if !tt.cut && !strings.Contains(string(rec.Payload), "[CREDIT_CARD_REDACTED]") {
				t.Errorf("a whole short answer is not recorded scrubbed: %s", rec.Payload)
			}
			if src.closed != 1 || src.closeBy != nil {
				t.Errorf("agent stream closed %d times (%v)", src.closed, src.closeBy)
			}
		})
	}
}

// TestForwardStreamCallerFailed checks a stream the caller's side broke is
// closed with the error, and recorded as such.
func TestForwardStreamCallerFailed(t *testing.T) {
	l := newLog(t)
	src := newStream([]byte(strings.Repeat("x", 5000)))
	f := Forward{Sender: answerWith(Answer{Status: 200, Stream: src, Length: -1}), MaxRecord: 100}
	x := baseExchange()
	x.TraceID = "trace-1"
	if r := run(newPipe(l), f, x); r != nil {
		t.Fatal(r)
	}
	buf := make([]byte, 10)
	if _, err := x.Answer.Stream.Read(buf); err != nil {
		t.Fatal(err)
	}
	broken := errors.New("write: broken pipe to " + card)
	_ = x.Answer.Stream.CloseWithError(broken)
	if src.closed != 1 || src.closeBy != broken {
		t.Errorf("agent stream closed %d times with %v", src.closed, src.closeBy)
	}
	recs := records(t, l, "trace-1")
	if kinds(recs) != "response" ||
		string(recs[0].Details) != `{"bytes":10,"streamed":true,"truncated":true,"body_error":"write: broken pipe to [CREDIT_CARD_REDACTED]"}` {
		t.Errorf("records %+v details %s", recs, recs[0].Details)
	}
	if x.refs.Load() != 1 {
		t.Errorf("refs %d after the stream closed, want the front's 1", x.refs.Load())
	}
}
