package manifest

import (
	"fmt"
	"testing"
)

// TestTrustScoreVectors checks the test vectors of PROTOCOL §2, which the
// widely installed Python package computes the same way.
func TestTrustScoreVectors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want int
	}{
		{"secure bank", `{"agent_id":"bank","trust_level":"verified_partner","capabilities":{"reversibility":"full","idempotency":true},"privacy_contract":{"retention":"ephemeral","human_review":false}}`, 10},
		{"coder", `{"agent_id":"coder","trust_level":"trusted","capabilities":{"reversibility":"full","idempotency":true},"privacy_contract":{"retention":"ephemeral"}}`, 10},
		{"standard", `{"agent_id":"std","trust_level":"standard","capabilities":{"reversibility":"partial","idempotency":true},"privacy_contract":{"retention":"temporary"}}`, 8},
		{"reviewer", `{"agent_id":"rev","trust_level":"standard","capabilities":{"reversibility":"none","idempotency":true},"privacy_contract":{"retention":"temporary"}}`, 7},
		{"honeypot", `{"agent_id":"pot","trust_level":"untrusted","capabilities":{"reversibility":"none","idempotency":false},"privacy_contract":{"retention":"permanent","human_review":true}}`, 0},
		{"only agent id and temporary retention", `{"agent_id":"min","privacy_contract":{"retention":"temporary"}}`, 6},
		{"unknown none temporary human review", `{"agent_id":"u","trust_level":"unknown","capabilities":{"reversibility":"none"},"privacy_contract":{"retention":"temporary","human_review":true}}`, 3},
		{"spec shape with training consent", `{"protocol_version":"1.0","identity":{"agent_id":"s"},"trust_level":"standard","privacy":{"retention_policy":"temporary","training_consent":true}}`, 5},
		{"forever counts as permanent", `{"agent_id":"f","trust_level":"trusted","privacy_contract":{"retention":"forever"}}`, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := m.TrustScore(); got != tt.want {
				t.Errorf("TrustScore() = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestScoreExhaustive checks every combination of the score's factors against
// the formula, written here independently as a table of contributions.
func TestScoreExhaustive(t *testing.T) {
	levelPoints := map[TrustLevel]int{VerifiedPartner: 3, Trusted: 2, Standard: 0, Unknown: -2, Untrusted: -5}
	revPoints := map[ReversibilityLevel]int{ReversibilityFull: 1, ReversibilityPartial: 1, ReversibilityNone: 0}
	retPoints := map[Retention]int{RetentionEphemeral: 2, RetentionTemporary: 0, RetentionPermanent: -2, RetentionForever: -2}
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	n := 0
	for _, level := range TrustLevels {
		for _, idem := range []bool{false, true} {
			for _, rev := range ReversibilityLevels {
				for _, ret := range Retentions {
					for _, human := range []bool{false, true} {
						for _, training := range []bool{false, true} {
							f := Factors{level, idem, rev, ret, human, training}
							want := 5 + levelPoints[level] + b2i(idem) + revPoints[rev] + retPoints[ret] + b2i(!human) - b2i(training)
							want = min(10, max(0, want))
							if got := Score(f); got != want {
								t.Errorf("Score(%+v) = %d, want %d", f, got, want)
							}
							n++
						}
					}
				}
			}
		}
	}
	if n != 5*2*3*4*2*2 {
		t.Fatalf("checked %d combinations, want %d", n, 5*2*3*4*2*2)
	}
}

func TestCapTrustLevel(t *testing.T) {
	none := Proof{}
	signed := Proof{SignedByKnownKey: true}
	attested := Proof{Attested: true}
	tests := []struct {
		claimed TrustLevel
		proof   Proof
		want    TrustLevel
	}{
		{VerifiedPartner, none, Standard},
		{VerifiedPartner, signed, Trusted},
		{VerifiedPartner, attested, VerifiedPartner},
		{Trusted, none, Standard},
		{Trusted, signed, Trusted},
		{Trusted, attested, Trusted},
		{Standard, none, Standard},
		{Unknown, attested, Unknown},
		{Untrusted, attested, Untrusted},
		{"gold", attested, Unknown},
		{"", none, Unknown},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%+v", tt.claimed, tt.proof), func(t *testing.T) {
			if got := CapTrustLevel(tt.claimed, tt.proof); got != tt.want {
				t.Errorf("CapTrustLevel(%q, %+v) = %q, want %q", tt.claimed, tt.proof, got, tt.want)
			}
		})
	}
}

func TestScoreAs(t *testing.T) {
	m, err := Parse([]byte(`{"agent_id":"bank","trust_level":"verified_partner","capabilities":{"reversibility":"full","idempotency":true},"privacy_contract":{"retention":"ephemeral"}}`))
	if err != nil {
		t.Fatal(err)
	}
	// Claimed verified_partner but unproven: scored as standard, 5+0+1+1+2+1.
	if got := m.ScoreAs(CapTrustLevel(m.TrustLevel, Proof{})); got != 10 {
		t.Errorf("ScoreAs(standard) = %d, want 10", got)
	}
	m.Capabilities.Idempotency = false
	m.Privacy.RetentionPolicy = RetentionTemporary
	if got, want := m.ScoreAs(Standard), 7; got != want {
		t.Errorf("ScoreAs(standard) = %d, want %d", got, want)
	}
	if got, want := m.TrustScore(), 10; got != want {
		t.Errorf("TrustScore() = %d, want %d", got, want)
	}
}
