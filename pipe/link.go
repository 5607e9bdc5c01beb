package pipe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// link sends messages from one agent to one sink through the checks of
// pipeline.PipeChecks. Each worker has its own links: a link is used by
// one goroutine at a time, and its checks reach the message being sent
// through it.
type link[T any] struct {
	rt       *shared
	from     policy.Caller
	to       *sink[T]
	received bool // messages from a socket: decoded, never encoded
	p        *pipeline.Pipeline
	enc      encoder
	msg      policy.Message
	ids      ids

	// The message being checked, and how its checks ended.
	env     envelope[T] // held here, so that a message does not escape to the heap
	cur     *envelope[T]
	at      string // the check running
	rule    string // the verifier that flagged it
	refusal *pipeline.Refusal
	dec     string // the policy rule behind a refusal
}

// newLink returns a link from the agent from to the sink to. Messages that
// come over a socket are received: their trace id is checked like a
// header, and their bytes decoded into T. With verify, the verifiers
// judge every message: from is a stage, not the owner.
func newLink[T any](rt *shared, from policy.Caller, to *sink[T], received, verify bool) *link[T] {
	l := &link[T]{rt: rt, from: from, to: to, received: received, ids: newIDs()}
	l.enc.init()
	c := pipeline.PipeConfig{
		Received:   received,
		NewTraceID: l.newID,
		Size:       pipeline.CheckFunc("size", l.size),
		Parse: pipeline.Parse{MaxDepth: rt.cfg.MaxJSONDepth, MaxRecordPayload: rt.cfg.MaxRecordPayload,
			Value: rt.cfg.Engine != nil && rt.cfg.Engine.NeedsBody()},
		Engine:   rt.cfg.Engine,
		Override: pipeline.CheckFunc("override", l.override),
		Deliver:  pipeline.CheckFunc("deliver", l.deliver),
	}
	if received {
		c.Decode = pipeline.CheckFunc("decode", l.decode)
	}
	if verify && len(rt.cfg.Verifiers) > 0 {
		c.Verify = pipeline.CheckFunc("verify", l.verify)
	}
	checks := pipeline.PipeChecks(c)
	for i, ch := range checks {
		checks[i] = traced{ch, ch.Name(), &l.at}
	}
	l.p = pipeline.New(pipeline.Config{Recorder: rt.cfg.Recorder, AgentID: rt.owner.AgentID, Observer: l,
		Clock: rt.cfg.Clock, NewTraceID: l.newID, OnRecordError: rt.onRecordError()}, checks...)
	return l
}

// onRecordError adapts Config.OnRecordError to the pipeline's.
func (rt *shared) onRecordError() func(*recorder.Record, error) {
	f := rt.cfg.OnRecordError
	if f == nil {
		return nil
	}
	return func(r *recorder.Record, err error) { f(r.TraceID, err) }
}

// traced notes which check is running, so that a refusal names it.
type traced struct {
	pipeline.Check
	name string
	at   *string
}

// Name returns the check's name.
func (t traced) Name() string { return t.name }

// Run notes the check's name and runs it.
func (t traced) Run(ctx context.Context, x *pipeline.Exchange) *pipeline.Refusal {
	*t.at = t.name
	return t.Check.Run(ctx, x)
}

// Observe keeps the refusal that ended the message being sent.
func (l *link[T]) Observe(x *pipeline.Exchange, r *pipeline.Refusal) {
	l.refusal = r
	if r != nil {
		l.dec = x.Decision.Rule
	}
}

// delivered is the answer of a message delivered: nothing goes back.
var delivered = pipeline.Answer{Status: http.StatusNoContent, Length: -1}

// send checks env and delivers it, or returns the *Error that stopped it;
// it returns the message's Meta either way. body is the message's JSON
// encoding when it came over a socket; a local message is encoded here,
// and gets its id, source, target and type.
func (l *link[T]) send(ctx context.Context, in envelope[T], body []byte) (Meta, error) {
	l.env = in
	env := &l.env
	defer clear1(env)
	rt, m := l.rt, &env.meta
	x := pipeline.Acquire()
	x.Kind = pipeline.Message
	if !l.received {
		m.ID, m.Source, m.Target, m.Type = l.newID(), l.from.AgentID, l.to.id, l.to.typ
		b, err := l.enc.encode(&env.value)
		if err != nil {
			x.TraceID, x.TargetID, x.Caller = m.TraceID, l.to.id, l.from
			l.msg = policy.Message{ID: m.ID, TraceID: m.TraceID, Source: m.Source, Target: m.Target, Type: m.Type}
			x.Message = &l.msg
			r := pipeline.Refuse(http.StatusBadRequest, pipeline.BadBody, "the value has no JSON encoding: "+pipeline.ScrubbedText(err.Error()))
			l.p.Refuse(ctx, x, r)
			pipeline.Release(x)
			return *m, &Error{Meta: *m, Check: "encode", Reason: r.Reason, Msg: r.Msg, Cause: err, kind: ErrRefused}
		}
		body = b
	}
	m.Size = len(body)
	x.Body = body
	x.TraceID = m.TraceID
	x.Caller = l.from
	x.Caller.Reputation = rt.reputation(l.from.AgentID)
	x.Target = policy.Target{Manifest: l.to.agent, Reputation: rt.reputation(l.to.id)}
	x.TargetID = l.to.id
	if l.received {
		x.Header = pipeline.Fields{{Name: wire.TraceID, Value: m.TraceID}}
	}
	l.msg = policy.Message{ID: m.ID, TraceID: m.TraceID, Source: m.Source, Target: m.Target, Type: m.Type, Size: m.Size}
	x.Message = &l.msg
	l.cur, l.at, l.rule, l.refusal, l.dec = env, "", "", nil, ""
	l.p.Serve(ctx, x)
	var err error
	if r := l.refusal; r != nil {
		m.TraceID = x.TraceID // a refused received trace id is replaced
		e := &Error{Meta: *m, Check: l.at, Reason: r.Reason, Msg: r.Msg, Cause: r.Cause, kind: kindOf(r.Reason)}
		switch l.at {
		case "policy", "override":
			e.Rule = l.dec
		case "verify":
			e.Rule = l.rule
		}
		err = e
	}
	l.cur = nil
	pipeline.Release(x)
	l.enc.trim()
	if err == nil && l.to.after != nil {
		l.to.after(ctx, env)
	}
	return *m, err
}

// clear1 drops what the link holds of the message it sent.
func clear1[T any](env *envelope[T]) { *env = envelope[T]{} }

// newID returns a new message or trace id.
func (l *link[T]) newID() string {
	if f := l.rt.cfg.NewID; f != nil {
		return f()
	}
	return l.ids.next()
}

// size refuses a message over the pipe's limit.
func (l *link[T]) size(_ context.Context, x *pipeline.Exchange) *pipeline.Refusal {
	if limit := l.rt.cfg.MaxMessageBytes; len(x.Body) > limit {
		return pipeline.Refuse(http.StatusRequestEntityTooLarge, pipeline.TooLarge,
			fmt.Sprintf("message of %d bytes, over the pipe's limit of %d bytes (MaxMessageBytes)", len(x.Body), limit))
	}
	return nil
}

// decode turns a received message into T: its type name must be T's, and
// its bytes — those the detector just parsed — must decode into T with no
// field T lacks.
func (l *link[T]) decode(_ context.Context, x *pipeline.Exchange) *pipeline.Refusal {
	env := l.cur
	if env.meta.Type != l.to.typ {
		return pipeline.Refuse(http.StatusBadRequest, pipeline.BadBody,
			fmt.Sprintf("message of type %s; %s takes %s", pipeline.Clip(env.meta.Type), l.to.id, l.to.typ))
	}
	dec := json.NewDecoder(bytes.NewReader(x.Body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env.value); err != nil {
		return pipeline.Refuse(http.StatusBadRequest, pipeline.BadBody,
			"the message does not decode as "+l.to.typ+": "+pipeline.ScrubbedText(err.Error()))
	}
	return nil
}

// verify runs the verifiers over a stage's output: a flagged message is
// refused and its source reported; a verifier's error refuses it too.
func (l *link[T]) verify(ctx context.Context, x *pipeline.Exchange) *pipeline.Refusal {
	msg := Message{Meta: l.cur.meta, Body: x.Body, Value: l.cur.value}
	for _, v := range l.rt.cfg.Verifiers {
		flag, err := v.Verify(ctx, &msg)
		if err != nil {
			l.rule = v.Name()
			r := pipeline.Refuse(http.StatusInternalServerError, pipeline.PolicyError,
				"verifier "+v.Name()+" could not judge the message, so it was not delivered")
			r.Cause = err
			return r
		}
		if flag != nil {
			l.rule = v.Name()
			return l.rt.slash(ctx, x, v.Name(), flag)
		}
	}
	return nil
}

// slash reports the source of a flagged message to the reputation store,
// records the report, and returns the refusal of the message.
func (rt *shared) slash(ctx context.Context, x *pipeline.Exchange, verifier string, f *Flag) *pipeline.Refusal {
	source, reason, why := x.Caller.AgentID, f.Reason, pipeline.ScrubbedText(f.Why)
	if reason == "" {
		reason = "hallucination"
	}
	details, _ := pipeline.EncodeJSON(map[string]any{"verifier": verifier, "message_id": x.Message.ID,
		"target": x.TargetID, "type": x.Message.Type, "why": why})
	// The report outlives the caller's context, as records do.
	err := rt.cfg.Reporter.Report(context.WithoutCancel(ctx), source, reason, f.Severity, x.TraceID, details)
	rep := rt.reputation(source)
	rd := map[string]any{"agent_id": source, "reason": reason, "severity": f.Severity, "verifier": verifier,
		"message_id": x.Message.ID, "why": why}
	if rep.Known {
		rd["new_score"], rd["trust_level"] = rep.Score(), string(rep.Level)
	}
	if err != nil {
		rd["report_error"] = pipeline.ScrubbedText(err.Error())
	}
	recDetails, _ := pipeline.EncodeJSON(rd)
	x.Record(ctx, recorder.Record{Kind: recorder.KindReputation, Decision: "block", Reasons: []string{reason}, Details: recDetails})
	msg := "flagged by verifier " + verifier + ": " + why + "; " + source + " reported for " + reason
	r := &pipeline.Refusal{Status: http.StatusForbidden, Reason: pipeline.Blocked, Msg: msg,
		Fields: map[string]any{"blocked": true, "blocked_by": "verifier:" + verifier},
		Kind:   recorder.KindBlocked, Decision: "block", Reasons: []string{"verifier:" + verifier, why}}
	if err != nil {
		r.Msg += " (the report failed)"
		r.Cause = fmt.Errorf("reporting %s: %w", source, err)
	}
	return r
}

// override refuses a message the policy warns about, unless the pipe
// accepts warnings: nobody is there to confirm them.
func (l *link[T]) override(_ context.Context, x *pipeline.Exchange) *pipeline.Refusal {
	d := &x.Decision
	x.Quarantined = d.Quarantine
	if d.Outcome != policy.Warn || l.rt.cfg.AcceptWarnings {
		return nil
	}
	return &pipeline.Refusal{Status: wire.StatusWarning, Reason: pipeline.Warned,
		Msg:  "the policy warns about this message, and the pipe does not accept warnings (Config.AcceptWarnings): " + strings.Join(d.Warnings, "; "),
		Kind: recorder.KindWarning, Decision: "warn", Reasons: d.Warnings}
}

// deliver hands the message to its target.
func (l *link[T]) deliver(ctx context.Context, x *pipeline.Exchange) *pipeline.Refusal {
	if r := l.to.push(ctx, l.cur, x, l.received); r != nil {
		return r
	}
	x.Answer = &delivered
	return nil
}

// fullRefusal is the refusal of a message whose target's buffer stayed
// full for the send timeout.
func (rt *shared) fullRefusal(target string) *pipeline.Refusal {
	return pipeline.Refuse(http.StatusGatewayTimeout, pipeline.UpstreamTimeout,
		fmt.Sprintf("%s did not take the message within %s: its buffer of %d stayed full", target, rt.cfg.SendTimeout, rt.cfg.Buffer))
}

// canceledRefusal is the refusal of a message whose context ended.
func canceledRefusal(target string, err error) *pipeline.Refusal {
	r := pipeline.Refuse(pipeline.StatusCanceled, pipeline.Canceled, "the pipeline was stopped before "+target+" took the message")
	r.Cause = err
	return r
}

// encoder encodes values as JSON into a buffer it reuses.
type encoder struct {
	buf bytes.Buffer
	enc *json.Encoder
}

func (e *encoder) init() {
	e.enc = json.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
}

// encode returns v's JSON encoding, valid until the next call.
func (e *encoder) encode(v any) ([]byte, error) {
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return nil, err
	}
	b := e.buf.Bytes()
	return b[:len(b)-1], nil // Encode ends with a newline
}

// trim drops a buffer grown by a large message.
func (e *encoder) trim() {
	if e.buf.Cap() > 64<<10 {
		e.buf = bytes.Buffer{}
		e.init()
	}
}
