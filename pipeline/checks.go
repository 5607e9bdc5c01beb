package pipeline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// ErrBodyTooLarge is the BodyErr of a body over the front's limit.
var ErrBodyTooLarge = errors.New("request body too large")

// Headers applies the header rules every listener shares (PROTOCOL §5): a
// header the sidecar reads may appear once, under one spelling; the trace
// id must follow its grammar and carry no sensitive data before it is used
// as a key or recorded. It sets x.TraceID: the caller's, or a new one.
type Headers struct {
	// NewTraceID makes a trace id when the caller sent none.
	NewTraceID func() string
}

// Name returns "headers".
func (Headers) Name() string { return "headers" }

// Run checks x's headers.
func (h Headers) Run(_ context.Context, x *Exchange) *Refusal {
	if r := h.ownedAndTrace(x); r != nil {
		return r
	}
	return fieldNames(x)
}

// fieldNames refuses a header or trailer whose name is not an RFC 9110
// token: passed on, a name a server downstream reads differently is a way
// around the header rules.
func fieldNames(x *Exchange) *Refusal {
	for _, fs := range [2]Fields{x.Header, x.Trailer} {
		for _, f := range fs {
			if !httpguts.ValidHeaderFieldName(f.Name) {
				return Refuse(http.StatusBadRequest, Header, fmt.Sprintf(
					"header name %q is not a valid field name (RFC 9110: letters, digits and !#$%%&'*+-.^_`|~ only)", clipName(f.Name)))
			}
		}
	}
	return nil
}

// ownedAndTrace applies the rule of owned headers and sets x.TraceID.
func (h Headers) ownedAndTrace(x *Exchange) *Refusal {
	for _, name := range wire.Owned {
		if n := x.Header.Count(name); n > 1 {
			return Refuse(http.StatusBadRequest, Header, fmt.Sprintf(
				"header %s appears %d times (spellings with '_' for '-' count as the same header); send it once", name, n))
		}
	}
	id := x.Header.Get(wire.TraceID)
	if id == "" {
		if !x.Header.Has(wire.TraceID) || x.TraceID == "" {
			x.TraceID = h.NewTraceID()
		}
		return nil
	}
	if reason := wire.CheckTraceID(id); reason != "" {
		x.TraceID = h.NewTraceID()
		return Refuse(http.StatusBadRequest, Header, reason)
	}
	if found := detect.ScanText([]byte(id)); found != 0 {
		x.TraceID = h.NewTraceID()
		return Refuse(http.StatusBadRequest, Header, wire.TraceID+" holds sensitive data ("+found.String()+"); use an opaque id such as a UUID")
	}
	x.TraceID = id
	return nil
}

// clipName shortens a header name for an error message, scrubbed.
func clipName(name string) string {
	if len(name) > 64 {
		name = name[:64] + "…"
	}
	return ScrubbedText(name)
}

// Route is the ingress route: POST /proxy or /proxy/…, with a path that
// can be appended to the agent's URL. It sets x.Sub and x.Upstream.
type Route struct {
	agentURL, base, query string
}

// NewRoute returns the route to the agent at agentURL: POST /proxy goes to
// agentURL exactly as written (the Python package's behaviour), POST
// /proxy/a/b to agentURL's path + "/a/b", and the request's query is
// appended to the agent URL's own. A fragment of agentURL is dropped: it
// is never sent, and a query appended after it would be lost.
func NewRoute(agentURL string) *Route {
	agentURL, _, _ = strings.Cut(agentURL, "#")
	base, query, _ := strings.Cut(agentURL, "?")
	return &Route{agentURL: agentURL, base: strings.TrimSuffix(base, "/"), query: query}
}

// Name returns "route".
func (*Route) Name() string { return "route" }

// Run checks the method and the path.
func (r *Route) Run(_ context.Context, x *Exchange) *Refusal {
	if x.Method != http.MethodPost {
		ref := Refuse(http.StatusMethodNotAllowed, Method, "method "+safeMethod(x.Method)+" not allowed: the protected call is POST /proxy")
		ref.Allow = http.MethodPost
		return ref
	}
	sub, ok := wire.SplitProxy(x.Path)
	if !ok {
		return Refuse(http.StatusNotFound, NoRoute, "no such endpoint: "+clip(x.Path)+" (the protected call is POST /proxy)")
	}
	if reason := wire.CheckSubpath(sub); reason != "" {
		return Refuse(http.StatusBadRequest, Path, reason)
	}
	x.Sub = sub
	target := r.agentURL
	if sub != "" {
		target = r.base + sub
		if r.query != "" {
			target += "?" + r.query
		}
	}
	if x.RawQuery != "" {
		if strings.Contains(target, "?") {
			target += "&" + x.RawQuery
		} else {
			target += "?" + x.RawQuery
		}
	}
	x.Upstream = target
	return nil
}

// ReadBody refuses an exchange whose body the front could not read: 413
// over the limit, 400 otherwise.
type ReadBody struct {
	// MaxBytes is the limit, named in the 413's message.
	MaxBytes int64
}

// Name returns "body".
func (ReadBody) Name() string { return "body" }

// Run refuses x when x.BodyErr is set.
func (b ReadBody) Run(_ context.Context, x *Exchange) *Refusal {
	switch {
	case x.BodyErr == nil:
		return nil
	case errors.Is(x.BodyErr, ErrBodyTooLarge):
		return TooLargeRefusal(b.MaxBytes)
	}
	r := Refuse(http.StatusBadRequest, BadBody, "cannot read the request body")
	r.Cause = x.BodyErr
	return r
}

// TooLargeRefusal is the 413 of a body over maxBytes.
func TooLargeRefusal(maxBytes int64) *Refusal {
	return Refuse(http.StatusRequestEntityTooLarge, TooLarge,
		"request body larger than "+strconv.FormatInt(maxBytes, 10)+" bytes (max_body_bytes)")
}

// Verifier authenticates the caller of a signed request.
type Verifier interface {
	VerifyAt(m identity.Message, now time.Time) (identity.Caller, error)
}

// Identify authenticates the caller by the request's signature (PROTOCOL
// §9) and sets x.Caller: an unsigned caller is "unknown", unless Require
// refuses it; a bad signature is refused.
type Identify struct {
	// Verifier checks signatures; nil refuses every signed request.
	Verifier Verifier
	// Require refuses unsigned requests.
	Require bool
	// Pinned reports whether an agent id's key is pinned in config.
	Pinned func(agentID string) bool
	// Reputation returns what the mesh holds about an agent.
	Reputation func(agentID string) policy.Reputation
	// Clock is the time signatures are checked at.
	Clock func() time.Time
}

// Name returns "identify".
func (Identify) Name() string { return "identify" }

// Run authenticates x's caller.
func (c Identify) Run(_ context.Context, x *Exchange) *Refusal {
	x.Caller = policy.Caller{AgentID: "unknown", TrustLevel: manifest.Unknown}
	if !x.Header.Has(wire.Signature) && !x.Header.Has(wire.SignatureInput) {
		if c.Require {
			return Refuse(http.StatusUnauthorized, Unauthenticated, "this sidecar accepts signed requests only (require_authenticated_callers): sign the request with HTTP Message Signatures (RFC 9421) as described in PROTOCOL §9")
		}
		return nil
	}
	if c.Verifier == nil {
		// A signature this sidecar has no key to check proves nothing: the
		// caller is unknown, exactly as if it had not signed (unless
		// signed callers are required).
		return c.unverifiable()
	}
	id, err := c.Verifier.VerifyAt(identity.Message{Method: x.Method, TargetURI: x.TargetURI,
		Header: x.Header.exact, Body: x.Body}, c.Clock())
	if errors.Is(err, identity.ErrUnknownKey) {
		return c.unverifiable()
	}
	if err != nil {
		r := Refuse(http.StatusUnauthorized, Unauthenticated, err.Error())
		r.Kind = recorder.KindBlocked
		r.Decision = "block"
		return r
	}
	pc := policy.Caller{AgentID: id.AgentID, Authenticated: id.Authenticated, Attested: id.Attested, TrustLevel: manifest.Standard}
	if c.Pinned != nil && c.Pinned(id.AgentID) {
		pc.TrustLevel = manifest.Trusted
	}
	if c.Reputation != nil {
		pc.Reputation = c.Reputation(id.AgentID)
	}
	x.Caller = pc
	return nil
}

// unverifiable answers a signature by a key this sidecar does not know:
// the caller counts as unknown; with Require, that is a 401.
func (c Identify) unverifiable() *Refusal {
	if c.Require {
		return Refuse(http.StatusUnauthorized, Unauthenticated, "request signature refused: this sidecar does not know the signer's key (configure it in trusted_agents, or send a v2 attestation by a trusted control plane)")
	}
	return nil
}

// exact returns every value of the header name compared case-insensitively
// but with '_' and '-' distinct, as RFC 9421 names components.
func (f Fields) exact(name string) []string {
	var out []string
	for i := range f {
		if strings.EqualFold(f[i].Name, name) {
			out = append(out, f[i].Value)
		}
	}
	return out
}

// Limiter is a rate limiter keyed by caller.
type Limiter interface {
	// Allow takes a token for key at now; when none is left it returns
	// false and the whole seconds to wait.
	Allow(key string, now time.Time) (ok bool, retryAfter int)
}

// RateLimit limits each caller: an authenticated agent by its id, anyone
// else by its address.
type RateLimit struct {
	Limiter   Limiter
	PerMinute int
	Clock     func() time.Time
}

// Name returns "rate_limit".
func (RateLimit) Name() string { return "rate_limit" }

// Run takes a token for x's caller.
func (l RateLimit) Run(_ context.Context, x *Exchange) *Refusal {
	if l.Limiter == nil {
		return nil
	}
	key := "ip:" + x.Peer
	if x.Caller.Authenticated {
		key = "agent:" + x.Caller.AgentID
	}
	if ok, retry := l.Limiter.Allow(key, l.Clock()); !ok {
		r := Refuse(http.StatusTooManyRequests, RateLimited, "rate limit exceeded: at most "+strconv.Itoa(l.PerMinute)+
			" requests per minute; retry after "+strconv.Itoa(retry)+"s")
		r.RetryAfter = retry
		r.Kind = recorder.KindBlocked
		r.Decision = "block"
		return r
	}
	return nil
}

// Decide asks the policy engine (PROTOCOL §3): a block rule refuses with
// 403; warnings are left in x.Decision for Override.
type Decide struct {
	Engine    *policy.Engine
	Direction policy.Direction
	// Manifest, when set, is the target, scored as written: the sidecar's
	// own agent at ingress (PROTOCOL §2). Otherwise an earlier check set
	// x.Target (egress discovery).
	Manifest *manifest.Manifest
}

// Name returns "policy".
func (Decide) Name() string { return "policy" }

// Run decides x.
func (d Decide) Run(ctx context.Context, x *Exchange) *Refusal {
	if d.Manifest != nil {
		x.Target = policy.Target{Manifest: d.Manifest}
		x.TargetID = d.Manifest.AgentID()
	}
	in := &x.policyIn // kept in x: a local would escape to the heap
	*in = policy.Input{
		Direction: d.Direction,
		Caller:    x.Caller,
		Target:    x.Target,
		Request:   policy.Request{Method: x.Method, Path: x.Path, Headers: &x.Header, Body: x.Value},
		Sensitive: x.Found,
		Require:   x.Require,
		Message:   x.Message,
	}
	dec, err := d.Engine.Decide(ctx, in)
	if err != nil {
		r := Refuse(http.StatusInternalServerError, PolicyError, "policy evaluation failed")
		r.Cause = err
		return r
	}
	x.Decision = dec
	if dec.Outcome == policy.Block {
		return x.withTarget(&Refusal{Status: http.StatusForbidden, Reason: Blocked, Msg: dec.Reason,
			Fields: map[string]any{"blocked": true, "blocked_by": dec.Rule},
			Kind:   recorder.KindBlocked, Decision: "block", Reasons: []string{dec.Rule, dec.Reason}})
	}
	return nil
}

// withTarget adds, at egress, what the handshake established about the
// target to a refusal: the local agent learns why.
func (x *Exchange) withTarget(r *Refusal) *Refusal {
	if x.Kind == Egress && x.Origin != "" {
		r.Fields["target"] = map[string]any{"agent_id": x.TargetID, "origin": x.Origin, "proven": x.Proven,
			"trust_score": x.Decision.TrustScore}
	}
	return r
}

// HeaderMap returns the headers for operator rules: names in lower case,
// repeated lines joined with ", " (RFC 9110 §5.3), credentials left out.
func (f *Fields) HeaderMap() map[string]string {
	return f.lowerMap()
}

func (f Fields) lowerMap() map[string]string {
	out := make(map[string]string, len(f))
	for _, h := range f {
		if wire.IsCredential(h.Name) {
			continue
		}
		k := strings.ToLower(h.Name)
		if v, ok := out[k]; ok {
			out[k] = v + ", " + h.Value
		} else {
			out[k] = h.Value
		}
	}
	return out
}

// Token is a human-held secret (PROTOCOL §6).
type Token interface {
	// IsSet reports whether overrides are enabled at all.
	IsSet() bool
	// Matches compares a presented value in constant time.
	Matches(presented string) bool
}

// Override turns warnings into a 449 unless the request carries the
// operator's override token; a request that goes ahead under an override
// is recorded as such, and quarantined when it must be (PROTOCOL §3, §6).
type Override struct {
	Token Token
	// Quarantine keeps a quarantine session and returns its id.
	Quarantine func(traceID, warning string, now time.Time) string
	Clock      func() time.Time
}

// Name returns "override".
func (Override) Name() string { return "override" }

// Run applies the warnings.
func (o Override) Run(ctx context.Context, x *Exchange) *Refusal {
	d := &x.Decision
	if d.Outcome == policy.Warn {
		presented := x.Header.Get(wire.Override)
		if presented == "" || !o.Token.Matches(presented) {
			return x.withTarget(o.warning(d, presented != ""))
		}
		x.Overridden = true
		var details []byte
		if d.Quarantine && o.Quarantine != nil {
			details, _ = EncodeJSON(map[string]any{"quarantine_session": o.Quarantine(x.TraceID, d.WarningText(), o.Clock())})
		}
		x.Quarantined = d.Quarantine
		x.Record(ctx, recorder.Record{Kind: recorder.KindUserOverride, Decision: "warn", Reasons: d.Warnings, Details: details})
		return nil
	}
	x.Quarantined = d.Quarantine
	return nil
}

func (o Override) warning(d *policy.Decision, tried bool) *Refusal {
	var msg string
	switch {
	case !o.Token.IsSet():
		msg = "This request requires user confirmation, but overrides are disabled on this sidecar: no strong override token is configured (IATP_TRUSTED_USER_OVERRIDE_TOKEN, at least 16 characters)."
	case tried:
		msg = "The X-User-Override header did not match this sidecar's override token. To proceed, retry with the header 'X-User-Override: <override token>' held by a human operator."
	default:
		msg = "This request requires user confirmation. To proceed, retry with the header 'X-User-Override: <override token>' — the secret configured on this sidecar as IATP_TRUSTED_USER_OVERRIDE_TOKEN, held by a human operator."
	}
	return &Refusal{Status: wire.StatusWarning, Reason: Warned, Msg: "Request requires user confirmation",
		Fields: map[string]any{"warning": d.WarningText(), "trust_score": d.TrustScore, "requires_override": true, "message": msg},
		Kind:   recorder.KindWarning, Decision: "warn", Reasons: d.Warnings}
}

// RecordRequest writes the request record before anything is forwarded
// (PROTOCOL §7); if it cannot, the request is not forwarded.
type RecordRequest struct{}

// Name returns "record".
func (RecordRequest) Name() string { return "record" }

// Run records x.
func (RecordRequest) Run(ctx context.Context, x *Exchange) *Refusal {
	outcome := "allow"
	if x.Decision.Outcome == policy.Warn {
		outcome = "warn"
	}
	err := x.Record(ctx, recorder.Record{Kind: recorder.KindRequest, Decision: outcome, Reasons: x.Decision.Warnings,
		Payload: x.Payload, Details: requestDetails(x, "")})
	if err != nil {
		r := Refuse(http.StatusInternalServerError, RecordFailed, "the flight recorder cannot record this request, so it was not forwarded")
		r.Cause = err
		r.Unrecorded = true
		return r
	}
	return nil
}

// clip keeps an untrusted value short and printable in messages.
func clip(v string) string {
	const n = 128
	if len(v) > n {
		v = v[:n] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return '?'
		}
		return r
	}, v)
}

// Clip keeps an untrusted value short and printable in messages.
func Clip(v string) string { return clip(v) }
