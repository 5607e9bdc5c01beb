package manifest

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// MaxAgentIDLen is the longest agent id accepted.
const MaxAgentIDLen = 128

// ValidAgentID reports whether id is 1–128 characters of letters, digits
// and ". _ : @ -". Agent ids travel in URL paths, HTTP signature key ids and
// log lines, so spaces, slashes and control characters are refused.
func ValidAgentID(id string) bool {
	if id == "" || len(id) > MaxAgentIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '@', c == '-':
		default:
			return false
		}
	}
	return true
}

// ParseVerificationKey decodes an "ed25519:<base64>" key into its 32 bytes.
func ParseVerificationKey(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, "ed25519:")
	if !ok {
		return nil, fmt.Errorf("must start with \"ed25519:\" followed by the base64 public key")
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("is not valid base64: %v", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("holds %d bytes; an Ed25519 public key has 32", len(key))
	}
	return key, nil
}

// validate checks the values read into m (types were checked while reading).
func (m *Manifest) validate() []Problem {
	var ps []Problem
	add := func(field, format string, args ...any) {
		ps = append(ps, Problem{Severity: SeverityError, Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if m.ProtocolVersion != "" && !supportedProtocol(m.ProtocolVersion) {
		add("protocol_version", "%q is not supported; this build speaks 1.x", m.ProtocolVersion)
	}
	switch id := m.Identity.AgentID; {
	case id == "":
		add("identity.agent_id", "required: the agent's unique id")
	case !ValidAgentID(id):
		add("identity.agent_id", "%q must be 1–%d characters of letters, digits and . _ : @ -", clip(id), MaxAgentIDLen)
	}
	if k := m.Identity.VerificationKey; k != "" {
		if _, err := ParseVerificationKey(k); err != nil {
			add("identity.verification_key", "%v", err)
		}
	}
	if m.TrustLevel != "" && !m.TrustLevel.Valid() {
		add("trust_level", "%q is not one of %s", clip(string(m.TrustLevel)), list(TrustLevels))
	}
	for i, s := range m.Scopes {
		if strings.TrimSpace(s) == "" {
			add(fmt.Sprintf("scopes[%d]", i), "must not be empty")
		}
	}
	c := m.Capabilities
	if c.ConcurrencyLimit < 0 {
		add("capabilities.concurrency_limit", "must not be negative, got %d", c.ConcurrencyLimit)
	}
	if c.RateLimit < 0 {
		add("capabilities.rate_limit", "must not be negative, got %d", c.RateLimit)
	}
	if c.SLALatencyMs < 0 {
		add("capabilities.sla_latency_ms", "must not be negative, got %d", c.SLALatencyMs)
	}
	if c.SLAAvailability < 0 || c.SLAAvailability > 1 {
		add("capabilities.sla_availability", "must be between 0 and 1 (0.999 means 99.9%%), got %v", c.SLAAvailability)
	}
	r := m.Reversibility
	if !r.Level.Valid() {
		add("reversibility.level", "%q is not one of %s", clip(string(r.Level)), list(ReversibilityLevels))
	}
	if r.UndoWindowSeconds < 0 {
		add("reversibility.undo_window_seconds", "must not be negative, got %d", r.UndoWindowSeconds)
	}
	if r.CompensationSLAMs < 0 {
		add("reversibility.compensation_sla_ms", "must not be negative, got %d", r.CompensationSLAMs)
	}
	if e := r.CompensationEndpoint; e != "" && !strings.HasPrefix(e, "/") && !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
		add("reversibility.compensation_endpoint", "%q must be a path (\"/undo\") or an http(s) URL", clip(e))
	}
	if p := m.Privacy.RetentionPolicy; p != "" && !p.Valid() {
		add("privacy.retention_policy", "%q is not one of %s", clip(string(p)), list(Retentions))
	}
	return ps
}

func supportedProtocol(v string) bool {
	rest, ok := strings.CutPrefix(v, "1.")
	if !ok || rest == "" {
		return v == "1"
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// clip shortens a hostile value for an error message.
func clip(s string) string {
	const n = 64
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
