package sidecar

import (
	"crypto/ed25519"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
)

// TestSlashSpreadsToPeers: a verifier's signed slashes at one sidecar reach
// its peer over HTTP gossip intact, even when the connection they came on
// carries other requests at once (the admin adaptor once let a kept string
// alias a reused request buffer, and the peer refused the mangled event).
func TestSlashSpreadsToPeers(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		keyA, keyB, verifier := mustKey(t), mustKey(t), mustKey(t)
		b := start(t, "coder_agent.json", func(c *Config) {
			c.Key = keyB
			c.TrustedAgents = map[string]ed25519.PublicKey{"secure-bank-agent": keyA.PublicKey()}
		})
		a := start(t, "secure_bank.json", func(c *Config) {
			c.Key = keyA
			c.Reputation.Peers = []string{b.url}
			c.Reputation.Verifiers = map[string]ed25519.PublicKey{"checker": verifier.PublicKey()}
		})
		signer := &identity.RequestSigner{AgentID: "checker", Key: verifier}
		client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}} // one keep-alive connection
		for i := range 2 {
			body := fmt.Sprintf(`{"reason":"hallucination","severity":"critical","trace_id":"t-%d","details":{"claim":"made up"}}`, i)
			req, _ := http.NewRequest("POST", a.url+"/reputation/victim-agent/slash", strings.NewReader(body))
			req.Header.Set(wire.TraceID, fmt.Sprint("slash-", i))
			if err := signer.SignRequest(req, []byte(body)); err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("slash %d: %d", i, resp.StatusCode)
			}
			// Other requests on the same connection reuse its buffers.
			for range 3 {
				r, err := client.Get(a.url + "/reputation/some-other-agent-with-a-long-name")
				if err == nil {
					r.Body.Close()
				}
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			g := b.do("GET", "/reputation/victim-agent", "")
			if g.json["score"] == float64(1) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the peer holds %s", g.body)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if g := a.do("GET", "/reputation/victim-agent", ""); !strings.Contains(string(g.body), `"detected_by":"checker"`) {
			t.Errorf("the reporting sidecar's events: %s", g.body)
		}
	})
}
