package identity

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"
)

func TestProveManifest(t *testing.T) {
	cp := testKey(t, "control plane")
	agent := testKey(t, "agent")
	other := testKey(t, "other")
	val, err := NewValidator(map[string]ed25519.PublicKey{"cp": cp.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	v2 := newRecord(t, cp, 2, agent.PublicKey())
	v1 := newRecord(t, cp, 1, nil)
	v2Other := newRecord(t, cp, 2, other.PublicKey())
	manifestKey := FormatPublicKey(agent.PublicKey())
	doc := []byte(strings.Replace(testManifest, "ed25519:AAAA", manifestKey, 1))
	signed, err := SignManifest(doc, agent, "agent-key-1")
	if err != nil {
		t.Fatal(err)
	}
	signedByOther, err := SignManifest(doc, other, "agent-key-1")
	if err != nil {
		t.Fatal(err)
	}
	pinned := map[string]ed25519.PublicKey{"banking-agent": agent.PublicKey()}
	pinnedOther := map[string]ed25519.PublicKey{"banking-agent": other.PublicKey()}

	base := func() (ProofInput, ProofConfig) {
		return ProofInput{AgentID: "banking-agent", VerificationKey: manifestKey, Document: signed, Attestation: v2},
			ProofConfig{Attestations: val}
	}
	rows := []struct {
		name             string
		mutate           func(in *ProofInput, cfg *ProofConfig)
		now              time.Time
		attested, signed bool
		attErr, sigErr   error
	}{
		{name: "v2 attestation binding the manifest key, signed", attested: true, signed: true},
		{name: "pinned key, no attestation", mutate: func(in *ProofInput, cfg *ProofConfig) { in.Attestation = nil; cfg.PinnedKeys = pinned },
			attErr: errNoProof, signed: true},
		{name: "nothing configured", mutate: func(in *ProofInput, cfg *ProofConfig) { cfg.Attestations = nil },
			attErr: ErrUnknownSigningKey, sigErr: ErrUnknownKey},
		{name: "v1 attestation: attested, key not attested", mutate: func(in *ProofInput, cfg *ProofConfig) { in.Attestation = v1 },
			attested: true, sigErr: ErrUnknownKey},
		{name: "v1 attestation past max age", mutate: func(in *ProofInput, cfg *ProofConfig) {
			in.Attestation = v1
			cfg.MaxAttestationAge = time.Hour
		}, now: t0.Add(2 * time.Hour), attErr: ErrTooOld, sigErr: ErrUnknownKey},
		{name: "v2 attestation binding another key", mutate: func(in *ProofInput, cfg *ProofConfig) { in.Attestation = v2Other },
			attErr: ErrKeyMismatch, sigErr: ErrUnknownKey},
		{name: "attestation for another agent", mutate: func(in *ProofInput, cfg *ProofConfig) { in.AgentID = "other-agent" },
			attErr: ErrAgentMismatch, sigErr: ErrUnknownKey},
		{name: "expired attestation, pinned key still signs", mutate: func(in *ProofInput, cfg *ProofConfig) { cfg.PinnedKeys = pinned },
			now: t0.Add(25 * time.Hour), attErr: ErrExpired, signed: true},
		{name: "manifest names no key", mutate: func(in *ProofInput, cfg *ProofConfig) { in.VerificationKey = "" },
			attErr: ErrKeyMismatch, sigErr: errNoProof},
		{name: "manifest key unparsable", mutate: func(in *ProofInput, cfg *ProofConfig) { in.VerificationKey = "ed25519:xyz" },
			attErr: ErrKeyMismatch, sigErr: ErrInvalidKey},
		{name: "pinned key differs from the manifest's", mutate: func(in *ProofInput, cfg *ProofConfig) {
			in.Attestation = nil
			cfg.PinnedKeys = pinnedOther
		}, attErr: errNoProof, sigErr: ErrKeyMismatch},
		{name: "signed by another key", mutate: func(in *ProofInput, cfg *ProofConfig) { in.Document = signedByOther },
			attested: true, sigErr: ErrNoValidSignature},
		{name: "unsigned document", mutate: func(in *ProofInput, cfg *ProofConfig) { in.Document = doc },
			attested: true, sigErr: ErrNoValidSignature},
		{name: "no document", mutate: func(in *ProofInput, cfg *ProofConfig) { in.Document = nil },
			attested: true, sigErr: ErrNoValidSignature},
		{name: "document changed after signing", mutate: func(in *ProofInput, cfg *ProofConfig) {
			in.Document = []byte(strings.Replace(string(signed), `"trusted"`, `"verified_partner"`, 1))
		}, attested: true, sigErr: ErrNoValidSignature},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			in, cfg := base()
			if r.mutate != nil {
				r.mutate(&in, &cfg)
			}
			now := r.now
			if now.IsZero() {
				now = t0.Add(time.Minute)
			}
			p := ProveManifest(in, cfg, now)
			if p.Attested != r.attested || p.SignedByKnownKey != r.signed {
				t.Fatalf("proof = %+v", p)
			}
			if r.attErr == nil && p.AttestationErr != nil || r.attErr != nil && !isErr(p.AttestationErr, r.attErr) {
				t.Fatalf("AttestationErr = %v, want %v", p.AttestationErr, r.attErr)
			}
			if r.sigErr == nil && p.SignatureErr != nil || r.sigErr != nil && !isErr(p.SignatureErr, r.sigErr) {
				t.Fatalf("SignatureErr = %v, want %v", p.SignatureErr, r.sigErr)
			}
		})
	}
	if p := ProveManifest(ProofInput{}, ProofConfig{}, t0); p.Attested || p.SignedByKnownKey {
		t.Fatal("the zero input proved something")
	}
}
