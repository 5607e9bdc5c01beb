package sidecar

import (
	"context"
	"errors"
	"io"
	"iter"
	"log/slog"
	"net"
	"strconv"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
	"github.com/iatp/iatp/reputation"
)

// newIngress builds the ingress pipeline with this sidecar's settings.
func (s *Sidecar) newIngress() *pipeline.Pipeline {
	return pipeline.New(pipeline.Config{
		Recorder: s.rec, AgentID: s.cfg.Manifest.AgentID(), Observer: s, Clock: s.cfg.Clock, Tracer: s.tracer(),
		OnRecordError: func(r *recorder.Record, err error) {
			s.metrics.recorded.Inc()
			s.log.Error("flight recorder: cannot record", "kind", r.Kind, "trace_id", r.TraceID, "err", err)
		},
	}, s.ingressChecks()...)
}

// ingressChecks returns pipeline.IngressChecks with this sidecar's settings.
func (s *Sidecar) ingressChecks() []pipeline.Check {
	cfg := s.cfg
	c := pipeline.IngressConfig{
		AgentURL:     cfg.AgentURL,
		Manifest:     cfg.Manifest,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Identify: pipeline.Identify{
			Require:    cfg.RequireAuthenticatedCallers,
			Pinned:     func(id string) bool { _, ok := cfg.TrustedAgents[id]; return ok },
			Reputation: s.reputationOf,
			Clock:      cfg.Clock,
		},
		RateLimit: pipeline.RateLimit{PerMinute: cfg.RateLimitPerMinute, Clock: cfg.Clock},
		Parse: pipeline.Parse{MaxDepth: cfg.MaxJSONDepth, Value: s.engine.NeedsBody(),
			MaxRecordPayload: cfg.MaxRecordPayload, RedactForwarded: cfg.RedactForwarded},
		Engine: s.engine,
		Override: pipeline.Override{Token: s.override, Clock: cfg.Clock,
			Quarantine: func(traceID, warning string, now time.Time) string {
				return s.quarantine.add(traceID, warning, s.manifestDoc, now).SessionID
			}},
		Forward: pipeline.Forward{Sender: agentSender{s}, MaxRecord: cfg.MaxResponseRecord,
			MaxJSONDepth: cfg.MaxJSONDepth, Outcome: s.outcome, Clock: cfg.Clock},
		NewTraceID: pipeline.NewTraceID,
	}
	if s.verifier != nil {
		c.Identify.Verifier = s.verifier
	}
	if l := newRateLimiter(cfg.RateLimitPerMinute, cfg.RateLimitBurst); l != nil {
		c.RateLimit.Limiter = l
	}
	return pipeline.IngressChecks(c)
}

// agentSender sends allowed requests to the protected agent.
type agentSender struct{ s *Sidecar }

// Send forwards x to the agent: the caller's headers under the header
// rules, the sidecar's own (trace id, caller identity, X-Forwarded-For),
// and the body as it was checked.
func (a agentSender) Send(ctx context.Context, x *pipeline.Exchange) (*pipeline.Answer, *pipeline.Refusal) {
	s := a.s
	req := upstreamRequest(x)
	defer fasthttp.ReleaseRequest(req)
	if x.Caller.Authenticated {
		req.Header.Set(wire.CallerID, x.Caller.AgentID)
		req.Header.Set(wire.CallerAttested, strconv.FormatBool(x.Caller.Attested))
	}
	if xff := x.ForwardedFor(); xff != "" {
		req.Header.Set(wire.ForwardedFor, xff)
	}
	timeout := answerTimeout(x, s.timeout, s.cfg.StreamTimeout)
	ans, err := exchangeWith(ctx, s.agent, req, timeout)
	if err != nil {
		return nil, s.agentFailed(x, err, timeout, s.slaNote(timeout))
	}
	s.metrics.latency.Observe(ans.Latency.Seconds())
	return ans, nil
}

// agentFailed builds the refusal of a failed exchange with an upstream.
func (s *Sidecar) agentFailed(x *pipeline.Exchange, err error, timeout time.Duration, note string) *pipeline.Refusal {
	var ne net.Error
	return pipeline.UpstreamRefusal(x, pipeline.Failure{
		Canceled:  errors.Is(err, errCanceled),
		TimedOut:  errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) || (errors.As(err, &ne) && ne.Timeout()),
		Described: describeAgentError(err),
		Timeout:   timeout,
		Note:      note,
	})
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
	case errors.Is(err, errNoAnswer), errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the agent closed the connection before answering"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return "cannot connect to the agent: " + oe.Err.Error()
	}
	// The error may quote the agent's malformed answer: scrub and bound it.
	return pipeline.ScrubbedText(err.Error())
}

// responseFields copies the answer's header lines into one string.
func responseFields(h *fasthttp.ResponseHeader) pipeline.Fields {
	return copyFields(h.All())
}

// copyFields copies header lines into Fields backed by a single string, so
// they outlive the fasthttp buffers they came from at one allocation.
func copyFields(all iter.Seq2[[]byte, []byte]) pipeline.Fields {
	n, size := 0, 0
	for k, v := range all {
		n++
		size += len(k) + len(v)
	}
	if n == 0 {
		return nil
	}
	buf := make([]byte, 0, size)
	for k, v := range all {
		buf = append(append(buf, k...), v...)
	}
	backing := unsafe.String(unsafe.SliceData(buf), len(buf)) // buf is never written again
	out := make(pipeline.Fields, 0, n)
	off := 0
	for k, v := range all {
		name := backing[off : off+len(k)]
		off += len(k)
		out = append(out, pipeline.Field{Name: name, Value: backing[off : off+len(v)]})
		off += len(v)
	}
	return out
}

// outcome counts a call's result to the protected agent: metrics, and the
// agent's own outcomes (counted locally, never raising its score).
func (s *Sidecar) outcome(x *pipeline.Exchange, status int, r *pipeline.Refusal) {
	switch {
	case r == nil:
		s.metrics.answer(status)
	case r.Reason == pipeline.UpstreamTimeout:
		s.metrics.upstream.WithLabelValues(reputation.TypeTimeout).Inc()
	case r.Reason == pipeline.Canceled:
		s.metrics.upstream.WithLabelValues("canceled").Inc()
	default:
		s.metrics.upstream.WithLabelValues(reputation.TypeError).Inc()
	}
	s.observe(x, s.cfg.Manifest.AgentID(), status, r)
}

// Observe counts and logs how an exchange ended: one line per decision.
// Ingress and egress exchanges are counted apart.
func (s *Sidecar) Observe(x *pipeline.Exchange, r *pipeline.Refusal) {
	egress := x.Kind == pipeline.Egress
	decided, blocked, refused := s.metrics.decided, s.metrics.blocked, s.metrics.refused
	if egress {
		decided = func(o string) { s.metrics.egressDecisions.WithLabelValues(o).Inc() }
		blocked, refused = s.metrics.egressBlocked, s.metrics.egressRefused
	}
	status := 0
	switch {
	case r != nil:
		status = r.Status
		switch r.Reason {
		case pipeline.Blocked:
			decided("block")
			rule := x.Decision.Rule
			if by, ok := r.Fields["blocked_by"].(string); ok {
				rule = by
			}
			blocked.WithLabelValues(rule).Inc()
		case pipeline.Warned:
			decided("warn")
		case pipeline.Upstream, pipeline.UpstreamTimeout, pipeline.Canceled:
			decided(decisionName(x))
		default:
			refused.WithLabelValues(strconv.Itoa(r.Status)).Inc()
		}
		s.logFailure(x.TraceID, r)
	default:
		decided(decisionName(x))
		if x.Answer != nil {
			status = x.Answer.Status
		}
	}
	s.metrics.stages(egress, x.Stages)
	if s.log.Enabled(context.Background(), levelDecision) {
		s.log.Log(context.Background(), levelDecision, "decision", "trace_id", x.TraceID, "exchange", x.Kind.String(),
			"caller", x.Caller.AgentID, "target", x.TargetID, "decision", string(x.Outcome), "rule", x.Decision.Rule,
			"status", status, "latency_ms", float64(time.Since(x.Received).Microseconds())/1000)
	}
}

// levelDecision is the level of the one log line per decision.
const levelDecision = slog.LevelInfo

func decisionName(x *pipeline.Exchange) string {
	if x.Overridden {
		return "override"
	}
	return x.Decision.Outcome.String()
}

// record writes an administrative record (a slash, an import).
func (s *Sidecar) record(ctx context.Context, r *recorder.Record, _ policy.Caller, now time.Time) {
	r.Time = now
	r.AgentID = s.cfg.Manifest.AgentID()
	if _, err := s.rec.Append(context.WithoutCancel(ctx), r); err != nil {
		s.metrics.recorded.Inc()
		s.log.Error("flight recorder: cannot record", "kind", r.Kind, "trace_id", r.TraceID, "err", err)
	}
}
