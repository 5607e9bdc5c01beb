package client_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/identity"
)

// An agent calls other agents through the handshake by giving its HTTP
// client the client's Transport: every call is discovered, decided, signed
// as this agent, and sent, or answered 403 (blocked) or 449 (warned)
// without leaving.
func ExampleNew() {
	key, err := identity.ReadPrivateKeyFile("planner.key")
	if err != nil {
		log.Fatal(err)
	}
	attestation, err := os.ReadFile("planner.attestation.json") // from iatp attest
	if err != nil {
		log.Fatal(err)
	}
	controlPlane, err := identity.ReadPublicKeyFile("control-plane.pub")
	if err != nil {
		log.Fatal(err)
	}
	c, err := client.New(client.Config{
		AgentID:     "planner",
		Key:         key,
		Attestation: attestation,
		Discovery: client.DiscoveryConfig{
			ControlPlaneKeys: map[string]ed25519.PublicKey{"control-plane-prod": controlPlane},
		},
		OverrideToken: os.Getenv("IATP_TRUSTED_USER_OVERRIDE_TOKEN"),
	})
	if err != nil {
		log.Fatal(err)
	}
	hc := &http.Client{Transport: c.Transport(), Timeout: 30 * time.Second}

	resp, err := hc.Post("http://bank.example:8001/proxy", "application/json", strings.NewReader(`{"task":"balance"}`))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusForbidden:
		fmt.Println("blocked:", string(body))
	case 449:
		fmt.Println("needs a human's override (X-User-Override):", string(body))
	default:
		fmt.Println(resp.Status, string(body))
	}
}

// Discover tells what a target proved, without calling it.
func ExampleClient_Discover() {
	c, err := client.New(client.Config{AgentID: "planner"})
	if err != nil {
		log.Fatal(err)
	}
	t, err := c.Discover(context.Background(), "http://bank.example:8001/proxy")
	if err != nil {
		log.Fatal(err) // not a target URL
	}
	fmt.Printf("%s claims %s, counts as %s (%s)\n", t.Manifest.AgentID(), t.Claimed, t.Level, t.Proven)
	for _, p := range t.Problems {
		fmt.Println("  problem:", p)
	}
}

// Evaluate runs the handshake on a call up to the decision, and neither
// sends nor records it: what `iatp handshake` prints.
func ExampleClient_Evaluate() {
	c, err := client.New(client.Config{AgentID: "planner"})
	if err != nil {
		log.Fatal(err)
	}
	d, err := c.Evaluate(context.Background(), client.Request{
		Method: http.MethodPost,
		URL:    "http://bank.example:8001/proxy",
		Body:   []byte(`{"card":"4532015112830366"}`),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s (%d/10, %s): %s %v\n", d.Decision, d.TrustScore, d.Proven, d.Reason, d.Warnings)
}

func ExampleOrigin() {
	for _, u := range []string{"HTTP://Bank.Example/proxy", "https://bank.example", "http://[::1]:8001/proxy/a"} {
		o, err := client.Origin(u)
		fmt.Println(o, err)
	}
	_, err := client.Origin("ftp://bank.example")
	fmt.Println(err)
	// Output:
	// http://bank.example:80 <nil>
	// https://bank.example:443 <nil>
	// http://[::1]:8001 <nil>
	// client: target URL "ftp://bank.example": want http://host[:port] or https://host[:port]
}

// Rules add requirements for the calls to some targets.
func ExampleRequirements() {
	refunds := client.TargetRule{Match: "secure-bank-agent", PathPrefix: "/proxy/refund"}
	refunds.Scopes = []string{"payments:refund"}
	everyone := client.TargetRule{Match: "*"}
	everyone.Capabilities = []string{"no_training"}
	rules := []client.TargetRule{refunds, everyone}
	if err := client.CheckRules(rules); err != nil {
		log.Fatal(err)
	}
	for _, path := range []string{"/proxy/balance", "/proxy/refund/42"} {
		r := client.Requirements(rules, "http://bank.example:8001", "secure-bank-agent", path)
		fmt.Println(path, r.Scopes, r.Capabilities)
	}
	// Output:
	// /proxy/balance [] [no_training]
	// /proxy/refund/42 [payments:refund] [no_training]
}
