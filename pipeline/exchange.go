// Package pipeline is the one decision pipeline of iatp: a request becomes
// an Exchange, whatever carried it (the fasthttp front, the net/http front,
// an egress proxy or a typed pipe), and passes an ordered list of named
// checks — headers, route, body, identify, rate limit, parse, detect,
// policy, override, record, forward at ingress (order.go has every list) —
// that refuse it with a Refusal or let it go on.
//
// The order of the checks is the protocol's observable order (PROTOCOL §3,
// §5) and lives in one file, order.go. Each check reads and writes typed
// fields of the Exchange; none of them knows the transport. The fronts only
// turn their request into an Exchange and write the Answer back.
package pipeline

import (
	"context"
	"io"
	"time"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// Kind says which side of a call an Exchange is decided for.
type Kind uint8

// Kinds of exchange.
const (
	// Ingress: a caller's request to the agent this sidecar protects.
	Ingress Kind = iota
	// Egress: this sidecar's agent calling another agent.
	Egress
	// Message: a message between agents on a typed pipe.
	Message
)

// String returns "ingress", "egress" or "message".
func (k Kind) String() string {
	switch k {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	case Message:
		return "message"
	}
	return "invalid"
}

// Field is one header line: a name as it was sent and its value.
type Field struct {
	Name, Value string
}

// Fields is a header block in order, repetitions kept.
type Fields []Field

// Get returns the first value of the header name (compared under
// wire.Same, so X_Agent_Trace_ID is X-Agent-Trace-ID), or "".
func (f Fields) Get(name string) string {
	for i := range f {
		if wire.Same(f[i].Name, name) {
			return f[i].Value
		}
	}
	return ""
}

// Values returns every value of the header name, in order.
func (f Fields) Values(name string) []string {
	var out []string
	for i := range f {
		if wire.Same(f[i].Name, name) {
			out = append(out, f[i].Value)
		}
	}
	return out
}

// Count returns how many lines carry the header name.
func (f Fields) Count(name string) int {
	n := 0
	for i := range f {
		if wire.Same(f[i].Name, name) {
			n++
		}
	}
	return n
}

// Has reports whether a line carries the header name.
func (f Fields) Has(name string) bool {
	for i := range f {
		if wire.Same(f[i].Name, name) {
			return true
		}
	}
	return false
}

// Exchange is one request on its way through the pipeline. A front fills
// the first block from its transport; the checks fill the rest.
type Exchange struct {
	// Kind is the side of the call being decided.
	Kind Kind
	// Method is the request method.
	Method string
	// Path is the request path as sent (escaped), such as "/proxy/a%20b".
	Path string
	// RawQuery is the query as sent, without '?'.
	RawQuery string
	// Header lists the request's header lines; Trailer its trailer lines.
	Header, Trailer Fields
	// Body is the whole request body; BodyErr, when set, says why the front
	// could not read it (see ErrBodyTooLarge).
	Body    []byte
	BodyErr error
	// ContentType is the body's media type as sent.
	ContentType string
	// Peer is the caller's network address (IP only), for rate limits.
	Peer string
	// TargetURI is the URI the caller addressed (scheme, host, path and
	// query), which request signatures cover.
	TargetURI string
	// Received is when the request came in.
	Received time.Time

	// TraceID is the trace id: the caller's, once checked, or a new one.
	TraceID string
	// Sub is the checked path below the route (ingress: after /proxy).
	Sub string
	// Upstream is the URL the request is sent to once allowed.
	Upstream string
	// Caller is who is calling, as authenticated.
	Caller policy.Caller
	// Target is the agent the request is for, as the policy scores it.
	Target policy.Target
	// TargetID names the target in records (at ingress, the own agent).
	TargetID string
	// Origin is the target's origin at egress ("http://host:port").
	Origin string
	// Proven says what the target proved at egress (see Discover checks):
	// "attested", "signed", "claimed", or why it counts as unknown.
	Proven string
	// Require holds the scopes and capabilities this call needs of the
	// target (egress: per target or path in config).
	Require policy.Requirements
	// Added holds header lines the sidecar adds to the upstream request:
	// at egress, the request signature and the attestation.
	Added Fields
	// Message is the envelope of a message on a typed pipe (Kind
	// Message): its id, trace id, source, target, type and size, which
	// operator rules see and records keep; nil for an HTTP exchange.
	Message *policy.Message

	// Payload is the scrubbed body as it is recorded (JSON), set by Parse.
	Payload []byte
	// Value is the parsed body for operator rules, when one reads it.
	Value any
	// Found is every kind of sensitive data found anywhere in the request.
	Found detect.Set
	// Where lists the places sensitive data was found ("body", "path",
	// "query", "header:<name>", "trailer:<name>").
	Where []string
	// RecordedPath and RecordedQuery are the path and query as recorded:
	// percent-decoded and scrubbed.
	RecordedPath, RecordedQuery string

	// Decision is the policy's decision.
	Decision policy.Decision
	// Overridden is true when a valid override let a warned request go on.
	Overridden bool
	// Quarantined is true when the call goes ahead quarantined.
	Quarantined bool

	// Answer is the answer to relay, set by the terminal check.
	Answer *Answer
	// OTelTraceID is the W3C trace id of the exchange's span, when traced.
	OTelTraceID string
	// Stages holds how long each check took, in the pipeline's order.
	Stages []time.Duration
	// Outcome names how the exchange ended, for logs and metrics: the
	// Reason of its refusal, or "forwarded".
	Outcome Reason

	scrub    *[]byte         // pooled buffer behind Payload
	policyIn policy.Input    // the policy's input, kept here so it does not escape
	rec      recorder.Record // the record being written
	pipe     *Pipeline       // the pipeline serving x, for Record
	refs     refCount        // holders of a streaming x (see Finish)
}

// Record appends r to the flight recorder for x (see Pipeline.Record).
func (x *Exchange) Record(ctx context.Context, r recorder.Record) error {
	x.rec = r // kept in x: a record passed by pointer would escape
	return x.pipe.Record(ctx, x, &x.rec)
}

// Answer is what goes back to the caller: the agent's answer with the
// sidecar's headers, or a refusal rendered as JSON.
type Answer struct {
	// Status is the HTTP status code.
	Status int
	// Header holds the answer's header lines, framing headers
	// (Content-Length, Transfer-Encoding) excluded: the front frames.
	Header Fields
	// Body is the whole body, unless Stream is set.
	Body []byte
	// Stream is a body relayed as it comes; the front reads it to the end
	// and then closes it, with CloseWithError when the caller's side failed.
	Stream StreamBody
	// Length is Stream's length, -1 when unknown.
	Length int64
	// Tunnel, when set, is a connection to splice with the caller's once
	// the answer (a 200 to a CONNECT) is written; the front closes it.
	Tunnel io.ReadWriteCloser
	// Latency is the agent's time to its answer's headers.
	Latency time.Duration
	// Release, if not nil, frees what Body or Stream borrow (a pooled
	// response); the pipeline calls it when the exchange is released.
	Release func()
}

// StreamBody is a streamed answer body.
type StreamBody interface {
	io.ReadCloser
	// CloseWithError ends the stream after the caller's side failed.
	CloseWithError(err error) error
}

// Check is one named step of the pipeline. Run returns nil to let the
// exchange go on, or the Refusal that ends it.
type Check interface {
	Name() string
	Run(ctx context.Context, x *Exchange) *Refusal
}

// CheckFunc makes a Check of a function.
func CheckFunc(name string, fn func(ctx context.Context, x *Exchange) *Refusal) Check {
	return checkFunc{name, fn}
}

type checkFunc struct {
	name string
	fn   func(ctx context.Context, x *Exchange) *Refusal
}

func (c checkFunc) Name() string                                  { return c.name }
func (c checkFunc) Run(ctx context.Context, x *Exchange) *Refusal { return c.fn(ctx, x) }

// UpstreamHeader calls fn for each request header line that goes on to the
// upstream (PROTOCOL §5): not hop-by-hop or named in Connection, not an
// X-IATP-* header, not the override token, not framing or Host, and not
// one the sidecar sets itself (the trace id, X-Forwarded-For; at egress
// the signature headers and Proxy-Authorization) — in any spelling. The
// sender then adds the sidecar's own, and x.Added.
func (x *Exchange) UpstreamHeader(fn func(name, value string)) {
	var conn []string
	for _, h := range x.Header {
		if wire.Same(h.Name, "connection") {
			wire.ConnectionTokens(h.Value, func(n string) { conn = append(conn, n) })
		}
	}
next:
	for _, h := range x.Header {
		n := h.Name
		if wire.IsHopByHop(n) || wire.IsIATP(n) || wire.Same(n, wire.Override) || wire.Same(n, wire.TraceID) ||
			wire.Same(n, wire.ForwardedFor) || wire.Same(n, "content-length") || wire.Same(n, "host") {
			continue
		}
		if x.Kind == Egress && (wire.Same(n, wire.Signature) || wire.Same(n, wire.SignatureInput) || wire.Same(n, wire.ContentDigest)) {
			continue
		}
		if (wire.Same(n, wire.Traceparent) || wire.Same(n, wire.Tracestate)) && x.Added.Has(wire.Traceparent) {
			continue // the sidecar's own span is the parent now
		}
		for _, c := range conn {
			if wire.Same(n, c) {
				continue next
			}
		}
		fn(n, h.Value)
	}
}

// ForwardedFor returns the X-Forwarded-For value to send on: the caller's
// list (one line at most, see Headers) with the peer's address appended.
func (x *Exchange) ForwardedFor() string {
	prior := x.Header.Get(wire.ForwardedFor)
	switch {
	case x.Peer == "":
		return prior
	case prior == "":
		return x.Peer
	}
	return prior + ", " + x.Peer
}
