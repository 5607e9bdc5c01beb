package pipeline

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/iatp/iatp/internal/wire"
)

// Phases group the checks into the spans of a trace: receive (headers,
// route, body, identity, rate limit), decide (parse, detect, discover,
// policy, override, sign), record, forward.
const (
	PhaseReceive = "receive"
	PhaseDecide  = "decide"
	PhaseRecord  = "record"
	PhaseForward = "forward"
)

// phaseOf returns the phase of a check by its name.
func phaseOf(name string) string {
	switch name {
	case "headers", "route", "egress_route", "connect_route", "body", "identify", "rate_limit":
		return PhaseReceive
	case "record":
		return PhaseRecord
	case "forward", "tunnel":
		return PhaseForward
	}
	return PhaseDecide
}

// propagator reads and writes W3C trace context (traceparent, tracestate).
var propagator = propagation.TraceContext{}

// fieldsCarrier lets the propagator read request header lines.
type fieldsCarrier struct{ f Fields }

func (c fieldsCarrier) Get(key string) string { return c.f.Get(key) }
func (c fieldsCarrier) Set(string, string)    {}
func (c fieldsCarrier) Keys() []string {
	keys := make([]string, len(c.f))
	for i, h := range c.f {
		keys[i] = h.Name
	}
	return keys
}

// addedCarrier writes trace context into x.Added.
type addedCarrier struct{ x *Exchange }

func (c addedCarrier) Get(key string) string { return c.x.Added.Get(key) }
func (c addedCarrier) Set(key, value string) {
	c.x.Added = append(c.x.Added, Field{key, value})
}
func (c addedCarrier) Keys() []string { return nil }

// tracing is the span state of one exchange.
type tracing struct {
	tracer trace.Tracer
	root   trace.Span
	rctx   context.Context // the root span's context
	phase  string
	span   trace.Span // the current phase's span
}

// startTrace opens the exchange's root span — a child of the caller's
// traceparent, if any — and returns its context.
func (p *Pipeline) startTrace(ctx context.Context, x *Exchange) (context.Context, *tracing) {
	ctx = propagator.Extract(ctx, fieldsCarrier{x.Header})
	name := x.Kind.String()
	method := spanMethod(x.Method)
	if x.Kind == Ingress {
		name = method + " " + wire.ProxyRoute
	}
	ctx, root := p.cfg.Tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("iatp.exchange", x.Kind.String())))
	x.OTelTraceID = root.SpanContext().TraceID().String()
	return ctx, &tracing{tracer: p.cfg.Tracer, root: root, rctx: ctx}
}

// enter starts the span of check name's phase when it differs from the
// current one, and returns the context the check runs in. The forward
// phase puts its span into the upstream request's traceparent.
func (t *tracing) enter(ctx context.Context, x *Exchange, name string) context.Context {
	ph := phaseOf(name)
	if ph == t.phase {
		return ctx
	}
	if t.span != nil {
		t.span.End()
	}
	kind := trace.SpanKindInternal
	if ph == PhaseForward {
		kind = trace.SpanKindClient
	}
	t.phase = ph
	ctx, t.span = t.tracer.Start(t.rctx, ph, trace.WithSpanKind(kind))
	if ph == PhaseForward {
		propagator.Inject(ctx, addedCarrier{x})
	}
	return ctx
}

// end closes the spans with how the exchange ended.
func (t *tracing) end(x *Exchange, r *Refusal, status int) {
	if t.span != nil {
		t.span.End()
	}
	attrs := []attribute.KeyValue{
		attribute.String("iatp.trace_id", x.TraceID),
		attribute.String("iatp.outcome", string(x.Outcome)),
		attribute.String("url.path", x.RecordedPath),
		attribute.Int("http.response.status_code", status),
	}
	if x.Caller.AgentID != "" {
		attrs = append(attrs, attribute.String("iatp.caller", x.Caller.AgentID), attribute.Bool("iatp.caller.authenticated", x.Caller.Authenticated))
	}
	if x.TargetID != "" {
		attrs = append(attrs, attribute.String("iatp.target", x.TargetID))
	}
	if x.Target.Manifest != nil { // the policy ran
		attrs = append(attrs, attribute.String("iatp.decision", x.Decision.Outcome.String()), attribute.Int("iatp.trust_score", x.Decision.TrustScore))
	}
	if x.Decision.Rule != "" {
		attrs = append(attrs, attribute.String("iatp.rule", x.Decision.Rule))
	}
	if x.Found != 0 {
		attrs = append(attrs, attribute.String("iatp.sensitive", x.Found.String()))
	}
	t.root.SetAttributes(attrs...)
	if r != nil && status >= 500 {
		t.root.SetStatus(codes.Error, r.Msg)
	} else if r != nil {
		t.root.SetAttributes(attribute.String("iatp.refusal", r.Msg))
	}
	t.root.End()
}

// statusOf returns the status an exchange ended with.
func statusOf(x *Exchange, r *Refusal) int {
	switch {
	case r != nil:
		return r.Status
	case x.Answer != nil:
		return x.Answer.Status
	}
	return 0
}

// spanMethod is the method as OpenTelemetry's HTTP conventions name it:
// a standard one as is, anything else "_OTHER".
func spanMethod(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE":
		return m
	}
	return "_OTHER"
}
