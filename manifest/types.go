package manifest

import (
	"encoding/json"
	"strings"
)

// TrustLevel is the trust an agent claims (or, after CapTrustLevel, has proven).
type TrustLevel string

// Trust levels, from most to least trusted.
const (
	VerifiedPartner TrustLevel = "verified_partner"
	Trusted         TrustLevel = "trusted"
	Standard        TrustLevel = "standard"
	Unknown         TrustLevel = "unknown"
	Untrusted       TrustLevel = "untrusted"
)

// TrustLevels lists every trust level, most trusted first.
var TrustLevels = []TrustLevel{VerifiedPartner, Trusted, Standard, Unknown, Untrusted}

// Valid reports whether l is one of TrustLevels.
func (l TrustLevel) Valid() bool { return l.rank() >= 0 }

// rank orders trust levels: untrusted 0 … verified_partner 4, -1 if invalid.
func (l TrustLevel) rank() int {
	switch l {
	case Untrusted:
		return 0
	case Unknown:
		return 1
	case Standard:
		return 2
	case Trusted:
		return 3
	case VerifiedPartner:
		return 4
	}
	return -1
}

// AtLeast reports whether l is as trusted as other or more.
func (l TrustLevel) AtLeast(other TrustLevel) bool { return l.rank() >= other.rank() }

// ReversibilityLevel says how far an agent can undo what it did.
type ReversibilityLevel string

// Reversibility levels.
const (
	ReversibilityFull    ReversibilityLevel = "full"
	ReversibilityPartial ReversibilityLevel = "partial"
	ReversibilityNone    ReversibilityLevel = "none"
)

// ReversibilityLevels lists every reversibility level.
var ReversibilityLevels = []ReversibilityLevel{ReversibilityFull, ReversibilityPartial, ReversibilityNone}

// Valid reports whether r is one of ReversibilityLevels.
func (r ReversibilityLevel) Valid() bool {
	return r == ReversibilityFull || r == ReversibilityPartial || r == ReversibilityNone
}

// Reversible reports whether the agent can undo at least part of a transaction.
func (r ReversibilityLevel) Reversible() bool {
	return r == ReversibilityFull || r == ReversibilityPartial
}

// Retention is how long an agent keeps the data it receives.
type Retention string

// Retention policies. Forever is an alias of Permanent kept for compatibility.
const (
	RetentionEphemeral Retention = "ephemeral"
	RetentionTemporary Retention = "temporary"
	RetentionPermanent Retention = "permanent"
	RetentionForever   Retention = "forever"
)

// Retentions lists every retention policy.
var Retentions = []Retention{RetentionEphemeral, RetentionTemporary, RetentionPermanent, RetentionForever}

// Valid reports whether r is one of Retentions.
func (r Retention) Valid() bool {
	return r == RetentionEphemeral || r == RetentionTemporary || r == RetentionPermanent || r == RetentionForever
}

// Indefinite reports whether data is kept without limit (permanent or forever).
func (r Retention) Indefinite() bool { return r == RetentionPermanent || r == RetentionForever }

// Manifest is an agent's capability manifest in the spec shape. Its JSON
// encoding is the spec shape; Document gives the served document, which also
// carries the legacy keys.
type Manifest struct {
	// ProtocolVersion is the IATP version the manifest follows ("1.0" when
	// read from the legacy shape, which has no such field).
	ProtocolVersion string `json:"protocol_version"`
	// Identity names the agent and its signing key.
	Identity Identity `json:"identity"`
	// AgentVersion is the legacy shape's free-form agent version, if any.
	AgentVersion string `json:"agent_version,omitempty"`
	// TrustLevel is the level the agent claims. A sidecar caps a remote
	// agent's claim with CapTrustLevel before it counts.
	TrustLevel TrustLevel `json:"trust_level"`
	// Scopes are the agent's permissions, e.g. "repo:read". Nil when empty.
	Scopes []string `json:"scopes,omitempty"`
	// Capabilities are the agent's operational promises.
	Capabilities Capabilities `json:"capabilities"`
	// Reversibility says whether and how the agent undoes transactions.
	Reversibility Reversibility `json:"reversibility"`
	// Privacy says how the agent handles the data it receives.
	Privacy Privacy `json:"privacy"`
	// Attestation is the control-plane attestation record carried in a
	// served document, kept verbatim (verified by package identity).
	Attestation json.RawMessage `json:"attestation,omitempty"`
	// Signatures are the detached JWS signatures of a served document, kept
	// verbatim (verified by package identity).
	Signatures json.RawMessage `json:"signatures,omitempty"`

	// notes are warnings about defaults applied while parsing.
	notes []Problem
	// written keeps the legacy duration strings as the document wrote them.
	written writtenDurations
}

// Identity names an agent.
type Identity struct {
	// AgentID is the agent's unique identifier (required).
	AgentID string `json:"agent_id"`
	// VerificationKey is the agent's Ed25519 public key, "ed25519:<base64>".
	VerificationKey string `json:"verification_key,omitempty"`
	// Owner is the organisation operating the agent.
	Owner string `json:"owner,omitempty"`
	// Contact is where to report problems with the agent.
	Contact string `json:"contact,omitempty"`
}

// Capabilities are an agent's operational promises. Zero means "not stated".
type Capabilities struct {
	// Idempotency is true when a repeated request is handled safely.
	Idempotency bool `json:"idempotency"`
	// ConcurrencyLimit is the number of requests the agent serves at once.
	ConcurrencyLimit int `json:"concurrency_limit,omitempty"`
	// SLALatencyMs is the promised response time in milliseconds.
	SLALatencyMs int64 `json:"sla_latency_ms,omitempty"`
	// SLAAvailability is the promised availability, between 0 and 1.
	SLAAvailability float64 `json:"sla_availability,omitempty"`
	// RateLimit is the number of requests per minute the agent accepts.
	RateLimit int `json:"rate_limit,omitempty"`
}

// Reversibility says whether and how an agent undoes a transaction.
type Reversibility struct {
	// Level is full, partial or none (the default).
	Level ReversibilityLevel `json:"level"`
	// UndoWindowSeconds is how long after a transaction it can be undone.
	UndoWindowSeconds int64 `json:"undo_window_seconds,omitempty"`
	// CompensationMethod names how the agent compensates, e.g. "refund_minus_fee".
	CompensationMethod string `json:"compensation_method,omitempty"`
	// CompensationSLAMs is the promised compensation time in milliseconds.
	CompensationSLAMs int64 `json:"compensation_sla_ms,omitempty"`
	// CompensationEndpoint overrides the default compensation endpoint
	// (POST {agent}/compensate/{transaction_id}).
	CompensationEndpoint string `json:"compensation_endpoint,omitempty"`
}

// Privacy says how an agent handles the data it receives.
type Privacy struct {
	// RetentionPolicy is how long data is kept. When a spec-shaped manifest
	// leaves it out, it is taken to be permanent (the safe assumption).
	RetentionPolicy Retention `json:"retention_policy"`
	// StorageLocation is where data is stored, e.g. "us-west-2".
	StorageLocation string `json:"storage_location,omitempty"`
	// HumanInLoop is true when humans may review the data.
	HumanInLoop bool `json:"human_in_loop"`
	// TrainingConsent is true when the agent may train on the data.
	TrainingConsent bool `json:"training_consent"`
	// EncryptionAtRest is the agent's claim of encryption at rest, nil if not stated.
	EncryptionAtRest *bool `json:"encryption_at_rest,omitempty"`
	// EncryptionInTransit is the agent's claim of encryption in transit, nil if not stated.
	EncryptionInTransit *bool `json:"encryption_in_transit,omitempty"`
}

// AgentID returns the agent's identifier.
func (m *Manifest) AgentID() string { return m.Identity.AgentID }

// Problem is one finding about a manifest, tied to the field it concerns.
type Problem struct {
	// Severity is error, high-risk or warning; empty is read as error.
	Severity Severity `json:"severity"`
	// Field is the path of the field, e.g. "privacy.retention_policy".
	Field string `json:"field"`
	// Message says what is wrong and, where useful, how to fix it.
	Message string `json:"message"`
}

// String renders the problem as "severity: field: message", the words in
// which iatp verify, iatp scan and the sidecar's start-up log all report it.
func (p Problem) String() string {
	sev := p.Severity
	if sev == "" {
		sev = SeverityError
	}
	return string(sev) + ": " + p.text()
}

// text renders the problem as "field: message".
func (p Problem) text() string {
	if p.Field == "" {
		return p.Message
	}
	return p.Field + ": " + p.Message
}

// ValidationError lists every error found in a manifest.
type ValidationError struct {
	// Problems are the errors, in field order of discovery.
	Problems []Problem
}

// Error renders all problems as "field: message", separated by "; ".
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		parts[i] = p.text()
	}
	return "invalid manifest: " + strings.Join(parts, "; ")
}
