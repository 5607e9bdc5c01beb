package cli

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
)

const demoCard = "4532-0151-1283-0366"

// play runs the story and returns the number of failed steps.
func (d *demo) play() int {
	fmt.Fprintf(d.out, "iatp demo: two agents on loopback, each behind its own iatp sidecar\n")
	fmt.Fprintf(d.out, "  secure bank  %s  (verified partner, ephemeral, attested by a demo control plane)\n", d.bankURL)
	fmt.Fprintf(d.out, "  honeypot     %s  (untrusted, keeps data forever, humans read it)\n", d.potURL)

	d.discover()
	d.calls()
	d.egress()
	d.traceAndSlash()
	d.mesh()
	d.forgeries()
	return d.failures
}

// discover fetches both manifests, checks the bank's proofs and scores both.
func (d *demo) discover() {
	fmt.Fprintf(d.out, "\n— Discovery: fetch each manifest, check its proofs, score it\n")
	a := d.call("GET", d.bankURL+"/.well-known/agent-manifest", "")
	var problems []string
	var notes string
	if a.err == nil {
		if m, err := manifest.Parse(a.body); err != nil {
			problems = append(problems, "manifest: "+err.Error())
		} else {
			validator, _ := identity.NewValidator(map[string]ed25519.PublicKey{"demo-control-plane": d.controlPlane.PublicKey()})
			att, _ := identity.DecodeAttestation(m.Attestation)
			proof := identity.ProveManifest(identity.ProofInput{AgentID: m.AgentID(), VerificationKey: m.Identity.VerificationKey,
				Document: a.body, Attestation: att}, identity.ProofConfig{Attestations: validator}, time.Now())
			level := manifest.CapTrustLevel(m.TrustLevel, manifest.Proof{Attested: proof.Attested, SignedByKnownKey: proof.SignedByKnownKey})
			problems = append(problems,
				expect(proof.Attested, "the bank's attestation does not validate: %v", proof.AttestationErr),
				expect(proof.SignedByKnownKey, "the bank's manifest signature does not verify: %v", proof.SignatureErr),
				expect(level == manifest.VerifiedPartner, "proven level %s, want verified_partner", level))
			notes = fmt.Sprintf("claims %s; attestation valid: %v, manifest signed by its own key: %v → counts as %s, trust score %d/10",
				m.TrustLevel, proof.Attested, proof.SignedByKnownKey, level, m.ScoreAs(level))
		}
	}
	d.check("GET bank /.well-known/agent-manifest", a, 200, problems...)
	if notes != "" {
		d.note("%s", notes)
	}
	m, _, err := fetchManifest(d.ctx, d.potURL+"/.well-known/agent-manifest", 5*time.Second)
	pa := &answer{status: 200, err: err}
	if err != nil {
		d.check("GET honeypot /.well-known/agent-manifest", pa, 200)
		return
	}
	score := m.TrustScore() * 10
	d.check("GET honeypot /.well-known/agent-manifest", pa, 200,
		expect(score == 0 && riskLevel(score) == "HIGH", "score %d/100 %s, want 0/100 HIGH", score, riskLevel(score)))
	d.note("claims %s, keeps data %s, human review: %v → trust score %d/100, %s risk (iatp scan shows the same)",
		m.TrustLevel, m.Privacy.RetentionPolicy, m.Privacy.HumanInLoop, score, riskLevel(score))
}

// calls plays the protected calls.
func (d *demo) calls() {
	fmt.Fprintf(d.out, "\n— Protected calls: POST /proxy through each sidecar\n")
	a := d.call("POST", d.bankURL+"/proxy", `{"task":"pay_invoice","invoice":"INV-2044","amount":120.5}`, "X-Agent-Trace-ID", "demo-bank-1")
	d.check("a normal call to the bank is forwarded", a, 200,
		expect(a.header.Get("X-Agent-Trust-Score") == "10", "X-Agent-Trust-Score %q, want 10", a.header.Get("X-Agent-Trust-Score")))
	d.note("the bank answered %s; X-Agent-Trust-Score: %s", strings.TrimSpace(string(a.body)), a.header.Get("X-Agent-Trust-Score"))

	body := `{"task":"pay_invoice","invoice":"INV-2045","amount":80}`
	req, _ := http.NewRequestWithContext(d.ctx, "POST", d.bankURL+"/proxy", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Agent-Trace-ID", "demo-signed-1")
	signer := &identity.RequestSigner{AgentID: "travel-agent", Key: d.travelKey}
	if err := signer.SignRequest(req, []byte(body)); err != nil {
		d.check("a call signed by travel-agent (RFC 9421)", &answer{err: err}, 200)
	} else {
		a = d.send(req)
		tr := d.call("GET", d.bankURL+"/trace/demo-signed-1", "", "Authorization", "Bearer "+d.adminToken)
		d.check("a call signed by travel-agent (RFC 9421) is authenticated", a, 200,
			expect(strings.Contains(string(tr.body), `"caller_id":"travel-agent","authenticated":true`), "the record does not name the authenticated caller: %s", clip(string(tr.body), 300)))
		d.note("recorded as caller_id travel-agent, authenticated")
		replay, _ := http.NewRequestWithContext(d.ctx, "POST", d.bankURL+"/proxy", strings.NewReader(body))
		replay.Header = req.Header.Clone()
		r := d.send(replay)
		d.check("the same signed request replayed is refused", r, 401)
		d.note("%s", r.str("error"))
	}

	a = d.call("POST", d.potURL+"/proxy", `{"task":"checkout","card":"`+demoCard+`"}`, "X-Agent-Trace-ID", "demo-card-1")
	d.check("a card number sent to the honeypot is blocked", a, 403,
		expect(a.str("blocked_by") == "credit_card_permanent", "blocked_by %q", a.str("blocked_by")),
		expect(d.potCalls.Load() == 0, "the honeypot agent was reached"))
	d.note("blocked_by %s: %s", a.str("blocked_by"), a.str("error"))
	d.note("calls that reached the honeypot agent: %d", d.potCalls.Load())

	a = d.call("POST", d.potURL+"/proxy", `{"task":"newsletter_signup"}`, "X-Agent-Trace-ID", "demo-warn-1")
	d.check("a plain call to the honeypot needs a human's override", a, 449,
		expect(a.json["requires_override"] == true, "requires_override missing"))
	for _, line := range strings.Split(a.str("warning"), "\n") {
		d.note("%s", line)
	}

	a = d.call("POST", d.potURL+"/proxy", `{"task":"newsletter_signup"}`, "X-Agent-Trace-ID", "demo-warn-2", "X-User-Override", "true")
	d.check("\"X-User-Override: true\" is not an override", a, 449)

	a = d.call("POST", d.potURL+"/proxy", `{"task":"newsletter_signup"}`, "X-Agent-Trace-ID", "demo-override-1", "X-User-Override", d.overrideToken)
	d.check("the same call with the operator's override token goes ahead, quarantined", a, 200,
		expect(a.header.Get("X-Agent-Quarantined") == "true", "X-Agent-Quarantined %q", a.header.Get("X-Agent-Quarantined")),
		expect(d.potCalls.Load() == 1, "the honeypot agent was reached %d times, want 1", d.potCalls.Load()))
	q := d.call("GET", d.potURL+"/quarantine/demo-override-1", "", "Authorization", "Bearer "+d.adminToken)
	d.note("X-Agent-Quarantined: %s; quarantine session %s", a.header.Get("X-Agent-Quarantined"), q.str("session_id"))
}

// egress plays the booking agent calling others through its own sidecar.
func (d *demo) egress() {
	fmt.Fprintf(d.out, "\n— Egress: the booking agent calls others through its own sidecar (HTTP_PROXY=%s)\n", d.egressURL)
	a := d.viaEgress(d.bankURL+"/proxy", `{"task":"pay_invoice","invoice":"INV-2046","amount":42}`, "X-Agent-Trace-ID", "demo-egress-1")
	tr := d.call("GET", d.bankURL+"/trace/demo-egress-1", "", "Authorization", "Bearer "+d.adminToken)
	d.check("booking agent → its sidecar → the bank's sidecar → the bank", a, 200,
		expect(strings.Contains(string(tr.body), `"caller_id":"booking-agent","authenticated":true,"attested":true`),
			"the bank's record does not name booking-agent as an authenticated, attested caller: %s", clip(string(tr.body), 300)))
	d.note("the booking agent's sidecar found the bank's manifest, checked its signature and attestation, and signed the call;")
	d.note("the bank's sidecar verified that signature and recorded booking-agent as authenticated and attested")

	before := d.potCalls.Load()
	a = d.viaEgress(d.potURL+"/proxy", `{"task":"checkout","card":"`+demoCard+`"}`, "X-User-Override", d.overrideToken)
	d.check("a card number for the honeypot is stopped by the caller's own sidecar", a, 403,
		expect(a.str("blocked_by") == "credit_card_permanent", "blocked_by %q", a.str("blocked_by")),
		expect(d.potCalls.Load() == before, "the honeypot was reached"))
	d.note("no byte left the booking agent: %s", a.str("error"))

	a = d.viaEgress(d.impostorURL+"/proxy", `{"task":"pay_invoice","amount":10}`)
	target, _ := a.json["target"].(map[string]any)
	d.check("an impostor claiming verified_partner without proof is scored as standard and warned about", a, 449,
		expect(strings.Contains(a.str("warning"), "Low trust score (8/10) for agent 'impostor-bank'"), "warning %q", a.str("warning")),
		expect(d.impostorCalls.Load() == 0, "the impostor was reached"))
	d.note("it claims verified_partner (10/10), but what it proved is %q: no signature, no attestation; so it counts as standard: 8/10,", target["proven"])
	d.note("below the 9 this agent asks for without a human's override")
}

// traceAndSlash shows the flight recorder and reputation.
func (d *demo) traceAndSlash() {
	fmt.Fprintf(d.out, "\n— The flight recorder and reputation\n")
	a := d.call("GET", d.potURL+"/trace/demo-card-1", "", "Authorization", "Bearer "+d.adminToken)
	raw := string(a.body)
	d.check("the blocked call is recorded with the card scrubbed", a, 200,
		expect(strings.Contains(raw, "[CREDIT_CARD_REDACTED]"), "the record lacks [CREDIT_CARD_REDACTED]"),
		expect(!strings.Contains(raw, demoCard) && !strings.Contains(raw, strings.ReplaceAll(demoCard, "-", "")), "the card number is in the trace"))
	var tr struct {
		Logs []struct {
			Seq     uint64          `json:"seq"`
			Kind    string          `json:"kind"`
			Payload json.RawMessage `json:"payload"`
			Hash    string          `json:"hash"`
		} `json:"logs"`
	}
	if json.Unmarshal(a.body, &tr) == nil {
		for _, l := range tr.Logs {
			d.note("seq %d %s payload %s hash %s…", l.Seq, l.Kind, l.Payload, l.Hash[:12])
		}
	}
	a = d.call("POST", d.potURL+"/reputation/honeypot-agent/slash", `{"reason":"hallucination","severity":"critical","trace_id":"demo-override-1","details":{"claim":"invented a refund policy"}}`,
		"Authorization", "Bearer "+d.adminToken)
	d.check("a verifier slashes the honeypot for a critical hallucination", a, 200,
		expect(a.str("status") == "slashed", "status %q", a.str("status")))
	d.note("new score %v (%s), from 5.0: the calls it answered are counted, but a sidecar never raises its own agent's score", a.json["new_score"], a.str("trust_level"))
	a = d.call("POST", d.potURL+"/reputation/honeypot-agent/slash", `{"reason":"hallucination","severity":"critical"}`)
	d.check("a slash without the admin credential changes nothing", a, 401)
}

// mesh shows a verifier's slash spreading to another sidecar.
func (d *demo) mesh() {
	fmt.Fprintf(d.out, "\n— Reputation across the mesh\n")
	signer := &identity.RequestSigner{AgentID: "hallucination-checker", Key: d.verifierKey}
	var a *answer
	for i := range 2 {
		body := fmt.Sprintf(`{"reason":"hallucination","severity":"critical","trace_id":"demo-verify-%d","details":{"claim":"invented a refund policy"}}`, i)
		req, _ := http.NewRequestWithContext(d.ctx, "POST", d.bankURL+"/reputation/honeypot-agent/slash", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Agent-Trace-ID", fmt.Sprintf("demo-verify-%d", i))
		if err := signer.SignRequest(req, []byte(body)); err != nil {
			a = &answer{err: err}
			break
		}
		a = d.send(req)
	}
	start := time.Now()
	d.check("a hallucination checker's signed reports slash the honeypot at the bank's sidecar", a, 200,
		expect(a.str("trust_level") == "untrusted", "trust level %q, want untrusted", a.str("trust_level")))
	d.note("two critical hallucinations: %v (%s) — signed by the bank's sidecar and sent to its peers", a.json["new_score"], a.str("trust_level"))
	var seen *answer
	for time.Since(start) < 15*time.Second {
		seen = d.call("GET", d.bookingURL+"/reputation/honeypot-agent", "")
		if seen.str("trust_level") == "untrusted" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	d.check("the booking agent's sidecar learns it over HTTP gossip", seen, 200,
		expect(seen.str("trust_level") == "untrusted", "after %s the booking agent's sidecar holds %s", took.Round(time.Millisecond), clip(string(seen.body), 200)))
	d.note("in %s: the event is signed, so the booking agent's sidecar verified it against the bank's key before applying it", took.Round(time.Millisecond))
	before := d.potCalls.Load()
	a = d.viaEgress(d.potURL+"/proxy", `{"task":"newsletter_signup"}`, "X-User-Override", d.overrideToken)
	d.check("the booking agent's calls to the honeypot are now refused, override or not", a, 403,
		expect(a.str("blocked_by") == "untrusted_target", "blocked_by %q", a.str("blocked_by")),
		expect(d.potCalls.Load() == before, "the honeypot was reached"))
	d.note("%s", a.str("error"))
}

// forgeries shows attestations that are refused, with their reasons.
func (d *demo) forgeries() {
	fmt.Fprintf(d.out, "\n— Forged attestations are refused\n")
	validator, _ := identity.NewValidator(map[string]ed25519.PublicKey{"demo-control-plane": d.controlPlane.PublicKey()})
	validate := func(a *identity.Attestation) error {
		_, err := validator.Validate(a, identity.ValidateOptions{AgentID: "secure-bank-agent"})
		return err
	}
	refused := func(title string, err error) {
		d.check(title, nil, 0, expect(err != nil, "it was accepted"))
		if err != nil {
			d.note("refused: %v", err)
		}
	}
	attacker, _ := identity.GenerateKey(nil)
	forged, err := identity.CreateAttestation(attacker, "demo-control-plane", identity.Claims{
		AgentID: "secure-bank-agent", CodebaseHash: d.bankAttest.CodebaseHash, ConfigHash: d.bankAttest.ConfigHash,
		VerificationKey: attacker.PublicKey(),
	}, identity.AttestationOptions{})
	if err == nil {
		err = validate(forged)
	}
	refused("an attestation signed with the wrong key, naming the control plane's key id", err)

	extended := *d.bankAttest
	extended.ExpiresAt = time.Now().Add(365 * 24 * time.Hour).UTC().Format(time.RFC3339)
	refused("the real attestation with its expiry pushed a year ahead", validate(&extended))

	if err := validate(d.bankAttest); err != nil {
		d.check("the genuine attestation still validates", nil, 0, err.Error())
	} else {
		d.check("the genuine attestation still validates", nil, 0)
	}
}
