package identity

import (
	"crypto/ed25519"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// ProofInput is what a sidecar knows about a remote agent when it scores
// the agent's manifest.
type ProofInput struct {
	// AgentID is the manifest's identity.agent_id.
	AgentID string
	// VerificationKey is the manifest's identity.verification_key, in any
	// form ParsePublicKey accepts; "" when the manifest names no key.
	VerificationKey string
	// Document is the manifest document as served, with its "signatures";
	// nil when none was fetched.
	Document []byte
	// Attestation is the attestation the agent serves; nil when none.
	Attestation *Attestation
}

// ProofConfig is the local trust configuration proofs are checked against.
type ProofConfig struct {
	// Attestations holds the trusted control-plane keys. If nil, nothing is
	// attested.
	Attestations *Validator
	// PinnedKeys are the keys configured per agent id (trusted_agents).
	PinnedKeys map[string]ed25519.PublicKey
	// MaxAttestationAge bounds v1 attestations. If 0,
	// DefaultMaxAttestationAge.
	MaxAttestationAge time.Duration
	// ClockSkew: see ValidateOptions. If 0, DefaultClockSkew.
	ClockSkew time.Duration
}

// ManifestProof is what a remote agent proved about its manifest: the
// inputs of manifest.CapTrustLevel (PROTOCOL.md section 2, "claims are
// capped by proof"). The zero value proves nothing.
type ManifestProof struct {
	// Attested: a valid attestation from a trusted control-plane key for
	// this agent id, either v2 binding the manifest's verification key, or
	// v1 (which binds no key) within the maximum age.
	Attested bool
	// SignedByKnownKey: a manifest signature verifies under the key the
	// manifest's identity names, and that key is pinned for the agent id
	// or bound by a valid v2 attestation.
	SignedByKnownKey bool
	// AttestationErr says why Attested is false (nil when true).
	AttestationErr error
	// SignatureErr says why SignedByKnownKey is false (nil when true).
	SignatureErr error
}

var errNoProof = errors.New("no proof")

// ProveManifest checks what in proves at time now under cfg.
func ProveManifest(in ProofInput, cfg ProofConfig, now time.Time) ManifestProof {
	var p ManifestProof
	var manifestKey ed25519.PublicKey
	var keyErr error
	if in.VerificationKey == "" {
		keyErr = fmt.Errorf("%w: the manifest names no verification key", errNoProof)
	} else if manifestKey, keyErr = ParsePublicKey(in.VerificationKey); keyErr != nil {
		keyErr = fmt.Errorf("manifest identity.verification_key: %w", keyErr)
	}

	keyAttested := false
	switch {
	case in.Attestation == nil:
		p.AttestationErr = fmt.Errorf("%w: the agent serves no attestation", errNoProof)
	case cfg.Attestations == nil:
		p.AttestationErr = fmt.Errorf("%w: no trusted control-plane keys configured", ErrUnknownSigningKey)
	default:
		v, err := cfg.Attestations.ValidateAt(in.Attestation, now, ValidateOptions{
			AgentID:   in.AgentID,
			MaxAge:    cfg.MaxAttestationAge,
			ClockSkew: cfg.ClockSkew,
		})
		switch {
		case err != nil:
			p.AttestationErr = err
		case v.Version == 1:
			p.Attested = true
		case manifestKey == nil:
			p.AttestationErr = fmt.Errorf("%w: v2 attestation binds a key but %w", ErrKeyMismatch, keyErr)
		case subtle.ConstantTimeCompare(v.VerificationKey, manifestKey) != 1:
			p.AttestationErr = fmt.Errorf("%w: attestation binds %s, the manifest names %s", ErrKeyMismatch,
				FormatPublicKey(v.VerificationKey), FormatPublicKey(manifestKey))
		default:
			p.Attested, keyAttested = true, true
		}
	}

	switch pinned, isPinned := cfg.PinnedKeys[in.AgentID]; {
	case manifestKey == nil:
		p.SignatureErr = keyErr
	case !keyAttested && !isPinned:
		p.SignatureErr = fmt.Errorf("%w: key %s is neither pinned for %q nor attested", ErrUnknownKey, FormatPublicKey(manifestKey), truncate(in.AgentID, 64))
	case !keyAttested && subtle.ConstantTimeCompare(pinned, manifestKey) != 1:
		p.SignatureErr = fmt.Errorf("%w: the manifest names %s but %s is pinned for %q", ErrKeyMismatch,
			FormatPublicKey(manifestKey), FormatPublicKey(pinned), truncate(in.AgentID, 64))
	case in.Document == nil:
		p.SignatureErr = fmt.Errorf("%w: no manifest document", ErrNoValidSignature)
	default:
		if _, err := VerifyManifestKey(in.Document, manifestKey); err != nil {
			p.SignatureErr = err
		} else {
			p.SignedByKnownKey = true
		}
	}
	return p
}
