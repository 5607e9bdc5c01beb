package sidecar

import (
	"crypto/ed25519"
	"encoding/json"
	"github.com/iatp/iatp/internal/wire"
	"net/http"
	"strings"
	"testing"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
)

func mustKey(t *testing.T) identity.PrivateKey {
	t.Helper()
	k, err := identity.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signed builds a request to h signed as agentID with key.
func (h *harness) signed(signer *identity.RequestSigner, path, body, traceID string) *http.Request {
	h.t.Helper()
	req, err := http.NewRequest("POST", h.url+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wire.TraceID, traceID)
	if err := signer.SignRequest(req, []byte(body)); err != nil {
		h.t.Fatal(err)
	}
	return req
}

func TestSignedCallers(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		callerKey := mustKey(t)
		h := start(t, "secure_bank.json", func(c *Config) {
			c.TrustedAgents = map[string]ed25519.PublicKey{"caller-a": callerKey.PublicKey()}
		})
		signer := &identity.RequestSigner{AgentID: "caller-a", Key: callerKey}

		r := h.send(h.signed(signer, "/proxy", `{"task":"x"}`, "sig-1"))
		if r.status != 200 {
			t.Fatalf("signed request: %d %s", r.status, r.body)
		}
		if got := h.agent.received()[0].Header.Get(wire.CallerID); got != "caller-a" {
			t.Errorf("agent was told the caller is %q", got)
		}
		tr := h.trace("sig-1")
		var logs struct {
			Logs []struct {
				Kind          string `json:"kind"`
				CallerID      string `json:"caller_id"`
				Authenticated bool   `json:"authenticated"`
			} `json:"logs"`
		}
		if err := json.Unmarshal(tr.body, &logs); err != nil || len(logs.Logs) == 0 {
			t.Fatalf("trace: %s", tr.body)
		}
		for _, l := range logs.Logs {
			if l.CallerID != "caller-a" || !l.Authenticated {
				t.Errorf("%s record: caller %q authenticated %v", l.Kind, l.CallerID, l.Authenticated)
			}
		}

		t.Run("replay", func(t *testing.T) {
			req := h.signed(signer, "/proxy", `{"task":"y"}`, "sig-2")
			again := req.Clone(req.Context())
			again.Body = http.NoBody
			if r := h.send(req); r.status != 200 {
				t.Fatalf("first: %d", r.status)
			}
			again, _ = http.NewRequest("POST", h.url+"/proxy", strings.NewReader(`{"task":"y"}`))
			again.Header = req.Header.Clone()
			if r := h.send(again); r.status != 401 || !strings.Contains(r.str("error"), "nonce") {
				t.Errorf("replay: %d %s", r.status, r.body)
			}
		})
		t.Run("body changed after signing", func(t *testing.T) {
			req := h.signed(signer, "/proxy", `{"amount":1}`, "sig-3")
			tampered, _ := http.NewRequest("POST", h.url+"/proxy", strings.NewReader(`{"amount":9}`))
			tampered.Header = req.Header.Clone()
			if r := h.send(tampered); r.status != 401 || !strings.Contains(r.str("error"), "digest") {
				t.Errorf("tampered: %d %s", r.status, r.body)
			}
		})
		t.Run("unknown signer", func(t *testing.T) {
			// A key this sidecar does not know proves nothing: the caller
			// is unknown, as if it had not signed.
			stranger := &identity.RequestSigner{AgentID: "stranger", Key: mustKey(t)}
			n := len(h.agent.received())
			if r := h.send(h.signed(stranger, "/proxy", `{}`, "sig-4")); r.status != 200 {
				t.Errorf("stranger: %d %s", r.status, r.body)
			}
			if got := h.agent.received()[n].Header.Get(wire.CallerID); got != "" {
				t.Errorf("the agent was told the stranger is %q", got)
			}
		})
		t.Run("impersonation", func(t *testing.T) {
			impostor := &identity.RequestSigner{AgentID: "caller-a", Key: mustKey(t)}
			if r := h.send(h.signed(impostor, "/proxy", `{}`, "sig-5")); r.status != 401 {
				t.Errorf("impostor: %d %s", r.status, r.body)
			}
		})
		t.Run("spoofed caller header is not passed on", func(t *testing.T) {
			n := len(h.agent.received())
			h.do("POST", "/proxy", `{}`, wire.CallerID, "caller-a")
			if got := h.agent.received()[n].Header.Get(wire.CallerID); got != "" {
				t.Errorf("an unsigned caller made the agent believe it is %q", got)
			}
		})
	})
}

func TestRequireAuthenticatedCallers(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) { c.RequireAuthenticatedCallers = true })
		if r := h.do("POST", "/proxy", `{}`); r.status != 401 || !strings.Contains(r.str("error"), "signed requests only") {
			t.Errorf("unsigned: %d %s", r.status, r.body)
		}
		if n := len(h.agent.received()); n != 0 {
			t.Errorf("agent reached %d times", n)
		}
	})
}

func TestAttestedCallerAndUntrustedCaller(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		cpKey := mustKey(t)
		callerKey := mustKey(t)
		att, err := identity.CreateAttestation(cpKey, "cp-1", identity.Claims{
			AgentID: "booking-agent", CodebaseHash: "sha256:" + strings.Repeat("a", 64), ConfigHash: "sha256:" + strings.Repeat("b", 64),
			VerificationKey: callerKey.PublicKey(),
		}, identity.AttestationOptions{})
		if err != nil {
			t.Fatal(err)
		}
		attJSON, _ := att.MarshalJSON()
		h := start(t, "secure_bank.json", func(c *Config) {
			c.ControlPlaneKeys = map[string]ed25519.PublicKey{"cp-1": cpKey.PublicKey()}
			c.Policy.Rules = nil
		})
		signer := &identity.RequestSigner{AgentID: "booking-agent", Key: callerKey, Attestation: attJSON}
		if r := h.send(h.signed(signer, "/proxy", `{}`, "att-1")); r.status != 200 {
			t.Fatalf("attested caller: %d %s", r.status, r.body)
		}
		if !strings.Contains(string(h.trace("att-1").body), `"attested":true`) {
			t.Errorf("trace lacks attested: %s", h.trace("att-1").body)
		}
		// Once slashed below 2.0, the same caller is refused.
		for range 2 {
			h.do("POST", "/reputation/booking-agent/slash", `{"reason":"hallucination","severity":"critical"}`, "Authorization", "Bearer "+testAdmin)
		}
		r := h.send(h.signed(signer, "/proxy", `{}`, "att-2"))
		if r.status != 403 || r.str("blocked_by") != "untrusted_caller" || r.str("error") != "Policy violation: agent 'booking-agent' is untrusted (reputation 1)" {
			t.Errorf("slashed caller: %d %s", r.status, r.body)
		}
	})
}

func TestSidecarKeyAndAttestation(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		own := mustKey(t)
		cp := mustKey(t)
		att, err := identity.CreateAttestation(cp, "cp-1", identity.Claims{
			AgentID: "secure-bank-agent", CodebaseHash: "sha256:" + strings.Repeat("c", 64), ConfigHash: "sha256:" + strings.Repeat("d", 64),
			VerificationKey: own.PublicKey(),
		}, identity.AttestationOptions{})
		if err != nil {
			t.Fatal(err)
		}
		h := start(t, "secure_bank.json", func(c *Config) {
			c.Key = own
			c.Attestation = att
			c.ControlPlaneKeys = map[string]ed25519.PublicKey{"cp-1": cp.PublicKey()}
		})
		r := h.do("GET", "/.well-known/agent-manifest", "")
		m, err := manifest.Parse(r.body)
		if err != nil {
			t.Fatal(err)
		}
		if m.Identity.VerificationKey != identity.FormatPublicKey(own.PublicKey()) || m.Attestation == nil {
			t.Errorf("served manifest lacks key or attestation: %s", r.body)
		}
		kids, err := identity.VerifyManifestKey(r.body, own.PublicKey())
		if err != nil || len(kids) != 1 {
			t.Errorf("manifest signature: %v %v", kids, err)
		}
		a := h.do("GET", "/.well-known/agent-attestation", "")
		got, err := identity.DecodeAttestation(a.body)
		if a.status != 200 || err != nil || got.AgentID != "secure-bank-agent" {
			t.Errorf("attestation: %d %v %s", a.status, err, a.body)
		}

		// Mismatches refuse to start.
		for name, edit := range map[string]func(*Config){
			"attestation for another agent": func(c *Config) {
				other, _ := identity.CreateAttestation(cp, "cp-1", identity.Claims{AgentID: "someone-else", CodebaseHash: att.CodebaseHash, ConfigHash: att.ConfigHash, VerificationKey: own.PublicKey()}, identity.AttestationOptions{})
				c.Key, c.Attestation = own, other
			},
			"attestation binding another key": func(c *Config) { c.Key, c.Attestation = mustKey(t), att },
			"attestation without a key":       func(c *Config) { c.Attestation = att },
		} {
			t.Run(name, func(t *testing.T) {
				cfg := Config{AgentURL: "http://127.0.0.1:1", Manifest: loadManifest(t, "secure_bank.json"), DataDir: t.TempDir()}
				edit(&cfg)
				if sc, err := New(cfg); err == nil {
					sc.Close()
					t.Error("New accepted it")
				}
			})
		}
	})
}
