package identity_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/iatp/iatp/identity"
)

// A control plane attests an agent; a verifier trusting the control-plane
// key accepts the record and refuses a forged copy.
func ExampleCreateAttestation() {
	controlPlane, _ := identity.GenerateKey(nil)
	agent, _ := identity.GenerateKey(nil)
	now := time.Date(2026, 1, 25, 10, 0, 0, 0, time.UTC)

	record, err := identity.CreateAttestation(controlPlane, "control-plane-prod", identity.Claims{
		AgentID:         "banking-agent",
		CodebaseHash:    identity.HashBytes([]byte("the code")),
		ConfigHash:      identity.HashBytes([]byte("the config")),
		VerificationKey: agent.PublicKey(),
	}, identity.AttestationOptions{Now: now})
	if err != nil {
		panic(err)
	}

	v, _ := identity.NewValidator(map[string]ed25519.PublicKey{"control-plane-prod": controlPlane.PublicKey()})
	res, err := v.ValidateAt(record, now.Add(time.Hour), identity.ValidateOptions{AgentID: "banking-agent"})
	fmt.Println(res.AgentID, res.Version, err)

	forged := *record
	forged.ExpiresAt = "2030-01-01T00:00:00Z"
	_, err = v.ValidateAt(&forged, now.Add(time.Hour), identity.ValidateOptions{})
	fmt.Println(errors.Is(err, identity.ErrBadSignature))
	// Output:
	// banking-agent 2 <nil>
	// true
}

// An egress sidecar signs a request; the ingress sidecar authenticates the
// caller from the method, target URI, headers and body.
func ExampleCallerVerifier() {
	key, _ := identity.GenerateKey(nil)
	signer := &identity.RequestSigner{AgentID: "booking-agent", Key: key}

	body := []byte(`{"task":"book"}`)
	header := http.Header{}
	header.Set(identity.HeaderTraceID, "trace-42")
	msg := identity.Message{
		Method:    "POST",
		TargetURI: "https://payments.example/proxy",
		Header:    header.Values,
		Body:      body,
	}
	signed, err := signer.Sign(msg)
	if err != nil {
		panic(err)
	}
	signed.Set(header.Set)

	verifier, _ := identity.NewCallerVerifier(identity.CallerVerifierConfig{
		TrustedAgents: map[string]ed25519.PublicKey{"booking-agent": key.PublicKey()},
	})
	caller, err := verifier.Verify(msg)
	fmt.Printf("%+v %v\n", caller, err)

	_, err = verifier.Verify(msg) // the same request again
	fmt.Println(err)
	// Output:
	// {AgentID:booking-agent Authenticated:true Attested:false} <nil>
	// request signature refused: replayed nonce
}

// A manifest document is signed and its signatures checked.
func ExampleSignManifest() {
	key, _ := identity.GenerateKey(nil)
	doc := []byte(`{"protocol_version":"1.0","identity":{"agent_id":"booking-agent"},"trust_level":"trusted"}`)
	signed, err := identity.SignManifest(doc, key, "booking-2026")
	if err != nil {
		panic(err)
	}
	kids, err := identity.VerifyManifest(signed, identity.KeyResolver(map[string]ed25519.PublicKey{
		"booking-2026": key.PublicKey(),
	}))
	fmt.Println(kids, err)
	// Output: [booking-2026] <nil>
}
