package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/recorder"
	"github.com/iatp/iatp/reputation"
)

// bufferLimit is the largest answer of known length that is read whole
// before it is relayed; larger answers, and answers of unknown length
// (chunked, server-sent events), are streamed to the caller as they come.
const bufferLimit = 64 << 10

// hopHeaders are connection-level headers that a proxy never passes on
// (RFC 9110 §7.6.1).
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// stripCallerHeaders removes what a caller may not pass to the agent: the
// override token, a human's secret, and every X-IATP-* header, which only
// the sidecar sets (a caller must not be able to claim an identity).
func stripCallerHeaders(h *fasthttp.RequestHeader) {
	h.Del(headerOverride)
	var iatp [][]byte // nil, so no allocation, for the usual request with none
	for k := range h.All() {
		if len(k) > 7 && bytes.EqualFold(k[:7], []byte("X-Iatp-")) {
			iatp = append(iatp, append([]byte(nil), k...))
		}
	}
	for _, k := range iatp {
		h.DelBytes(k)
	}
}

// newAgentClient builds the pooled keep-alive client to the agent. The
// settings are the ones measured in docs/http-stack.md.
func newAgentClient(addr string, isTLS bool, cfg Config) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                      addr,
		IsTLS:                     isTLS,
		MaxConns:                  cfg.MaxConnsPerAgent,
		MaxConnWaitTimeout:        2 * time.Second,
		MaxIdleConnDuration:       50 * time.Second,
		ReadBufferSize:            16 << 10, // also the largest response header accepted
		WriteBufferSize:           16 << 10,
		WriteTimeout:              30 * time.Second,
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true, // the sub-path was checked and is passed on as the caller wrote it
		MaxIdemponentCallAttempts: 1,
		StreamResponseBody:        true,
		// A POST is not retried, except when a keep-alive connection the
		// agent closed while idle fails before anything was sent.
		RetryIfErr: func(_ *fasthttp.Request, attempts int, err error) (bool, bool) {
			return false, attempts < 2 && (errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed))
		},
	}
}

// forward sends req to the agent and returns its answer in a pooled
// response: whole when it is small and of known length, else as a body
// stream. On failure it records the failure, counts it against the agent's
// reputation and returns the 502 or 504 to answer with.
func (s *Sidecar) forward(ctx context.Context, v *verdict, req *fasthttp.Request, stream bool, remoteIP string) (*fasthttp.Response, time.Duration, *httpError) {
	h := &req.Header
	for _, k := range hopHeaders {
		h.Del(k)
	}
	stripCallerHeaders(h)
	h.ResetConnectionClose()
	req.SetRequestURI(v.agentURL)
	req.UseHostHeader = false
	h.Set(headerTraceID, v.traceID)
	if v.caller.Authenticated {
		h.Set(headerCallerID, v.caller.AgentID)
		h.Set(headerCallerAttested, strconv.FormatBool(v.caller.Attested))
	}
	if remoteIP != "" {
		if prior := h.Peek("X-Forwarded-For"); len(prior) > 0 {
			h.Set("X-Forwarded-For", string(prior)+", "+remoteIP)
		} else {
			h.Set("X-Forwarded-For", remoteIP)
		}
	}
	if s.cfg.RedactForwarded {
		req.SetBody(v.body)
	}
	timeout := v.timeout
	if stream {
		timeout = s.cfg.StreamTimeout
	}
	resp := fasthttp.AcquireResponse()
	start := time.Now()
	err := s.client.DoTimeout(req, resp, timeout)
	latency := time.Since(start)
	if err == nil && resp.IsBodyStream() {
		if cl := resp.Header.ContentLength(); cl >= 0 && cl <= bufferLimit {
			err = readWhole(resp, cl)
		}
	}
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, latency, s.agentFailed(ctx, v, err, latency, timeout)
	}
	s.metrics.latency.Observe(latency.Seconds())
	return resp, latency, nil
}

// readWhole reads a streamed body of known length into resp's own buffer
// and gives the agent connection back to the pool.
func readWhole(resp *fasthttp.Response, cl int) error {
	buf := make([]byte, cl)
	if _, err := io.ReadFull(resp.BodyStream(), buf); err != nil {
		if c, ok := resp.BodyStream().(fasthttp.ReadCloserWithError); ok {
			_ = c.CloseWithError(err)
		}
		return err
	}
	if err := resp.CloseBodyStream(); err != nil {
		return err
	}
	resp.SetBodyRaw(buf)
	return nil
}

// agentFailed records a failed exchange with the agent and builds the
// answer: 504 when it was slower than allowed, 502 otherwise, both with the
// recovery the caller may attempt.
func (s *Sidecar) agentFailed(ctx context.Context, v *verdict, err error, latency, timeout time.Duration) *httpError {
	var ne net.Error
	timedOut := errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) || (errors.As(err, &ne) && ne.Timeout())
	// The error may quote the agent's answer; only its scrubbed, bounded
	// description is kept, sent, logged or recorded.
	described := describeAgentError(err)
	e := &httpError{status: http.StatusBadGateway, msg: "Backend agent error: " + described, cause: errors.New(described)}
	kind := reputation.TypeError
	if timedOut {
		e.status, e.msg, kind = http.StatusGatewayTimeout, "Backend agent timeout: no answer within "+timeout.String()+s.slaNote(timeout), reputation.TypeTimeout
	}
	rec := s.recovery(kind)
	e.fields = map[string]any{"recovery": rec}
	s.metrics.upstream.WithLabelValues(kind).Inc()
	details, _ := json.Marshal(map[string]any{"error": described, "timeout_ms": timeout.Milliseconds(), "recovery": rec})
	s.record(ctx, &recorder.Record{Kind: recorder.KindError, TraceID: v.traceID, Decision: v.decision.Outcome.String(),
		Reasons: []string{e.msg}, Status: e.status, LatencyMs: ms(latency), Details: details}, v.caller, s.cfg.Clock())
	s.recordOwnReputation(ctx, v.traceID, kind)
	return e
}

func (s *Sidecar) slaNote(timeout time.Duration) string {
	if sla := s.cfg.Manifest.Capabilities.SLALatencyMs; sla > 0 && timeout == time.Duration(sla)*time.Millisecond {
		return " (the agent's SLA, capabilities.sla_latency_ms)"
	}
	return ""
}

func describeAgentError(err error) string {
	switch {
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "every connection to the agent is busy (max_conns_per_agent)"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the agent closed the connection before answering"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return "cannot connect to the agent: " + oe.Err.Error()
	}
	// The error may quote the agent's malformed answer: scrub and bound it.
	return scrubbedText(err.Error())
}

// recoveryAdvice is the "recovery" member of 502 and 504 answers.
type recoveryAdvice struct {
	Strategy  string `json:"strategy"` // retry | give_up
	Reason    string `json:"reason"`
	Message   string `json:"message"`
	BackoffMs int    `json:"backoff_ms,omitempty"`
}

// recovery says what the caller may do after a failed exchange: retry when
// the agent is idempotent (a repeat is harmless) or reversible (a repeat can
// be undone), give up otherwise.
func (s *Sidecar) recovery(failure string) recoveryAdvice {
	m := s.cfg.Manifest
	id := m.AgentID()
	switch {
	case m.Capabilities.Idempotency:
		return recoveryAdvice{Strategy: "retry", Reason: failure, BackoffMs: 1000,
			Message: "agent '" + id + "' is idempotent: retrying with the same X-Agent-Trace-ID is safe; back off before retrying"}
	case m.Reversibility.Level.Reversible():
		return recoveryAdvice{Strategy: "retry", Reason: failure, BackoffMs: 1000,
			Message: "agent '" + id + "' is not idempotent but supports " + string(m.Reversibility.Level) + " reversal: a retry may repeat the action, which can then be undone"}
	}
	return recoveryAdvice{Strategy: "give_up", Reason: failure,
		Message: "agent '" + id + "' is neither idempotent nor reversible: the request may have been carried out, and a retry could repeat it for good; check with the agent's operator before retrying"}
}

// setAnswerHeaders sets the sidecar's headers on the agent's answer,
// replacing any the agent set itself.
func (s *Sidecar) answerHeaders(v *verdict, latency time.Duration, set func(k, v string), del func(k string)) {
	set(headerTraceID, v.traceID)
	set(headerTrustScore, strconv.Itoa(v.decision.TrustScore))
	set(headerLatency, strconv.FormatInt(latency.Milliseconds(), 10))
	if v.quarantined {
		set(headerQuarantined, "true")
	} else {
		del(headerQuarantined)
	}
}

// answered records the agent's answer — a bounded, scrubbed copy of the
// body — and counts it for the agent's reputation. For a buffered answer
// it runs before the answer is relayed; for a streamed one, when the
// stream ends.
func (s *Sidecar) answered(ctx context.Context, v *verdict, status int, contentType []byte, latency time.Duration, body []byte, total int64, truncated, streamed bool, bodyErr error) {
	payload := s.scrubAnswer(body, contentType, truncated)
	// Built by hand: this runs for every answer.
	details := make([]byte, 0, 64)
	details = append(details, `{"bytes":`...)
	details = strconv.AppendInt(details, total, 10)
	if streamed {
		details = append(details, `,"streamed":true`...)
	}
	if truncated {
		details = append(details, `,"truncated":true`...)
	}
	if bodyErr != nil {
		msg, _ := json.Marshal(scrubbedText(bodyErr.Error()))
		details = append(append(details, `,"body_error":`...), msg...)
	}
	details = append(details, '}')
	s.record(ctx, &recorder.Record{Kind: recorder.KindResponse, TraceID: v.traceID, Decision: v.decision.Outcome.String(),
		Payload: payload, Status: status, LatencyMs: ms(latency), Details: details}, v.caller, s.cfg.Clock())
	s.metrics.answer(status)
	switch {
	case bodyErr != nil:
		s.recordOwnReputation(ctx, v.traceID, reputation.TypeError)
	case status >= 200 && status < 300:
		s.recordOwnReputation(ctx, v.traceID, reputation.TypeSuccess)
	}
}

// scrubAnswer returns the scrubbed copy of an answer's body to record:
// JSON as JSON when it is whole and valid, anything else as a string.
func (s *Sidecar) scrubAnswer(body, contentType []byte, truncated bool) json.RawMessage {
	if len(body) == 0 {
		return nil
	}
	if !truncated && bytes.Contains(contentType, []byte("json")) {
		if out, _, err := detect.ScrubJSON(nil, body, detect.Options{MaxDepth: s.cfg.MaxJSONDepth}); err == nil {
			return s.boundedPayload(out, s.cfg.MaxResponseRecord)
		}
	}
	if truncated {
		// Cut at a word boundary, so a number split by the cut is not kept half.
		if i := bytes.LastIndexAny(body[max(0, len(body)-64):], " \t\r\n,;:\"'{}[]()<>"); i >= 0 {
			body = body[:max(0, len(body)-64)+i]
		}
	}
	return s.textPayload(body, s.cfg.MaxResponseRecord)
}

// recordOwnReputation counts one exchange for the protected agent.
func (s *Sidecar) recordOwnReputation(ctx context.Context, traceID, kind string) {
	_, err := s.rep.Record(ctx, reputation.Event{AgentID: s.cfg.Manifest.AgentID(), Type: kind, TraceID: traceID, DetectedBy: "iatp"})
	if err != nil && !errors.Is(err, reputation.ErrDuplicateEvent) {
		s.log.Warn("reputation: cannot record", "agent_id", s.cfg.Manifest.AgentID(), "err", err)
	}
}

// acceptsEventStream reports whether the caller asked for server-sent events.
func acceptsEventStream(accept []byte) bool {
	return bytes.Contains(accept, []byte("text/event-stream"))
}

// teeStream relays a streamed answer and keeps a bounded copy for the
// record, which it writes when the stream ends.
type teeStream struct {
	s       *Sidecar
	v       *verdict
	resp    *fasthttp.Response // the agent's answer, released on close
	src     io.Reader
	status  int
	ctype   []byte
	latency time.Duration
	kept    []byte
	total   int64
	readErr error
	closed  bool
}

func (t *teeStream) Read(p []byte) (int, error) {
	n, err := t.src.Read(p)
	if n > 0 {
		t.total += int64(n)
		if room := t.s.cfg.MaxResponseRecord - len(t.kept); room > 0 {
			t.kept = append(t.kept, p[:min(n, room)]...)
		}
	}
	if err != nil && err != io.EOF {
		t.readErr = err
	}
	return n, err
}

// Close ends the relay: the agent connection goes back to the pool (or is
// closed, on error) and the answer is recorded.
func (t *teeStream) Close() error { return t.CloseWithError(nil) }

// CloseWithError ends the relay after the caller's side failed.
func (t *teeStream) CloseWithError(err error) error {
	if t.closed {
		return nil
	}
	t.closed = true
	if err == nil {
		err = t.readErr
	}
	var cerr error
	if c, ok := t.resp.BodyStream().(fasthttp.ReadCloserWithError); ok && err != nil {
		cerr = c.CloseWithError(err)
	} else {
		cerr = t.resp.CloseBodyStream()
	}
	truncated := t.total > int64(len(t.kept))
	t.s.answered(context.Background(), t.v, t.status, t.ctype, t.latency, t.kept, t.total, truncated, true, err)
	fasthttp.ReleaseResponse(t.resp)
	t.v.release()
	return cerr
}

func newTeeStream(s *Sidecar, v *verdict, resp *fasthttp.Response, latency time.Duration) *teeStream {
	return &teeStream{s: s, v: v, resp: resp, src: resp.BodyStream(), status: resp.StatusCode(),
		ctype: append([]byte(nil), resp.Header.ContentType()...), latency: latency}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
