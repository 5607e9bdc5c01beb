package cli

import (
	"crypto/ed25519"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/sidecar"
)

// TestReputationCommands drives iatp reputation against a real sidecar: an
// unknown agent, slashes by the admin token and by a verifier's signature,
// refusals without a credential or with a key the sidecar does not know,
// and an export fed back through import.
func TestReputationCommands(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := run(t, "keygen", "--out", dir, "--name", "checker"); code != exitOK {
		t.Fatalf("keygen: %d %s", code, stderr)
	}
	if code, _, stderr := run(t, "keygen", "--out", dir, "--name", "stranger"); code != exitOK {
		t.Fatalf("keygen: %d %s", code, stderr)
	}
	checker, err := identity.ReadPrivateKeyFile(filepath.Join(dir, "checker.key"))
	if err != nil {
		t.Fatal(err)
	}
	const token = "reputation-cli-test-token"
	url := runSidecar(t, "secure_bank.json", func(c *sidecar.Config) {
		c.AdminToken = token
		c.Reputation.Verifiers = map[string]ed25519.PublicKey{"checker": checker.PublicKey()}
	})
	snapshot := filepath.Join(dir, "snapshot.json")
	if err := os.WriteFile(snapshot, []byte(`{"reputation_data":{"imported-agent":{"agent_id":"imported-agent","score":1.5,"total_events":0,"positive_events":0,"negative_events":0,"recent_events":[]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		token    string // IATP_ADMIN_TOKEN
		args     []string
		code     int
		contains []string // in stdout on success, stderr otherwise
	}{
		{"get unknown", "", []string{"get", "honeypot-agent"}, exitFail,
			[]string{"404", "No reputation data for agent 'honeypot-agent'"}},
		{"list empty", "", []string{"list"}, exitOK,
			[]string{"no agent has a reputation at this sidecar yet"}},
		{"slash without credential", "", []string{"slash", "honeypot-agent"}, exitUsage,
			[]string{"no credential", "IATP_ADMIN_TOKEN"}},
		{"slash with a wrong token", "wrong", []string{"slash", "honeypot-agent"}, exitFail,
			[]string{"401", "missing or wrong credential"}},
		{"slash by admin", token, []string{"slash", "honeypot-agent", "--severity", "critical", "--trace-id", "cli-1"}, exitOK,
			[]string{"slashed honeypot-agent for critical hallucination: now 3.00 (unknown)"}},
		{"slash by a verifier", "", []string{"slash", "honeypot-agent", "--key", filepath.Join(dir, "checker.key"), "--severity", "critical", "--details", `{"check":"refund policy"}`}, exitOK,
			[]string{"slashed honeypot-agent for critical hallucination: now 1.00 (untrusted)"}},
		{"slash by an unknown key", "", []string{"slash", "honeypot-agent", "--key", filepath.Join(dir, "stranger.key")}, exitFail,
			[]string{"401"}},
		{"unknown reason", token, []string{"slash", "honeypot-agent", "--reason", "vibes"}, exitFail,
			[]string{"400"}},
		{"details not an object", token, []string{"slash", "honeypot-agent", "--details", "[1]"}, exitUsage,
			[]string{"--details must be a JSON object"}},
		{"get after slashes", "", []string{"get", "honeypot-agent"}, exitOK,
			[]string{"honeypot-agent: 1.00 (untrusted)", "events: 2 (0 positive, 2 negative)", "hallucination critical", "by admin", "by checker"}},
		{"import without credential", "", []string{"import", snapshot}, exitUsage, []string{"no credential"}},
		{"import", token, []string{"import", snapshot}, exitOK, []string{"imported: 1 agent(s) updated"}},
		{"import a missing file", token, []string{"import", filepath.Join(dir, "nope.json")}, exitUsage, []string{"nope.json"}},
		{"list lowest first", "", []string{"list"}, exitOK, []string{"1.00   untrusted         honeypot-agent\n1.50   untrusted         imported-agent\n"}},
		{"not a sidecar URL", "", []string{"list", "--sidecar", "127.0.0.1:8001"}, exitUsage, []string{"want the sidecar's URL"}},
		{"nobody there", "", []string{"list", "--sidecar", "http://127.0.0.1:1", "--timeout", "300ms"}, exitFail, []string{"is the sidecar running"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("IATP_ADMIN_TOKEN", tt.token)
			args := append([]string{"reputation"}, tt.args...)
			if !strings.Contains(strings.Join(tt.args, " "), "--sidecar") {
				args = append(args, "--sidecar", url)
			}
			code, stdout, stderr := run(t, args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			got := stdout
			if code != exitOK {
				got = stderr
			}
			for _, want := range tt.contains {
				if !strings.Contains(got, want) {
					t.Errorf("output lacks %q:\n%s", want, got)
				}
			}
		})
	}

	// list --json prints the same rows; export the Python package's shape.
	code, stdout, stderr := run(t, "reputation", "list", "--json", "--sidecar", url)
	var rows []struct {
		ID    string  `json:"agent_id"`
		Score float64 `json:"score"`
		Level string  `json:"trust_level"`
	}
	if code != exitOK || json.Unmarshal([]byte(stdout), &rows) != nil || len(rows) != 2 ||
		rows[0].ID != "honeypot-agent" || rows[1].Score != 1.5 || rows[1].Level != "untrusted" {
		t.Fatalf("list --json: %d %s %s", code, stdout, stderr)
	}
	code, stdout, stderr = run(t, "reputation", "export", "--sidecar", url)
	var exp struct {
		Data map[string]json.RawMessage `json:"reputation_data"`
	}
	if code != exitOK || json.Unmarshal([]byte(stdout), &exp) != nil || len(exp.Data) != 2 {
		t.Fatalf("export: %d %s %s", code, stdout, stderr)
	}
}
