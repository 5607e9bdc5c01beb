package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// The checks of POST /proxy, in their fixed, observable order (PROTOCOL §3
// and §5). admit runs steps 1–9; the HTTP front end then forwards and
// relays, and finish records the answer:
//
//  1. method                  405 unless POST
//  2. X-Agent-Trace-ID        400 when malformed
//  3. path                    400 when /proxy/… holds dot segments
//  4. body size               413 beyond MaxBodyBytes, without reading it all
//  5. caller identity         401 on a bad signature, or unsigned when required
//  6. rate limit              429 with Retry-After, per caller
//  7. JSON parse + detection  400 (invalid JSON, too deep, invalid UTF-8)
//  8. policy                  403 block rules, operator rules, 449 warnings
//     unless a valid X-User-Override, quarantine
//  9. record the request      (written before forwarding; 500 if it cannot be)
//  10. forward                502 agent unreachable, 504 slower than the SLA
//  11. record the answer      before it goes back (streamed: when it ends)
//
// Every refusal is recorded with the scrubbed payload when there is one.

// inbound is what admit reads of a POST /proxy request, whatever the server.
type inbound struct {
	method  string
	subpath string // escaped path after /proxy: "" or "/a/b"
	query   string
	header  func(name string) string
	// headerValues returns every value of a header, for signature checks.
	headerValues func(name string) []string
	// headers lists every header, names lower-cased, for operator rules.
	headers func() map[string]string
	// contentLength is the declared body length, -1 when unknown.
	contentLength int64
	// readBody reads the whole body, failing with errBodyTooLarge past limit.
	readBody func(limit int64) ([]byte, error)
	// remoteIP keys the rate limit of unauthenticated callers.
	remoteIP string
	// targetURI returns the URI the caller addressed, for signature checks.
	targetURI func() string
}

var errBodyTooLarge = errors.New("request body too large")

// verdict is admit's decision on a request that goes ahead.
type verdict struct {
	traceID     string
	started     time.Time
	body        []byte // what is forwarded
	caller      policy.Caller
	decision    policy.Decision
	quarantined bool
	agentURL    string // the URL to forward to
	timeout     time.Duration
	scrubBuf    *[]byte // pooled buffer of the scrubbed payload; see release
}

// release returns the verdict's pooled buffer. It may be called more than
// once; the scrubbed payload (and a redacted body) must not be used after.
func (v *verdict) release() {
	if v.scrubBuf != nil {
		*v.scrubBuf = (*v.scrubBuf)[:0]
		scrubPool.Put(v.scrubBuf)
		v.scrubBuf = nil
	}
}

// scrubPool recycles the buffers that hold scrubbed payloads.
var scrubPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// admit runs the checks before forwarding. On refusal it has recorded the
// refusal and returns the error to answer with, and the trace id.
func (s *Sidecar) admit(ctx context.Context, in *inbound) (*verdict, string, *httpError) {
	now := s.cfg.Clock()
	traceID := in.header(headerTraceID)
	if in.method != http.MethodPost {
		id := s.fallbackTraceID(traceID)
		e := &httpError{status: http.StatusMethodNotAllowed, allow: http.MethodPost,
			msg: "method " + clipText(in.method) + " not allowed: the protected call is POST /proxy"}
		s.recordRefusal(ctx, recorder.KindError, id, policy.Caller{}, e, nil, now)
		return nil, id, e
	}
	if traceID == "" {
		traceID = newTraceID()
	} else if reason := validTraceID(traceID); reason != "" {
		id := newTraceID()
		e := errorf(http.StatusBadRequest, reason)
		s.recordRefusal(ctx, recorder.KindError, id, policy.Caller{}, e, nil, now)
		return nil, id, e
	}
	v := &verdict{traceID: traceID, started: now, timeout: s.timeout}
	target, e := s.agentTarget(in.subpath, in.query)
	if e != nil {
		s.recordRefusal(ctx, recorder.KindError, traceID, policy.Caller{}, e, nil, now)
		return nil, traceID, e
	}
	v.agentURL = target

	if in.contentLength > s.cfg.MaxBodyBytes {
		e := s.tooLarge()
		s.recordRefusal(ctx, recorder.KindError, traceID, policy.Caller{}, e, nil, now)
		return nil, traceID, e
	}
	body, err := in.readBody(s.cfg.MaxBodyBytes)
	if err != nil {
		var e *httpError
		if errors.Is(err, errBodyTooLarge) {
			e = s.tooLarge()
		} else {
			e = &httpError{status: http.StatusBadRequest, msg: "cannot read the request body", cause: err}
		}
		s.recordRefusal(ctx, recorder.KindError, traceID, policy.Caller{}, e, nil, now)
		return nil, traceID, e
	}

	caller, e := s.authenticate(in, body, now)
	if e != nil {
		s.recordRefusal(ctx, recorder.KindBlocked, traceID, caller, e, nil, now)
		return nil, traceID, e
	}
	v.caller = caller

	if s.limiter != nil {
		key := "ip:" + in.remoteIP
		if caller.Authenticated {
			key = "agent:" + caller.AgentID
		}
		if ok, retry := s.limiter.allow(key, now); !ok {
			e := &httpError{status: http.StatusTooManyRequests, retryAfter: retry,
				msg: "rate limit exceeded: at most " + itoa(s.rateLimitPerMinute) + " requests per minute; retry after " + itoa(retry) + "s"}
			s.recordRefusal(ctx, recorder.KindBlocked, traceID, caller, e, nil, now)
			return nil, traceID, e
		}
	}

	v.scrubBuf = scrubPool.Get().(*[]byte)
	scrubbed, found, err := detect.ScrubJSON((*v.scrubBuf)[:0], body, detect.Options{MaxDepth: s.cfg.MaxJSONDepth})
	*v.scrubBuf = scrubbed
	if err != nil {
		e := errorf(http.StatusBadRequest, "Invalid JSON payload: "+err.Error())
		s.recordRefusal(ctx, recorder.KindError, traceID, caller, e, s.textPayload(body, s.cfg.MaxRecordPayload), now)
		v.release()
		return nil, traceID, e
	}
	payload := s.boundedPayload(scrubbed, s.cfg.MaxRecordPayload)
	v.body = body
	if s.cfg.RedactForwarded {
		v.body = scrubbed
	}

	in2 := policy.Input{
		Direction: policy.Ingress,
		Caller:    caller,
		// The sidecar's own manifest is scored as written (PROTOCOL §2). Its
		// agent's reputation is kept for the mesh, but lowering the agent's
		// own score with it would turn an outage into a lock-out: failures
		// lower the score, warnings stop every call, and no success can
		// ever raise it again.
		Target:    policy.Target{Manifest: s.cfg.Manifest},
		Request:   policy.Request{Method: in.method, Path: "/proxy" + in.subpath, Headers: in.headers},
		Sensitive: found,
	}
	if s.engine.NeedsBody() {
		in2.Request.Body = body
	}
	d, err := s.engine.Decide(ctx, &in2)
	if err != nil {
		e := &httpError{status: http.StatusInternalServerError, msg: "policy evaluation failed", cause: err}
		s.recordRefusal(ctx, recorder.KindError, traceID, caller, e, payload, now)
		v.release()
		return nil, traceID, e
	}
	v.decision = d
	s.metrics.decided(d.Outcome.String())
	switch d.Outcome {
	case policy.Block:
		e := &httpError{status: http.StatusForbidden, msg: d.Reason, fields: map[string]any{"blocked": true, "blocked_by": d.Rule}}
		s.metrics.blocked.WithLabelValues(d.Rule).Inc()
		s.record(ctx, &recorder.Record{Kind: recorder.KindBlocked, TraceID: traceID, Decision: "block",
			Reasons: []string{d.Rule, d.Reason}, Payload: payload, Status: e.status}, caller, now)
		v.release()
		return nil, traceID, e
	case policy.Warn:
		override := in.header(headerOverride)
		if override == "" || !s.override.matches(override) {
			e := s.warning(traceID, &d, override != "")
			s.record(ctx, &recorder.Record{Kind: recorder.KindWarning, TraceID: traceID, Decision: "warn",
				Reasons: d.Warnings, Payload: payload, Status: e.status}, caller, now)
			v.release()
			return nil, traceID, e
		}
		// A valid override lets the request go ahead, quarantined if it must be.
		s.metrics.decided("override")
		var details json.RawMessage
		if d.Quarantine {
			sess := s.quarantine.add(traceID, d.WarningText(), s.manifestDoc, now)
			details, _ = json.Marshal(map[string]any{"quarantine_session": sess.SessionID})
		}
		s.record(ctx, &recorder.Record{Kind: recorder.KindUserOverride, TraceID: traceID, Decision: "warn",
			Reasons: d.Warnings, Details: details}, caller, now)
	}
	v.quarantined = d.Quarantine

	// The request record is on disk before anything reaches the agent.
	details, _ := json.Marshal(requestDetails{Method: in.method, Path: "/proxy" + in.subpath, TrustScore: d.TrustScore,
		Quarantined: v.quarantined, Rule: d.Rule, Sensitive: found.Names()})
	outcome := "allow"
	if d.Outcome == policy.Warn {
		outcome = "warn"
	}
	if err := s.recordErr(ctx, &recorder.Record{Kind: recorder.KindRequest, TraceID: traceID, Decision: outcome,
		Reasons: d.Warnings, Payload: payload, Details: details}, caller, now); err != nil {
		v.release()
		return nil, traceID, &httpError{status: http.StatusInternalServerError,
			msg: "the flight recorder cannot record this request, so it was not forwarded", cause: err}
	}
	return v, traceID, nil
}

// requestDetails are the details of a request record.
type requestDetails struct {
	Method      string   `json:"method"`
	Path        string   `json:"path"`
	TrustScore  int      `json:"trust_score"`
	Quarantined bool     `json:"quarantined,omitempty"`
	Rule        string   `json:"rule,omitempty"`
	Sensitive   []string `json:"sensitive,omitempty"`
}

// warning builds the 449 answer.
func (s *Sidecar) warning(traceID string, d *policy.Decision, triedOverride bool) *httpError {
	var msg string
	switch {
	case !s.override.set:
		msg = "This request requires user confirmation, but overrides are disabled on this sidecar: no strong override token is configured (IATP_TRUSTED_USER_OVERRIDE_TOKEN, at least 16 characters)."
	case triedOverride:
		msg = "The X-User-Override header did not match this sidecar's override token. To proceed, retry with the header 'X-User-Override: <override token>' held by a human operator."
	default:
		msg = "This request requires user confirmation. To proceed, retry with the header 'X-User-Override: <override token>' — the secret configured on this sidecar as IATP_TRUSTED_USER_OVERRIDE_TOKEN, held by a human operator."
	}
	return &httpError{status: statusWarning, msg: "Request requires user confirmation", fields: map[string]any{
		"warning": d.WarningText(), "trust_score": d.TrustScore, "requires_override": true, "message": msg,
	}}
}

// statusWarning is the protocol's "retry with user override" status.
const statusWarning = 449

func (s *Sidecar) tooLarge() *httpError {
	return errorf(http.StatusRequestEntityTooLarge, "request body larger than "+itoa64(s.cfg.MaxBodyBytes)+" bytes (max_body_bytes)")
}

// authenticate verifies the caller's request signature, if any.
func (s *Sidecar) authenticate(in *inbound, body []byte, now time.Time) (policy.Caller, *httpError) {
	anonymous := policy.Caller{AgentID: "unknown", TrustLevel: manifest.Unknown}
	if in.header("Signature") == "" && in.header("Signature-Input") == "" {
		if s.cfg.RequireAuthenticatedCallers {
			return anonymous, errorf(http.StatusUnauthorized, "this sidecar accepts signed requests only (require_authenticated_callers): sign the request with HTTP Message Signatures (RFC 9421) as described in PROTOCOL §9")
		}
		return anonymous, nil
	}
	if s.verifier == nil {
		return anonymous, errorf(http.StatusUnauthorized, "request signature refused: this sidecar knows no caller keys (configure trusted_agents or control_plane_keys)")
	}
	c, err := s.verifier.VerifyAt(identity.Message{Method: in.method, TargetURI: in.targetURI(), Header: in.headerValues, Body: body}, now)
	if err != nil {
		return anonymous, &httpError{status: http.StatusUnauthorized, msg: err.Error()}
	}
	pc := policy.Caller{AgentID: c.AgentID, Authenticated: c.Authenticated, Attested: c.Attested, TrustLevel: manifest.Standard}
	if _, pinned := s.cfg.TrustedAgents[c.AgentID]; pinned {
		pc.TrustLevel = manifest.Trusted
	}
	pc.Reputation = s.reputationOf(c.AgentID)
	return pc, nil
}

// agentTarget builds the URL to forward to: the agent URL exactly for
// /proxy, plus the sub-path for /proxy/a/b, plus the request's query.
func (s *Sidecar) agentTarget(subpath, query string) (string, *httpError) {
	target := s.cfg.AgentURL
	if subpath != "" && subpath != "/" {
		for _, seg := range strings.Split(subpath[1:], "/") {
			dec, err := url.PathUnescape(seg)
			if err != nil || dec == "." || dec == ".." || strings.ContainsAny(dec, "/\\") {
				return "", errorf(http.StatusBadRequest, "the path after /proxy must not hold '.', '..' or encoded slashes: it is appended to the agent URL")
			}
		}
		target = strings.TrimSuffix(s.agentBase, "/") + subpath + s.agentQuery
	}
	if query != "" {
		if strings.Contains(target, "?") {
			target += "&" + query
		} else {
			target += "?" + query
		}
	}
	return target, nil
}

// boundedPayload returns the scrubbed payload to record, or a summary when
// it is larger than MaxRecordPayload, so that a record always fits the
// recorder's limit.
func (s *Sidecar) boundedPayload(scrubbed []byte, limit int) json.RawMessage {
	if len(scrubbed) <= limit {
		return scrubbed
	}
	sum := sha256.Sum256(scrubbed)
	b, _ := json.Marshal(map[string]any{"truncated": true, "bytes": len(scrubbed), "scrubbed_sha256": hex.EncodeToString(sum[:])})
	return b
}

// textPayload returns a scrubbed copy of a body that is not JSON, as a JSON
// string of at most limit bytes of text (a summary when escaping makes it
// longer than limit).
func (s *Sidecar) textPayload(body []byte, limit int) json.RawMessage {
	if len(body) > limit {
		body = body[:limit]
	}
	scrubbed, _ := detect.ScrubText(nil, body)
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false) // <, > and & stay one byte each
	_ = e.Encode(strings.ToValidUTF8(string(scrubbed), "\uFFFD"))
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	return s.boundedPayload(b, limit+limit/4+64)
}

// fallbackTraceID keeps a valid trace id for an early refusal.
func (s *Sidecar) fallbackTraceID(id string) string {
	if id != "" && validTraceID(id) == "" {
		return id
	}
	return newTraceID()
}

// recordRefusal records a refusal made before the policy ran.
func (s *Sidecar) recordRefusal(ctx context.Context, kind recorder.Kind, traceID string, caller policy.Caller, e *httpError, payload json.RawMessage, now time.Time) {
	s.metrics.refused.WithLabelValues(itoa(e.status)).Inc()
	decision := "block"
	if kind == recorder.KindError {
		decision = ""
	}
	s.record(ctx, &recorder.Record{Kind: kind, TraceID: traceID, Decision: decision, Reasons: []string{e.msg},
		Payload: payload, Status: e.status}, caller, now)
}

// record appends r, logging a failure; for refusals, which are answered
// whatever the recorder says.
func (s *Sidecar) record(ctx context.Context, r *recorder.Record, caller policy.Caller, now time.Time) {
	if err := s.recordErr(ctx, r, caller, now); err != nil {
		s.log.Error("flight recorder: cannot record", "kind", r.Kind, "trace_id", r.TraceID, "err", err)
	}
}

func (s *Sidecar) recordErr(ctx context.Context, r *recorder.Record, caller policy.Caller, now time.Time) error {
	r.Time = now
	r.AgentID = s.cfg.Manifest.AgentID()
	if caller.AgentID != "" {
		r.CallerID = caller.AgentID
	}
	r.Authenticated, r.Attested = caller.Authenticated, caller.Attested
	// A record is written even when the request's context is done (the
	// caller went away, or the server is shutting down): what was decided
	// or answered is never dropped.
	_, err := s.rec.Append(context.WithoutCancel(ctx), r)
	if err != nil {
		s.metrics.recorded.Inc()
	}
	return err
}
