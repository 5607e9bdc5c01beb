package sidecar

import (
	"crypto/ed25519"
	"net/http"
	"strings"
	"testing"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
)

// TestLogsHoldNoSecrets runs calls full of sensitive data and credentials,
// with debug logging, and greps the logs: no payload, token or key may be
// there. Each call is also logged once, at info, as a decision.
func TestLogsHoldNoSecrets(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		callerKey := mustKey(t)
		h := start(t, "untrusted_honeypot.json", func(c *Config) {
			c.TrustedAgents = map[string]ed25519.PublicKey{"caller-a": callerKey.PublicKey()}
			c.RateLimitPerMinute = -1
		})
		secrets := []string{card, "4532 0151 1283 0366", "123-45-6789", "alice@example.com", "AKIAIOSFODNN7EXAMPLE",
			"ghp_" + strings.Repeat("A1b2C3d4E5", 3) + "abcdef", testOverride, testAdmin}
		h.do("POST", "/proxy", `{"card":"`+card+`","ssn":"123-45-6789","mail":"alice@example.com"}`)
		h.do("POST", "/proxy/"+card+"?q=4532+0151+1283+0366", `{}`, wire.Override, testOverride)
		h.do("POST", "/proxy", `{"aws":"AKIAIOSFODNN7EXAMPLE"}`, "X-Note", "alice@example.com", wire.Override, "wrong-"+testOverride)
		h.do("POST", "/proxy", `{not json `+card, wire.Override, testOverride)
		h.do("POST", "/proxy/teapot", `{"tok":"ghp_`+strings.Repeat("A1b2C3d4E5", 3)+`abcdef"}`, wire.Override, testOverride)
		h.do("POST", "/proxy", `{}`, wire.TraceID, card)
		h.do("POST", "/reputation/honeypot-agent/slash", `{"reason":"hallucination","details":{"card":"`+card+`"}}`, "Authorization", "Bearer "+testAdmin)
		h.do("POST", "/reputation/honeypot-agent/slash", `{}`, "Authorization", "Bearer "+testOverride)
		h.do("GET", "/trace/x", "", "Authorization", "Bearer "+testAdmin)
		signer := &identity.RequestSigner{AgentID: "caller-a", Key: callerKey}
		req := h.signed(signer, "/proxy", `{"card":"`+card+`"}`, "log-1")
		req.Header.Set(wire.Override, testOverride)
		h.send(req)
		bad, _ := http.NewRequest("POST", h.url+"/proxy", strings.NewReader(`{"x":1}`))
		bad.Header = req.Header.Clone()
		h.send(bad) // a replay: refused, with its reason logged at debug

		logs := h.logs.String()
		for _, s := range secrets {
			if strings.Contains(logs, s) {
				t.Errorf("the logs hold %q", s)
			}
		}
		if n := strings.Count(logs, `"msg":"decision"`); n < 6 {
			t.Errorf("%d decision lines, want one per protected call:\n%s", n, logs)
		}
		for _, want := range []string{`"decision":"blocked"`, `"decision":"warned"`, `"decision":"forwarded"`, `"rule":"credit_card_permanent"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("the decision lines lack %s", want)
			}
		}
	})
}
