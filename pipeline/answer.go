package pipeline

import (
	"context"
	"encoding/json"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/recorder"
)

// Sender sends an allowed exchange to its upstream and returns the answer,
// or the refusal (502, 504, cancelled) that ends the exchange. It is the
// transport's part of the terminal check.
type Sender interface {
	Send(ctx context.Context, x *Exchange) (*Answer, *Refusal)
}

// Forward is the terminal check: it sends the exchange, applies the answer
// header rules, and records the answer — before relaying it when it is
// whole, when the stream ends when it is streamed (PROTOCOL §7).
type Forward struct {
	Sender Sender
	// MaxRecord bounds the recorded copy of an answer.
	MaxRecord int
	// MaxJSONDepth bounds the JSON of answers that are scrubbed as JSON.
	MaxJSONDepth int
	// Outcome, if not nil, learns each call's result: the answer's status,
	// or the refusal when the call failed (reputation, metrics).
	Outcome func(x *Exchange, status int, r *Refusal)
	// Clock is the time source.
	Clock func() time.Time
}

// Name returns "forward".
func (Forward) Name() string { return "forward" }

// Run sends x.
func (f Forward) Run(ctx context.Context, x *Exchange) *Refusal {
	a, r := f.Sender.Send(ctx, x)
	if r != nil {
		if f.Outcome != nil {
			f.Outcome(x, r.Status, r)
		}
		return r
	}
	a.Header = answerHeader(x, a)
	x.Answer = a
	if a.Stream == nil {
		f.record(ctx, x, a.Status, contentType(a.Header), a.Body, int64(len(a.Body)), true, false, nil)
		return nil
	}
	a.Stream = &tee{f: f, x: x, src: a.Stream, status: a.Status, ctype: contentType(a.Header), limit: f.MaxRecord + captureMargin}
	x.refs.Store(2) // the front's Finish and the stream's Close
	return nil
}

// record writes the response record and reports the outcome.
func (f Forward) record(ctx context.Context, x *Exchange, status int, ctype string, kept []byte, total int64, whole, streamed bool, bodyErr error) {
	payload := AnswerPayload(kept, ctype, whole, f.MaxRecord, f.MaxJSONDepth)
	d := make([]byte, 0, 64) // built by hand: this runs for every answer
	d = append(d, `{"bytes":`...)
	d = strconv.AppendInt(d, total, 10)
	if streamed {
		d = append(d, `,"streamed":true`...)
	}
	if !whole {
		d = append(d, `,"truncated":true`...)
	}
	if bodyErr != nil {
		msg, _ := json.Marshal(ScrubbedText(bodyErr.Error()))
		d = append(append(d, `,"body_error":`...), msg...)
	}
	d = append(d, '}')
	var latency float64
	if x.Answer != nil {
		latency = float64(x.Answer.Latency.Microseconds()) / 1000
	}
	x.Record(ctx, recorder.Record{Kind: recorder.KindResponse, Decision: x.Decision.Outcome.String(),
		Payload: payload, Status: status, LatencyMs: latency, Details: d})
	if f.Outcome != nil {
		if bodyErr != nil {
			f.Outcome(x, status, &Refusal{Status: status, Reason: Upstream, Msg: "the answer's body broke off", Cause: bodyErr})
		} else {
			f.Outcome(x, status, nil)
		}
	}
}

// answerHeader applies the answer header rules (PROTOCOL §5): hop-by-hop
// headers, those the agent's Connection names, framing headers and every
// X-IATP-* header are dropped; the sidecar's own headers replace any copy
// the agent sent.
func answerHeader(x *Exchange, a *Answer) Fields {
	var conn []string
	for _, h := range a.Header {
		if wire.Same(h.Name, "connection") {
			wire.ConnectionTokens(h.Value, func(n string) { conn = append(conn, n) })
		}
	}
	out := a.Header[:0]
	for _, h := range a.Header {
		if dropAnswerHeader(h.Name, conn) {
			continue
		}
		out = append(out, h)
	}
	out = append(out, Field{wire.TraceID, x.TraceID}, Field{wire.TrustScore, strconv.Itoa(x.Decision.TrustScore)},
		Field{wire.Latency, strconv.FormatInt(a.Latency.Milliseconds(), 10)})
	if x.Quarantined {
		out = append(out, Field{wire.Quarantined, "true"})
	}
	return out
}

func dropAnswerHeader(name string, conn []string) bool {
	if wire.IsHopByHop(name) || wire.IsIATP(name) || wire.Same(name, "content-length") ||
		wire.Same(name, wire.TraceID) || wire.Same(name, wire.TrustScore) || wire.Same(name, wire.Latency) || wire.Same(name, wire.Quarantined) {
		return true
	}
	for _, c := range conn {
		if wire.Same(name, c) {
			return true
		}
	}
	return false
}

func contentType(f Fields) string { return f.Get("Content-Type") }

// tee relays a streamed answer and keeps a bounded raw copy of its start,
// which it scrubs and records when the stream ends.
type tee struct {
	f       Forward
	x       *Exchange
	src     StreamBody
	status  int
	ctype   string
	limit   int
	kept    []byte
	total   int64
	readErr error
	closed  bool
}

// Read relays the agent's bytes.
func (t *tee) Read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 {
		t.total += int64(n)
		if room := t.limit - len(t.kept); room > 0 {
			t.kept = append(t.kept, p[:min(n, room)]...)
		}
	}
	if err != nil && err != io.EOF {
		t.readErr = err
	}
	return n, err
}

// Close ends a stream relayed in full.
func (t *tee) Close() error { return t.CloseWithError(nil) }

// CloseWithError ends the relay; err says the caller's side failed. The
// agent's stream is closed, the answer recorded, and the exchange released
// once the front is done with it too.
func (t *tee) CloseWithError(err error) error {
	if t.closed {
		return nil
	}
	t.closed = true
	if err == nil {
		err = t.readErr
	}
	var cerr error
	if err != nil {
		cerr = t.src.CloseWithError(err)
	} else {
		cerr = t.src.Close()
	}
	whole := err == nil && t.total == int64(len(t.kept))
	t.f.record(context.Background(), t.x, t.status, t.ctype, t.kept, t.total, whole, true, err)
	t.x.unref()
	return cerr
}

// Finish tells the pipeline the front is done with x and its answer: x is
// released now, or, when its answer is still streaming, when the stream
// closes. x must not be used after.
func Finish(x *Exchange) {
	if x.refs.Load() == 0 {
		Release(x)
		return
	}
	x.unref()
}

func (x *Exchange) unref() {
	if x.refs.Add(-1) == 0 {
		Release(x)
	}
}

// refCount is embedded in Exchange: how many parties still hold it.
type refCount = atomic.Int32
