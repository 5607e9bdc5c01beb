package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/recorder"
)

// Recorder is what the pipeline needs of the flight recorder.
type Recorder interface {
	Append(ctx context.Context, r *recorder.Record) (uint64, error)
}

// Observer learns how each exchange ended: the sidecar counts it in its
// metrics and logs one line per decision.
type Observer interface {
	// Observe is called once per exchange, after its last check, with the
	// refusal that ended it or nil when it was forwarded.
	Observe(x *Exchange, r *Refusal)
}

// Config holds what every pipeline shares.
type Config struct {
	// Recorder is the flight recorder (required).
	Recorder Recorder
	// AgentID is this sidecar's agent, recorded as the callee at ingress
	// and as the caller at egress.
	AgentID string
	// Observer, if not nil, learns how each exchange ended.
	Observer Observer
	// Clock is the time source; nil means time.Now.
	Clock func() time.Time
	// NewTraceID makes trace ids; nil means random UUIDs.
	NewTraceID func() string
	// OnRecordError is called when a record cannot be written; nil ignores
	// it (the refusal or answer goes out all the same).
	OnRecordError func(r *recorder.Record, err error)
	// Tracer, if not nil, traces each exchange: a server span (a child of
	// the caller's traceparent) with one span per phase, and the forward
	// span passed on in the upstream request's traceparent. Nil costs
	// nothing.
	Tracer trace.Tracer
}

// Pipeline runs an ordered list of checks over exchanges. It is safe for
// concurrent use.
type Pipeline struct {
	cfg    Config
	checks []Check
}

// New returns a pipeline running checks in order.
func New(cfg Config, checks ...Check) *Pipeline {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.NewTraceID == nil {
		cfg.NewTraceID = NewTraceID
	}
	return &Pipeline{cfg: cfg, checks: checks}
}

// Names returns the names of the checks, in order.
func (p *Pipeline) Names() []string {
	names := make([]string, len(p.checks))
	for i, c := range p.checks {
		names[i] = c.Name()
	}
	return names
}

// exchanges recycles Exchanges between requests.
var exchanges = sync.Pool{New: func() any { return new(Exchange) }}

// Acquire returns an empty Exchange; Release gives it back once its answer
// is written (and its stream, if any, closed).
func Acquire() *Exchange { return exchanges.Get().(*Exchange) }

// Release resets x and returns it to the pool. x must not be used after.
func Release(x *Exchange) {
	x.releaseScrub()
	if x.Answer != nil && x.Answer.Release != nil {
		x.Answer.Release()
	}
	stages := x.Stages[:0]
	where := x.Where[:0]
	*x = Exchange{Stages: stages, Where: where}
	exchanges.Put(x)
}

// Serve runs the checks over x and returns the answer to write: the
// target's answer when every check passed, else the refusal's. Every
// refusal is recorded; a panic in a check is recorded and then goes on.
func (p *Pipeline) Serve(ctx context.Context, x *Exchange) (a *Answer) {
	x.pipe = p
	if x.Received.IsZero() {
		x.Received = p.cfg.Clock()
	}
	if cap(x.Stages) < len(p.checks) {
		x.Stages = make([]time.Duration, len(p.checks))
	}
	x.Stages = x.Stages[:len(p.checks)]
	clear(x.Stages)
	var tr *tracing
	if p.cfg.Tracer != nil {
		ctx, tr = p.startTrace(ctx, x)
	}
	defer func() {
		if v := recover(); v != nil {
			r := &Refusal{Status: http.StatusInternalServerError, Reason: Internal,
				Msg: "internal error; the sidecar's log has the details under this trace id", Cause: fmt.Errorf("panic: %v", v)}
			p.refused(ctx, x, r)
			if tr != nil {
				tr.end(x, r, r.Status)
			}
			panic(v)
		}
	}()
	// One wall-clock read per exchange, then only the monotonic clock per
	// check: time.Now costs several times what time.Since does.
	base, prev := time.Now(), time.Duration(0)
	for i, c := range p.checks {
		cctx := ctx
		if tr != nil {
			cctx = tr.enter(ctx, x, c.Name())
		}
		r := c.Run(cctx, x)
		at := time.Since(base)
		x.Stages[i], prev = at-prev, at
		if r != nil {
			a := p.refused(ctx, x, r)
			if tr != nil {
				tr.end(x, r, r.Status)
			}
			return a
		}
	}
	x.Outcome = Forwarded
	if tr != nil {
		tr.end(x, nil, statusOf(x, nil))
	}
	if p.cfg.Observer != nil {
		p.cfg.Observer.Observe(x, nil)
	}
	if x.TraceID == "" {
		x.TraceID = p.cfg.NewTraceID()
	}
	if x.Answer == nil { // a pipeline without a terminal check
		return &Answer{Status: http.StatusNoContent, Header: Fields{{wire.TraceID, x.TraceID}}, Length: -1}
	}
	return x.Answer
}

// Refuse ends x with r before any check ran — for what a front could not
// even read — recording it like any refusal.
func (p *Pipeline) Refuse(ctx context.Context, x *Exchange, r *Refusal) *Answer {
	x.pipe = p
	if x.Received.IsZero() {
		x.Received = p.cfg.Clock()
	}
	return p.refused(ctx, x, r)
}

func (p *Pipeline) refused(ctx context.Context, x *Exchange, r *Refusal) *Answer {
	x.Outcome = r.Reason
	if x.TraceID == "" {
		x.TraceID = p.cfg.NewTraceID()
	}
	if !r.Unrecorded {
		kind := r.Kind
		if kind == "" {
			kind = recorder.KindError
		}
		reasons := r.Reasons
		if len(reasons) == 0 {
			reasons = []string{r.Msg}
		}
		details := r.Details
		if details == nil {
			details = requestDetails(x, r.Reason)
		}
		payload := x.Payload
		if r.Reason == Upstream || r.Reason == UpstreamTimeout || r.Reason == Canceled {
			payload = nil // the request record holds it
		}
		x.pipe = p
		x.Record(ctx, recorder.Record{Kind: kind, Decision: r.Decision, Reasons: reasons,
			Payload: payload, Status: r.Status, Details: details})
	}
	if p.cfg.Observer != nil {
		p.cfg.Observer.Observe(x, r)
	}
	return r.Answer(x.TraceID)
}

// Record appends r for x — trace id, time, callee, caller — and returns
// the recorder's error. A record is written even when ctx is done (the
// caller went away, the server is stopping): what was decided or answered
// is never dropped.
func (p *Pipeline) Record(ctx context.Context, x *Exchange, r *recorder.Record) error {
	if x.TraceID == "" {
		x.TraceID = p.cfg.NewTraceID()
	}
	r.TraceID = x.TraceID
	if r.Time.IsZero() {
		r.Time = p.cfg.Clock()
	}
	r.AgentID = x.TargetID
	if r.AgentID == "" {
		r.AgentID = p.cfg.AgentID
	}
	if x.Caller.AgentID != "" {
		r.CallerID = x.Caller.AgentID
	}
	r.Authenticated, r.Attested = x.Caller.Authenticated, x.Caller.Attested
	// Every payload the pipeline records is valid JSON it built: the
	// detector's scrubbed copy, or text and summaries it encoded.
	r.PayloadValid = true
	// The record is written whatever ctx says: what was decided or answered
	// is never dropped because the caller went away.
	_, err := p.cfg.Recorder.Append(context.Background(), r)
	if err != nil && p.cfg.OnRecordError != nil {
		p.cfg.OnRecordError(r, err)
	}
	return err
}

// requestDetails describes x for a record: method, the recorded (scrubbed)
// path and query, the decision's score and rule, what was found where.
// Written by hand: it runs for most requests, and encoding/json costs
// several allocations a call.
func requestDetails(x *Exchange, outcome Reason) json.RawMessage {
	x.recordedRequest()
	b := make([]byte, 0, 160)
	b = append(b, '{')
	field := func(name string) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(append(append(b, '"'), name...), `":`...)
	}
	str := func(name, v string) {
		if v != "" {
			field(name)
			b = appendJSONString(b, v)
		}
	}
	flag := func(name string, v bool) {
		if v {
			field(name)
			b = append(b, "true"...)
		}
	}
	list := func(name string, vs []string) {
		if len(vs) > 0 {
			field(name)
			b = append(b, '[')
			for i, v := range vs {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, v)
			}
			b = append(b, ']')
		}
	}
	if x.Kind != Ingress {
		str("exchange", x.Kind.String())
	}
	str("method", safeMethod(x.Method))
	str("path", x.RecordedPath)
	str("query", x.RecordedQuery)
	if x.Kind != Ingress {
		str("target", x.TargetID)
		str("origin", x.Origin)
		str("proven", x.Proven)
	}
	if m := x.Message; m != nil {
		str("message_id", m.ID)
		str("type", m.Type)
		field("bytes")
		b = strconv.AppendInt(b, int64(m.Size), 10)
	}
	if x.Target.Manifest != nil {
		field("trust_score")
		b = strconv.AppendInt(b, int64(x.Decision.TrustScore), 10)
	}
	flag("quarantined", x.Quarantined)
	flag("user_override", x.Overridden)
	str("rule", x.Decision.Rule)
	if x.Found != 0 {
		list("sensitive", x.Found.Names())
		list("found_in", x.Where)
	}
	str("outcome", string(outcome))
	str("otel_trace_id", x.OTelTraceID)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 as U+FFFD, no HTML escaping.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf && !jsonEscape[c] { // a run that needs no escape goes in at once
			j := i + 1
			for j < len(s) && s[j] < utf8.RuneSelf && !jsonEscape[s[j]] {
				j++
			}
			b = append(b, s[i:j]...)
			i = j
			continue
		}
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				switch c {
				case '\n':
					b = append(b, '\\', 'n')
				case '\r':
					b = append(b, '\\', 'r')
				case '\t':
					b = append(b, '\\', 't')
				default:
					b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
				}
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, "\\ufffd"...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// jsonEscape marks the ASCII bytes appendJSONString escapes.
var jsonEscape = func() (t [utf8.RuneSelf]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

// EncodeJSON is json.Marshal without HTML escaping: records and answers
// quote agents' text, which stays readable.
func EncodeJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// safeMethod returns a method to record or name a span with: itself when
// it is a standard one, else scrubbed (a method is the caller's text too).
func safeMethod(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return ScrubbedText(m)
}
