package client_test

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/sidecar"
)

// TestDiscoverProof: what a target proves caps what it claims (PROTOCOL
// §2): a valid v2 attestation from a trusted control plane proves
// verified_partner, a signature by a pinned key trusted, nothing standard;
// a manifest whose signature is broken is not the target's at all. Each
// row changes one thing; the documents are made and signed with package
// identity, as a sidecar makes them.
func TestDiscoverProof(t *testing.T) {
	const bankID = "secure-bank-agent"
	bank := loadManifest(t, "secure_bank.json")
	kB, kX := mustKey(t), mustKey(t)
	cp, cp2 := mustKey(t), mustKey(t)
	cps := map[string]ed25519.PublicKey{"cp-1": cp.PublicKey()}
	pinned := map[string]ed25519.PublicKey{bankID: kB.PublicKey()}

	attB := attestationJSON(t, attest(t, cp, "cp-1", bankID, kB))
	expired, err := identity.CreateAttestation(cp, "cp-1", identity.Claims{AgentID: bankID,
		CodebaseHash: "sha256:" + strings.Repeat("a", 64), ConfigHash: "sha256:" + strings.Repeat("b", 64),
		VerificationKey: kB.PublicKey()}, identity.AttestationOptions{Now: time.Now().Add(-2 * time.Hour), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	signed := document(t, bank, kB, nil)
	broken := bytes.ReplaceAll(signed, []byte(`"us-east"`), []byte(`"us-west"`))
	if bytes.Equal(broken, signed) {
		t.Fatal("the tampering changed nothing")
	}

	for _, tc := range []struct {
		name  string
		doc   []byte
		att   []byte // served at /.well-known/agent-attestation; nil: 404
		cfg   client.DiscoveryConfig
		level manifest.TrustLevel
		// proven is Target.Proven, or its prefix when it ends with "…".
		proven string
		// problem is in Target.Problems; "" means there are none.
		problem string
	}{
		{name: "unsigned", doc: document(t, bank, identity.PrivateKey{}, nil), cfg: client.DiscoveryConfig{PinnedKeys: pinned, ControlPlaneKeys: cps},
			level: manifest.Standard, proven: "claimed"},
		{name: "signed by the pinned key", doc: signed, cfg: client.DiscoveryConfig{PinnedKeys: pinned},
			level: manifest.Trusted, proven: "signed"},
		{name: "signed, key neither pinned nor attested", doc: signed,
			level: manifest.Standard, proven: "claimed", problem: "signature not accepted: unknown key: key " + identity.FormatPublicKey(kB.PublicKey()) + " is neither pinned"},
		{name: "signed, another key pinned", doc: signed, cfg: client.DiscoveryConfig{PinnedKeys: map[string]ed25519.PublicKey{bankID: kX.PublicKey()}},
			level: manifest.Standard, proven: "claimed", problem: "signature not accepted: verification key mismatch: the manifest names"},
		{name: "attested v2", doc: signed, att: attB, cfg: client.DiscoveryConfig{ControlPlaneKeys: cps},
			level: manifest.VerifiedPartner, proven: "attested"},
		{name: "attested v2 embedded in the manifest", doc: document(t, bank, kB, attB), cfg: client.DiscoveryConfig{ControlPlaneKeys: cps},
			level: manifest.VerifiedPartner, proven: "attested"},
		{name: "attestation binds another key", doc: signed, att: attestationJSON(t, attest(t, cp, "cp-1", bankID, kX)),
			cfg:   client.DiscoveryConfig{ControlPlaneKeys: cps},
			level: manifest.Standard, proven: "claimed",
			problem: "attestation not accepted: verification key mismatch: attestation binds " + identity.FormatPublicKey(kX.PublicKey()) +
				", the manifest names " + identity.FormatPublicKey(kB.PublicKey())},
		{name: "attestation binds another key, manifest key pinned", doc: signed, att: attestationJSON(t, attest(t, cp, "cp-1", bankID, kX)),
			cfg:   client.DiscoveryConfig{ControlPlaneKeys: cps, PinnedKeys: pinned},
			level: manifest.Trusted, proven: "signed", problem: "attestation not accepted: verification key mismatch"},
		{name: "attestation by an unknown control plane", doc: signed, att: attestationJSON(t, attest(t, cp2, "cp-2", bankID, kB)),
			cfg:   client.DiscoveryConfig{ControlPlaneKeys: cps},
			level: manifest.Standard, proven: "claimed", problem: `attestation not accepted: invalid attestation: unknown signing key "cp-2"`},
		{name: "attestation naming a trusted key id, signed by another key", doc: signed, att: attestationJSON(t, attest(t, cp2, "cp-1", bankID, kB)),
			cfg:   client.DiscoveryConfig{ControlPlaneKeys: cps},
			level: manifest.Standard, proven: "claimed", problem: "attestation not accepted: invalid attestation: bad signature"},
		{name: "attestation for another agent", doc: signed, att: attestationJSON(t, attest(t, cp, "cp-1", "coder-agent", kB)),
			cfg:   client.DiscoveryConfig{ControlPlaneKeys: cps},
			level: manifest.Standard, proven: "claimed", problem: "attestation not accepted: invalid attestation: agent id mismatch"},
		{name: "expired attestation", doc: signed, att: attestationJSON(t, expired), cfg: client.DiscoveryConfig{ControlPlaneKeys: cps},
			level: manifest.Standard, proven: "claimed", problem: "attestation not accepted: invalid attestation: attestation expired"},
		{name: "attestation, no control plane trusted", doc: signed, att: attB,
			level: manifest.Standard, proven: "claimed", problem: "attestation not accepted: unknown signing key: no trusted control-plane keys configured"},
		{name: "malformed attestation", doc: signed, att: []byte(`{"agent_id":`), cfg: client.DiscoveryConfig{ControlPlaneKeys: cps},
			level: manifest.Standard, proven: "claimed", problem: "attestation: malformed: "},
		{name: "broken signature", doc: broken, cfg: client.DiscoveryConfig{PinnedKeys: pinned},
			level: manifest.Unknown, proven: "invalid manifest: its signature does not verify under its own verification_key (…"},
		{name: "broken signature, validly attested", doc: broken, att: attB, cfg: client.DiscoveryConfig{ControlPlaneKeys: cps},
			level: manifest.Unknown, proven: "invalid manifest: its signature does not verify under its own verification_key (…"},
		{name: "signatures required, unsigned", doc: document(t, bank, identity.PrivateKey{}, nil),
			cfg:   client.DiscoveryConfig{RequireSigned: true, PinnedKeys: pinned},
			level: manifest.Unknown, proven: "unsigned, and signatures are required: no manifest signature by a pinned or attested key"},
		{name: "signatures required, signed by an unknown key", doc: signed, cfg: client.DiscoveryConfig{RequireSigned: true},
			level: manifest.Unknown, proven: "unsigned, and signatures are required: …"},
		{name: "signatures required, signed by the pinned key", doc: signed, cfg: client.DiscoveryConfig{RequireSigned: true, PinnedKeys: pinned},
			level: manifest.Trusted, proven: "signed"},
		{name: "signatures required, attested", doc: signed, att: attB, cfg: client.DiscoveryConfig{RequireSigned: true, ControlPlaneKeys: cps},
			level: manifest.VerifiedPartner, proven: "attested"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, tc.doc)
			o.attestation = tc.att
			tg := discover(t, newDiscoverer(t, tc.cfg), o.srv.URL)
			if tg.Level != tc.level {
				t.Errorf("Level %q, want %q (proven %q, problems %q)", tg.Level, tc.level, tg.Proven, tg.Problems)
			}
			if p, ok := strings.CutSuffix(tc.proven, "…"); ok && !strings.HasPrefix(tg.Proven, p) || !ok && tg.Proven != tc.proven {
				t.Errorf("Proven %q, want %q", tg.Proven, tc.proven)
			}
			if tg.Claimed != manifest.VerifiedPartner {
				t.Errorf("Claimed %q", tg.Claimed)
			}
			if tc.level == manifest.Unknown {
				checkUnknown(t, tg, bankID)
				if strings.HasPrefix(tg.Proven, "invalid manifest") && (tg.Proof.Attested || tg.Proof.SignedByKnownKey) {
					t.Errorf("a forged document proves %+v", tg.Proof)
				}
				return
			}
			if !tg.Known() || tg.Manifest.AgentID() != bankID || tg.Manifest.Privacy.RetentionPolicy != manifest.RetentionEphemeral {
				t.Errorf("not the served manifest: %+v", tg.Manifest)
			}
			if tc.problem == "" && len(tg.Problems) != 0 {
				t.Errorf("Problems %q, want none", tg.Problems)
			}
			if tc.problem != "" && !containsPrefix(tg.Problems, tc.problem) {
				t.Errorf("Problems %q, want one starting %q", tg.Problems, tc.problem)
			}
			if got, want := tg.Proof.Attested, tc.proven == "attested"; got != want {
				t.Errorf("Proof.Attested %v", got)
			}
		})
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// TestDiscoverProofNeverRaises: a proof caps a claim, it never raises one.
func TestDiscoverProofNeverRaises(t *testing.T) {
	cp, k := mustKey(t), mustKey(t)
	for _, tc := range []struct {
		file  string
		level manifest.TrustLevel
	}{
		{"standard_agent.json", manifest.Standard},
		{"coder_agent.json", manifest.Trusted},
		{"untrusted_honeypot.json", manifest.Untrusted},
	} {
		m := loadManifest(t, tc.file)
		o := newOrigin(t, document(t, m, k, nil))
		o.attestation = attestationJSON(t, attest(t, cp, "cp-1", m.AgentID(), k))
		d := newDiscoverer(t, client.DiscoveryConfig{ControlPlaneKeys: map[string]ed25519.PublicKey{"cp-1": cp.PublicKey()}})
		if tg := discover(t, d, o.srv.URL); tg.Proven != "attested" || tg.Level != tc.level || tg.Claimed != tc.level {
			t.Errorf("%s: proven %q, level %q, claimed %q", tc.file, tg.Proven, tg.Level, tg.Claimed)
		}
	}
}

// TestDiscoverRealSidecar: what a real sidecar serves proves what its
// configuration says, on every front, and its max-age is honoured.
func TestDiscoverRealSidecar(t *testing.T) {
	for _, f := range []front{fastFront, httpFront} {
		t.Run(string(f), func(t *testing.T) {
			m := newMesh(t)
			attested := startRemote(t, f, "secure_bank.json", m.attested(t))
			signed := startRemote(t, f, "secure_bank.json", func(c *sidecar.Config) { c.Key = m.keyB })
			plain := startRemote(t, f, "secure_bank.json", nil)
			clk := newClock()
			d := newDiscoverer(t, client.DiscoveryConfig{ControlPlaneKeys: m.cpKeys, Clock: clk.Now,
				PinnedKeys: map[string]ed25519.PublicKey{"secure-bank-agent": m.keyB.PublicKey()}})
			for _, tc := range []struct {
				r      *remote
				level  manifest.TrustLevel
				proven string
			}{
				{attested, manifest.VerifiedPartner, "attested"},
				{signed, manifest.Trusted, "signed"},
				{plain, manifest.Standard, "claimed"},
			} {
				tg := discover(t, d, tc.r.url+"/proxy")
				if tg.Level != tc.level || tg.Proven != tc.proven || len(tg.Problems) != 0 {
					t.Errorf("%s: level %q proven %q problems %q, want %q %q", tc.proven, tg.Level, tg.Proven, tg.Problems, tc.level, tc.proven)
				}
				if want := clk.Now().Add(sidecar.DefaultManifestMaxAge); !tg.Expires.Equal(want) {
					t.Errorf("%s: expires %v, want the sidecar's max-age (%v)", tc.proven, tg.Expires, want)
				}
			}
			// Past max-age, the sidecar's ETag revalidates it: the same manifest.
			before := discover(t, d, attested.url)
			clk.Add(sidecar.DefaultManifestMaxAge + time.Second)
			if after := discover(t, d, attested.url); after.Manifest != before.Manifest || after.Proven != "attested" ||
				!after.Fetched.Equal(clk.Now()) {
				t.Errorf("revalidated: %+v", after)
			}
		})
	}
}
