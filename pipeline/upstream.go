package pipeline

import (
	"errors"
	"net/http"
	"time"

	"github.com/iatp/iatp/manifest"
)

// ErrCanceled is the cause of a call cut short because its caller went
// away.
var ErrCanceled = errors.New("the caller went away; the call was cancelled")

// Failure is how an upstream call failed, as a sender saw it.
type Failure struct {
	// Canceled: the caller went away and the call was cut short.
	Canceled bool
	// TimedOut: no answer within Timeout.
	TimedOut bool
	// Described is the failure in words, scrubbed (it may quote the
	// upstream's answer).
	Described string
	// Timeout is the bound the call ran under.
	Timeout time.Duration
	// Note is added to a timeout's message (such as the SLA it came from).
	Note string
}

// UpstreamRefusal builds the refusal of a failed upstream call: 504 when
// it was too slow, 502 otherwise, both with the recovery the caller may
// attempt for the target (PROTOCOL §11); or the record of a call its
// caller gave up.
func UpstreamRefusal(x *Exchange, f Failure) *Refusal {
	if f.Canceled {
		return &Refusal{Status: StatusCanceled, Reason: Canceled, Msg: ErrCanceled.Error(), Decision: x.Decision.Outcome.String()}
	}
	r := &Refusal{Status: http.StatusBadGateway, Reason: Upstream, Msg: "Backend agent error: " + f.Described,
		Cause: errors.New(f.Described), Decision: x.Decision.Outcome.String()}
	kind := "error"
	if f.TimedOut {
		r.Status, r.Reason, kind = http.StatusGatewayTimeout, UpstreamTimeout, "timeout"
		r.Msg = "Backend agent timeout: no answer within " + f.Timeout.String() + f.Note
	}
	rec := Recovery(x.Target.Manifest, kind)
	r.Fields = map[string]any{"recovery": rec}
	r.Details, _ = EncodeJSON(map[string]any{"error": f.Described, "timeout_ms": f.Timeout.Milliseconds(), "recovery": rec})
	return r
}

// RecoveryAdvice is the "recovery" member of 502 and 504 answers.
type RecoveryAdvice struct {
	Strategy  string `json:"strategy"` // retry | give_up
	Reason    string `json:"reason"`
	Message   string `json:"message"`
	BackoffMs int    `json:"backoff_ms,omitempty"`
}

// Recovery says what a caller may do after a failed call to the agent of
// m: retry when it is idempotent (a repeat is harmless) or reversible (a
// repeat can be undone), give up otherwise.
func Recovery(m *manifest.Manifest, failure string) RecoveryAdvice {
	if m == nil {
		return RecoveryAdvice{Strategy: "give_up", Reason: failure, Message: "the target is unknown: the request may have been carried out; check before retrying"}
	}
	id := m.AgentID()
	switch {
	case m.Capabilities.Idempotency:
		return RecoveryAdvice{Strategy: "retry", Reason: failure, BackoffMs: 1000,
			Message: "agent '" + id + "' is idempotent: retrying with the same X-Agent-Trace-ID is safe; back off before retrying"}
	case m.Reversibility.Level.Reversible():
		return RecoveryAdvice{Strategy: "retry", Reason: failure, BackoffMs: 1000,
			Message: "agent '" + id + "' is not idempotent but supports " + string(m.Reversibility.Level) + " reversal: a retry may repeat the action, which can then be undone"}
	}
	return RecoveryAdvice{Strategy: "give_up", Reason: failure,
		Message: "agent '" + id + "' is neither idempotent nor reversible: the request may have been carried out, and a retry could repeat it for good; check with the agent's operator before retrying"}
}
