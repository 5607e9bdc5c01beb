package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/sidecar"
)

// runSidecar serves a real sidecar for manifestFile on loopback.
func runSidecar(t *testing.T, manifestFile string, edit func(*sidecar.Config)) string {
	t.Helper()
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{}`) }))
	t.Cleanup(agent.Close)
	cfg := sidecar.Config{AgentURL: agent.URL, Manifest: demoManifest(manifestFile), DataDir: t.TempDir(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if edit != nil {
		edit(&cfg)
	}
	sc, err := sidecar.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return "http://" + ln.Addr().String()
}

func TestHandshake(t *testing.T) {
	dir := t.TempDir()
	cp, _ := identity.GenerateKey(nil)
	bankKey, _ := identity.GenerateKey(nil)
	att, err := identity.CreateAttestation(cp, "cp", identity.Claims{AgentID: "secure-bank-agent",
		CodebaseHash: identity.HashBytes([]byte("c")), ConfigHash: identity.HashBytes([]byte("k")), VerificationKey: bankKey.PublicKey()},
		identity.AttestationOptions{TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cpPub := filepath.Join(dir, "cp.pub")
	if err := os.WriteFile(cpPub, []byte(identity.FormatPublicKey(cp.PublicKey())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bank := runSidecar(t, "secure_bank.json", func(c *sidecar.Config) {
		c.Key, c.Attestation = bankKey, att
		c.ControlPlaneKeys = map[string]ed25519.PublicKey{"cp": cp.PublicKey()}
	})
	pot := runSidecar(t, "untrusted_honeypot.json", nil)

	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"attested bank", []string{bank, "--trusted-key", cpPub}, exitOK,
			[]string{"ALLOW", "10/10 (claims verified_partner, counts as verified_partner)", "attestation    yes"}},
		{"bank without trusted keys", []string{bank}, exitOK,
			[]string{"counts as standard", "attestation    no"}},
		{"missing scope", []string{bank, "--trusted-key", "cp=" + cpPub, "--require-scope", "payments:refund"}, exitBlock,
			[]string{"BLOCK", "missing_scope: Agent missing required scopes: payments:refund"}},
		{"honeypot", []string{pot}, exitWarn,
			[]string{"WARN", "Low trust score (0/10) for agent 'honeypot-agent'"}},
		{"nobody there", []string{"http://127.0.0.1:1", "--timeout", "300ms"}, exitWarn,
			[]string{"unreachable"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, append([]string{"handshake"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.code, out, errOut)
			}
			for _, want := range tc.contains {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
		})
	}
	t.Run("scan checks proofs too", func(t *testing.T) {
		code, out, errOut := run(t, "scan", bank, "--trusted-key", cpPub)
		if code != exitOK || !strings.Contains(out, "Proven against --trusted-key: attested → 100/100") {
			t.Errorf("exit %d\n%s%s", code, out, errOut)
		}
		if _, out, _ := run(t, "scan", bank); strings.Contains(out, "Proven against") {
			t.Errorf("without keys, scan claims a proof:\n%s", out)
		}
	})
	t.Run("json", func(t *testing.T) {
		code, out, _ := run(t, "handshake", "--json", bank, "--trusted-key", cpPub)
		var res handshakeResult
		if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitOK || res.Decision.Decision != "allow" || !res.Proof.Attested || res.Decision.TrustScore != 10 {
			t.Errorf("exit %d, %+v, %v\n%s", code, res, err, out)
		}
	})
}
