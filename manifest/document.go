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
// Parsing the document gives back a manifest equal to m.
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
		doc.Capabilities.UndoWindow = FormatDuration(w * 1000)
	}
	if l := m.Capabilities.SLALatencyMs; l > 0 {
		doc.Capabilities.SLALatency = FormatDuration(l)
	}
	return json.Marshal(doc)
}
