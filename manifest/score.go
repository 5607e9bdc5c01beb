package manifest

// Factors are the inputs of the trust score.
type Factors struct {
	TrustLevel      TrustLevel
	Idempotent      bool
	Reversibility   ReversibilityLevel
	Retention       Retention
	HumanInLoop     bool
	TrainingConsent bool
}

// Score computes the 0–10 trust score from its factors, exactly as the
// widely installed Python package does (PROTOCOL §2), so that every node of a
// mixed mesh agrees on every number.
func Score(f Factors) int {
	score := 5
	switch f.TrustLevel {
	case VerifiedPartner:
		score += 3
	case Trusted:
		score += 2
	case Unknown:
		score -= 2
	case Untrusted:
		score -= 5
	}
	if f.Idempotent {
		score++
	}
	if f.Reversibility.Reversible() {
		score++
	}
	switch {
	case f.Retention == RetentionEphemeral:
		score += 2
	case f.Retention.Indefinite():
		score -= 2
	}
	if !f.HumanInLoop {
		score++
	}
	if f.TrainingConsent {
		score--
	}
	return min(max(score, 0), 10)
}

// Factors returns the manifest's score factors with its claimed trust level.
func (m *Manifest) Factors() Factors {
	return Factors{
		TrustLevel:      m.TrustLevel,
		Idempotent:      m.Capabilities.Idempotency,
		Reversibility:   m.Reversibility.Level,
		Retention:       m.Privacy.RetentionPolicy,
		HumanInLoop:     m.Privacy.HumanInLoop,
		TrainingConsent: m.Privacy.TrainingConsent,
	}
}

// TrustScore is the manifest's score as written, with its claimed trust
// level. Use it for a sidecar's own agent; for a remote agent, cap the claim
// first (ScoreAs with CapTrustLevel).
func (m *Manifest) TrustScore() int { return Score(m.Factors()) }

// PeerTrustScore is the score a peer running the widely installed Python
// package computes for this manifest: the same formula without the
// training_consent term, which its model lacks (PROTOCOL §2). It is one
// point above TrustScore for a manifest with training_consent true, unless
// a clamp hides the difference.
func (m *Manifest) PeerTrustScore() int {
	f := m.Factors()
	f.TrainingConsent = false
	return Score(f)
}

// ScoreAs is the manifest's score with trust level l instead of the claimed one.
func (m *Manifest) ScoreAs(l TrustLevel) int {
	f := m.Factors()
	f.TrustLevel = l
	return Score(f)
}

// Proof is what a verifier established about a remote agent's claims.
type Proof struct {
	// Attested: a valid attestation from a trusted control-plane key vouches
	// for this agent id (and, for v2 attestations, its verification key).
	Attested bool
	// SignedByKnownKey: the manifest carries a valid signature by the key
	// its identity names, and that key is pinned in config or attested.
	SignedByKnownKey bool
}

// CapTrustLevel limits a remote agent's claimed trust level to what is
// proven (PROTOCOL §2): verified_partner needs an attestation, trusted needs
// a manifest signature by a known key (an attestation also suffices, being
// the stronger proof), anything unproven counts as at most standard. Claims
// below standard are kept as they are. An invalid claim counts as unknown.
func CapTrustLevel(claimed TrustLevel, p Proof) TrustLevel {
	if !claimed.Valid() {
		return Unknown
	}
	ceiling := Standard
	switch {
	case p.Attested:
		ceiling = VerifiedPartner
	case p.SignedByKnownKey:
		ceiling = Trusted
	}
	if claimed.AtLeast(ceiling) {
		return ceiling
	}
	return claimed
}
