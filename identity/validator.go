package identity

import (
	"crypto/ed25519"
	"crypto/subtle"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Validator checks attestations against the control-plane keys it trusts,
// the Go counterpart of the widely installed package's AttestationValidator
// (add_trusted_key, validate_attestation; create_attestation is
// CreateAttestation and compute_codebase_hash is HashTree).
//
// The zero value trusts no key and so refuses every attestation. A
// Validator is safe for concurrent use. Its key set is configuration, sized
// by the operator, and is not otherwise bounded.
type Validator struct {
	// Clock returns the current time for Validate. If nil, time.Now is used.
	Clock func() time.Time

	mu   sync.RWMutex
	keys map[string]ed25519.PublicKey
	gen  uint64 // bumped on every key change, so caches can notice
}

// NewValidator returns a Validator trusting keys (key id → public key).
func NewValidator(keys map[string]ed25519.PublicKey) (*Validator, error) {
	v := &Validator{}
	for id, pub := range keys {
		if err := v.AddTrustedKey(id, pub); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// AddTrustedKey trusts pub for attestations whose signing_key_id is keyID,
// replacing any key of that id.
func (v *Validator) AddTrustedKey(keyID string, pub ed25519.PublicKey) error {
	if err := checkID("key id", keyID); err != nil {
		return err
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: key %q is %d bytes, want %d", ErrInvalidKey, keyID, len(pub), ed25519.PublicKeySize)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keys == nil {
		v.keys = make(map[string]ed25519.PublicKey)
	}
	v.keys[keyID] = append(ed25519.PublicKey(nil), pub...)
	v.gen++
	return nil
}

// RemoveTrustedKey stops trusting keyID.
func (v *Validator) RemoveTrustedKey(keyID string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.keys, keyID)
	v.gen++
}

// TrustedKey returns a copy of the key trusted under keyID.
func (v *Validator) TrustedKey(keyID string) (ed25519.PublicKey, bool) {
	k, ok := v.trustedKey(keyID)
	return slices.Clone(k), ok
}

// trustedKey returns the key itself, for verification inside the package.
func (v *Validator) trustedKey(keyID string) (ed25519.PublicKey, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	k, ok := v.keys[keyID]
	return k, ok
}

// TrustedKeys returns a copy of the trusted key set.
func (v *Validator) TrustedKeys() map[string]ed25519.PublicKey {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make(map[string]ed25519.PublicKey, len(v.keys))
	for id, k := range v.keys {
		out[id] = slices.Clone(k)
	}
	return out
}

func (v *Validator) generation() uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.gen
}

// ValidateOptions says what a valid attestation must also match. The zero
// value checks signature and time only, with the default limits.
type ValidateOptions struct {
	// AgentID, if set, must equal agent_id (ErrAgentMismatch).
	AgentID string
	// CodebaseHash, if set, must equal codebase_hash (ErrCodebaseMismatch).
	// "sha256:<hex>" and bare hex of the same digest are equal, whatever
	// the case of the hex digits.
	CodebaseHash string
	// ConfigHash, if set, must equal config_hash (ErrConfigMismatch).
	ConfigHash string
	// VerificationKey, if set, must equal the key a v2 record binds; a v1
	// record binds none and is refused (ErrKeyMismatch).
	VerificationKey ed25519.PublicKey
	// RequireV2 refuses v1 records (ErrUnsupportedVersion).
	RequireV2 bool
	// MaxAge bounds how old a v1 record's timestamp may be (ErrTooOld).
	// If 0, DefaultMaxAttestationAge.
	MaxAge time.Duration
	// ClockSkew is how far in the future timestamp may lie before the record
	// is not yet valid (ErrNotYetValid). If 0, DefaultClockSkew.
	ClockSkew time.Duration
}

// Validated is what a valid attestation proves.
type Validated struct {
	AgentID      string
	Version      int
	SigningKeyID string
	CodebaseHash string
	ConfigHash   string
	// VerificationKey is the agent key a v2 record binds; nil for v1.
	VerificationKey ed25519.PublicKey
	IssuedAt        time.Time
	ExpiresAt       time.Time
}

// Validate is ValidateAt with the time from v.Clock.
func (v *Validator) Validate(a *Attestation, opts ValidateOptions) (Validated, error) {
	now := time.Now
	if v.Clock != nil {
		now = v.Clock
	}
	return v.ValidateAt(a, now(), opts)
}

// ValidateAt checks a at time now, in this order, and returns the first
// failure: the record's form (ErrMalformed, ErrUnsupportedVersion), the
// signing key (ErrUnknownSigningKey), the signature (ErrBadSignature), time
// (ErrNotYetValid, ErrExpired, and for v1 ErrTooOld), then what opts
// expects (ErrAgentMismatch, ErrCodebaseMismatch, ErrConfigMismatch,
// ErrKeyMismatch). On failure it returns the zero Validated.
func (v *Validator) ValidateAt(a *Attestation, now time.Time, opts ValidateOptions) (Validated, error) {
	res, err := v.validateAt(a, now, opts)
	if err != nil {
		return Validated{}, fmt.Errorf("invalid attestation: %w", err)
	}
	return res, nil
}

func (v *Validator) validateAt(a *Attestation, now time.Time, opts ValidateOptions) (Validated, error) {
	if a == nil {
		return Validated{}, fmt.Errorf("%w: no attestation", ErrMalformed)
	}
	times, err := a.checkFields()
	if err != nil {
		return Validated{}, err
	}
	version := a.Version()
	if opts.RequireV2 && version != 2 {
		return Validated{}, fmt.Errorf("%w: v%d attestation refused, v2 required", ErrUnsupportedVersion, version)
	}
	sig, err := b64.DecodeString(a.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return Validated{}, fmt.Errorf("%w: signature must be the standard padded base64 of %d bytes", ErrMalformed, ed25519.SignatureSize)
	}
	pub, ok := v.trustedKey(a.SigningKeyID)
	if !ok {
		return Validated{}, fmt.Errorf("%w %q: this control plane is not trusted", ErrUnknownSigningKey, truncate(a.SigningKeyID, 64))
	}
	msg, err := a.signingInput()
	if err != nil {
		return Validated{}, err
	}
	if !ed25519.Verify(pub, msg, sig) {
		return Validated{}, fmt.Errorf("%w: attestation for agent %q does not verify under key %q", ErrBadSignature,
			truncate(a.AgentID, 64), truncate(a.SigningKeyID, 64))
	}

	skew := opts.ClockSkew
	if skew <= 0 {
		skew = DefaultClockSkew
	}
	if times.issued.After(now.Add(skew)) {
		return Validated{}, fmt.Errorf("%w: timestamp %s is in the future (now %s)", ErrNotYetValid, a.Timestamp, formatTimestamp(now))
	}
	if !now.Before(times.expires) {
		return Validated{}, fmt.Errorf("%w: expired at %s (now %s)", ErrExpired, a.ExpiresAt, formatTimestamp(now))
	}
	if version == 1 {
		maxAge := opts.MaxAge
		if maxAge <= 0 {
			maxAge = DefaultMaxAttestationAge
		}
		if now.Sub(times.issued) > maxAge {
			return Validated{}, fmt.Errorf("%w: v1 attestation signed at %s is older than %s; v1 does not sign expires_at, so its age is what bounds it",
				ErrTooOld, a.Timestamp, maxAge)
		}
	}

	var agentKey ed25519.PublicKey
	if version == 2 {
		agentKey, _ = ParsePublicKey(a.VerificationKey) // checked by checkFields
	}
	if opts.AgentID != "" && opts.AgentID != a.AgentID {
		return Validated{}, fmt.Errorf("%w: attestation is for %q, not %q", ErrAgentMismatch, truncate(a.AgentID, 64), truncate(opts.AgentID, 64))
	}
	if opts.CodebaseHash != "" && !sameHash(opts.CodebaseHash, a.CodebaseHash) {
		return Validated{}, fmt.Errorf("%w: attestation is for %s, expected %s", ErrCodebaseMismatch, a.CodebaseHash, truncate(opts.CodebaseHash, 80))
	}
	if opts.ConfigHash != "" && !sameHash(opts.ConfigHash, a.ConfigHash) {
		return Validated{}, fmt.Errorf("%w: attestation is for %s, expected %s", ErrConfigMismatch, a.ConfigHash, truncate(opts.ConfigHash, 80))
	}
	if opts.VerificationKey != nil {
		if agentKey == nil {
			return Validated{}, fmt.Errorf("%w: a v1 attestation binds no agent key", ErrKeyMismatch)
		}
		if subtle.ConstantTimeCompare(agentKey, opts.VerificationKey) != 1 {
			return Validated{}, fmt.Errorf("%w: attestation binds %s, expected %s", ErrKeyMismatch, a.VerificationKey, FormatPublicKey(opts.VerificationKey))
		}
	}
	return Validated{
		AgentID:         a.AgentID,
		Version:         version,
		SigningKeyID:    a.SigningKeyID,
		CodebaseHash:    a.CodebaseHash,
		ConfigHash:      a.ConfigHash,
		VerificationKey: agentKey,
		IssuedAt:        times.issued,
		ExpiresAt:       times.expires,
	}, nil
}

// sameHash compares two hashes in "sha256:<hex>" or bare hex form.
func sameHash(a, b string) bool {
	return strings.EqualFold(strings.TrimPrefix(a, HashPrefix), strings.TrimPrefix(b, HashPrefix))
}
