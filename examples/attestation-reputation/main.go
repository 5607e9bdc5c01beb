// Command attestation-reputation shows the identity and reputation Go APIs
// end to end. First identity: a control plane attests an agent, a verifier
// accepts the attestation, a forged copy is refused, and the attested
// agent's signed request is authenticated while a replay and a stranger
// carrying the stolen attestation are not. Then reputation: three sidecars'
// reputation nodes gossip over HTTP on loopback; a fact-checker slashes an
// agent with a signed request and every node agrees; an anonymous slash, a
// forged event and an agent praising itself change nothing; a restarted
// node keeps its scores.
//
//	go run ./examples/attestation-reputation
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"

	"github.com/iatp/iatp/identity"
)

func main() {
	identityStory()
	dir, err := os.MkdirTemp("", "iatp-reputation-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := reputationStory(context.Background(), dir, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func identityStory() {
	// The control plane and the agent each have a key pair (iatp keygen).
	controlPlane := must(identity.GenerateKey(nil))
	agent := must(identity.GenerateKey(nil))

	// 1. The control plane vouches for (agent id, agent key, codebase,
	// configuration): iatp attest sign.
	record := must(identity.CreateAttestation(controlPlane, "control-plane-prod", identity.Claims{
		AgentID:         "banking-agent",
		CodebaseHash:    identity.HashBytes([]byte("the agent's code")),
		ConfigHash:      identity.HashBytes([]byte("the agent's config")),
		VerificationKey: agent.PublicKey(),
	}, identity.AttestationOptions{}))
	recordJSON := must(json.MarshalIndent(record, "", "  "))
	fmt.Printf("Attestation issued by the control plane:\n%s\n\n", recordJSON)

	// 2. A verifier that trusts the control-plane key accepts it.
	verifier := must(identity.NewValidator(map[string]ed25519.PublicKey{
		"control-plane-prod": controlPlane.PublicKey(),
	}))
	ok, err := verifier.Validate(record, identity.ValidateOptions{AgentID: "banking-agent"})
	report("genuine attestation", err, fmt.Sprintf("v%d for %s, expires %s", ok.Version, ok.AgentID, record.ExpiresAt))

	// 3. A forged copy (someone pushes expires_at a year forward) is refused.
	forged := *record
	forged.ExpiresAt = "2099-01-01T00:00:00Z"
	_, err = verifier.Validate(&forged, identity.ValidateOptions{})
	report("forged attestation", err, "")

	// 4. The agent signs a request (RFC 9421) and sends its attestation
	// along; the callee knows only the control-plane key.
	callee := must(identity.NewCallerVerifier(identity.CallerVerifierConfig{Attestations: verifier}))
	signer := &identity.RequestSigner{AgentID: "banking-agent", Key: agent, Attestation: recordJSON}
	msg := signedRequest(signer)
	caller, err := callee.Verify(msg)
	report("signed request", err, fmt.Sprintf("%+v", caller))

	// 5. The same request replayed is refused.
	_, err = callee.Verify(msg)
	report("replayed request", err, "")

	// 6. A stranger who copied the attestation cannot use it: it binds the
	// agent's key, not theirs.
	stranger := &identity.RequestSigner{AgentID: "banking-agent", Key: must(identity.GenerateKey(nil)), Attestation: recordJSON}
	_, err = callee.Verify(signedRequest(stranger))
	report("stranger with a stolen attestation", err, "")
}

// signedRequest builds and signs one POST to the callee's sidecar.
func signedRequest(s *identity.RequestSigner) identity.Message {
	h := http.Header{}
	h.Set(identity.HeaderTraceID, "trace-demo")
	msg := identity.Message{
		Method:    http.MethodPost,
		TargetURI: "https://payments.example/proxy",
		Header:    h.Values,
		Body:      []byte(`{"task":"transfer","amount":100}`),
	}
	must(s.Sign(msg)).Set(h.Set)
	return msg
}

func report(what string, err error, detail string) {
	if err != nil {
		fmt.Printf("✗ %-36s refused: %v\n", what, err)
		return
	}
	fmt.Printf("✓ %-36s accepted: %s\n", what, detail)
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
