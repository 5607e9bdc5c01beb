package manifest

import (
	"encoding/json"
)

// document is the served manifest: the spec shape plus the legacy keys, so
// that readers of either shape parse it. Field order is the output order.
type document struct {
	ProtocolVersion string          `json:"protocol_version"`
	Identity        Identity        `json:"identity"`
	AgentID         string          `json:"agent_id"`
	AgentVersion    string          `json:"agent_version,omitempty"`
	TrustLevel      TrustLevel      `json:"trust_level"`
	Scopes          []string        `json:"scopes"`
	Capabilities    documentCaps    `json:"capabilities"`
	Reversibility   Reversibility   `json:"reversibility"`
	Privacy         Privacy         `json:"privacy"`
	PrivacyContract privacyContract `json:"privacy_contract"`
	Attestation     json.RawMessage `json:"attestation,omitempty"`
	Signatures      json.RawMessage `json:"signatures,omitempty"`
}

// documentCaps is the spec capabilities plus the legacy keys the Python
// package reads from the same object.
type documentCaps struct {
	Capabilities
	Reversibility ReversibilityLevel `json:"reversibility"`
	UndoWindow    string             `json:"undo_window,omitempty"`
	SLALatency    string             `json:"sla_latency,omitempty"`
}

// privacyContract is the legacy privacy object.
type privacyContract struct {
	Retention           Retention `json:"retention"`
	StorageLocation     string    `json:"storage_location,omitempty"`
	HumanReview         bool      `json:"human_review"`
	EncryptionAtRest    *bool     `json:"encryption_at_rest,omitempty"`
	EncryptionInTransit *bool     `json:"encryption_in_transit,omitempty"`
}

// Document returns the JSON document a sidecar serves at
// /.well-known/agent-manifest: the spec shape plus the legacy top-level
// agent_id and privacy_contract, capabilities.reversibility as a string and
// the legacy duration strings, then attestation and signatures when set.
//
// The spec keys carry numbers (undo_window_seconds, sla_latency_ms). The
// legacy duration keys keep the operator's words: a manifest that wrote
// "undo_window": "24h" and "sla_latency": "2000ms" is served with "24h" and
// "2000ms", not "1d" and "2s". A duration the manifest gave only as a
// number (or one changed since parsing) is written in the largest unit that
// divides it exactly (FormatDuration). Parsing the document gives back a
// manifest equal to m.
func (m *Manifest) Document() ([]byte, error) {
	doc := document{
		ProtocolVersion: m.ProtocolVersion,
		Identity:        m.Identity,
		AgentID:         m.Identity.AgentID,
		AgentVersion:    m.AgentVersion,
		TrustLevel:      m.TrustLevel,
		Scopes:          m.Scopes,
		Capabilities:    documentCaps{Capabilities: m.Capabilities, Reversibility: m.Reversibility.Level},
		Reversibility:   m.Reversibility,
		Privacy:         m.Privacy,
		PrivacyContract: privacyContract{
			Retention:           m.Privacy.RetentionPolicy,
			StorageLocation:     m.Privacy.StorageLocation,
			HumanReview:         m.Privacy.HumanInLoop,
			EncryptionAtRest:    m.Privacy.EncryptionAtRest,
			EncryptionInTransit: m.Privacy.EncryptionInTransit,
		},
		Attestation: m.Attestation,
		Signatures:  m.Signatures,
	}
	if doc.Scopes == nil {
		doc.Scopes = []string{}
	}
	if w := m.Reversibility.UndoWindowSeconds; w > 0 {
		doc.Capabilities.UndoWindow = legacyDuration(m.written.undoWindow, w*1000)
	}
	if l := m.Capabilities.SLALatencyMs; l > 0 {
		doc.Capabilities.SLALatency = legacyDuration(m.written.slaLatency, l)
	}
	return json.Marshal(doc)
}

// writtenDurations are the legacy duration strings of a parsed document,
// kept only where they differ from FormatDuration of their value ("24h",
// "2000ms"), so that a manifest and the one read back from its served
// document stay equal.
type writtenDurations struct {
	undoWindow string // capabilities.undo_window
	slaLatency string // capabilities.sla_latency
}

// nonCanonical returns written, or "" when FormatDuration(ms) gives it back
// or when the duration is zero, which the served document leaves out.
func nonCanonical(written string, ms int64) string {
	if ms == 0 || written == FormatDuration(ms) {
		return ""
	}
	return written
}

// legacyDuration renders ms as written when written still says ms, and
// with FormatDuration otherwise.
func legacyDuration(written string, ms int64) string {
	if written != "" {
		if v, err := ParseDuration(written); err == nil && v == ms {
			return written
		}
	}
	return FormatDuration(ms)
}
