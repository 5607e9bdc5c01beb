package reputation

import (
	"context"
	"encoding/json"
	"strings"
)

// The methods below are the counterparts of the Python package's
// ReputationManager (record_hallucination, record_success, record_failure,
// get_score, get_trust_level, export_reputation_data,
// import_reputation_data) for code that embeds a node. The differences are
// the mesh's: successes and failures are outcomes this node observed as a
// caller, signed as one summary per interval, not immediate changes.

// RecordHallucination reports that subject hallucinated, with a severity
// (critical, high, medium — the default — or low), the trace it concerns
// and details (scrubbed before they are kept); see Report.
func (n *Node) RecordHallucination(ctx context.Context, subject, severity, traceID string, details json.RawMessage) (ReportResult, error) {
	return n.Report(ctx, Report{Subject: subject, Type: TypeHallucination, Severity: severity, TraceID: traceID, Details: details})
}

// RecordSuccess counts a successful call to subject (Observe).
func (n *Node) RecordSuccess(subject string) { n.Observe(subject, OutcomeSuccess) }

// RecordFailure counts a failed call to subject: failureType "timeout" or
// "error" as such, anything else as a failure (Observe).
func (n *Node) RecordFailure(subject, failureType string) {
	switch strings.ToLower(strings.TrimSpace(failureType)) {
	case TypeTimeout:
		n.Observe(subject, OutcomeTimeout)
	case TypeError:
		n.Observe(subject, OutcomeError)
	default:
		n.Observe(subject, OutcomeFailure)
	}
}

// TrustLevel returns the trust level of subject's score; an unknown agent
// is at the neutral level, standard.
func (n *Node) TrustLevel(subject string) string {
	l, _ := n.Level(subject)
	return l
}
