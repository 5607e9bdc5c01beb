package pipe

import (
	"errors"
	"fmt"
	"strings"

	"github.com/iatp/iatp/pipeline"
)

// Errors callers branch on with errors.Is.
var (
	// ErrNoPolicy: Open without a policy engine and without
	// Config.WithoutPolicyUnsafe.
	ErrNoPolicy = errors.New("pipe: no policy engine: set Config.Engine (policy.New), or Config.WithoutPolicyUnsafe to send messages unchecked by policy")
	// ErrUntrusted: Open with a stage whose agent is untrusted, by its
	// manifest or its reputation.
	ErrUntrusted = errors.New("pipe: untrusted agent")
	// ErrClosed: Send after Close, or after the pipeline's context ended.
	ErrClosed = errors.New("pipe: closed")
	// ErrRefused: a check refused the message (see Error.Check).
	ErrRefused = errors.New("pipe: message refused")
	// ErrTimeout: the target's buffer stayed full for the send timeout.
	ErrTimeout = errors.New("pipe: send timeout")
	// ErrCanceled: the context ended before the message was delivered.
	ErrCanceled = errors.New("pipe: cancelled")
	// ErrStage: a stage's function failed on the message.
	ErrStage = errors.New("pipe: stage failed")
	// ErrTransport: the connection to the remote agent failed.
	ErrTransport = errors.New("pipe: connection failed")
	// ErrTraceID: a trace id given to SendTrace is not a valid one.
	ErrTraceID = errors.New("pipe: invalid trace id")
)

// Error is why a message did not reach its target: which check refused
// it and by which rule, or which stage failed on it.
type Error struct {
	// Meta describes the message. For a stage's failure it is the
	// message the stage received.
	Meta Meta
	// Check names the check that refused the message: one of
	// pipeline.PipeChecks' names (headers, size, parse, decode, verify,
	// policy, override, record, deliver), "encode" for a value that has
	// no JSON encoding, or "stage" when the target's function failed.
	Check string
	// Rule names the policy rule (policy, override) or the verifier
	// (verify) that refused the message, when there is one.
	Rule string
	// Reason is the refusal's closed reason, as records and metrics name it.
	Reason pipeline.Reason
	// Msg says why, in words.
	Msg string
	// Cause is the underlying error, if any.
	Cause error

	kind error // one of the sentinels
}

// Error names the message, its source and target, the check and the rule.
func (e *Error) Error() string {
	var b strings.Builder
	if e.Check == "stage" {
		fmt.Fprintf(&b, "pipe: stage %q failed on message %s (trace %s): %s", e.Meta.Target, e.Meta.ID, e.Meta.TraceID, e.Msg)
	} else {
		fmt.Fprintf(&b, "pipe: message %s (trace %s) from %q to %q stopped by %s", e.Meta.ID, e.Meta.TraceID, e.Meta.Source, e.Meta.Target, e.Check)
		if e.Rule != "" {
			fmt.Fprintf(&b, " (rule %s)", e.Rule)
		}
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if e.Cause != nil && !strings.Contains(e.Msg, e.Cause.Error()) {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
	}
	return b.String()
}

// Unwrap returns the sentinel of the error's kind (ErrRefused, ErrTimeout,
// ErrCanceled, ErrStage, ErrTransport) and the cause.
func (e *Error) Unwrap() []error {
	out := make([]error, 0, 2)
	if e.kind != nil {
		out = append(out, e.kind)
	}
	if e.Cause != nil {
		out = append(out, e.Cause)
	}
	return out
}

// kindOf maps a refusal's reason to the sentinel of its kind.
func kindOf(r pipeline.Reason) error {
	switch r {
	case pipeline.UpstreamTimeout:
		return ErrTimeout
	case pipeline.Canceled:
		return ErrCanceled
	case pipeline.Upstream:
		return ErrTransport
	}
	return ErrRefused
}
