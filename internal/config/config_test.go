package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const bank = "../../examples/manifests/secure_bank.json"

func TestLoadStrict(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"agent_url: http://x\nlisen: :80\n", "field lisen not found"},
		{"policy:\n  warn_bellow: 3\n", "field warn_bellow not found"},
		{"agent_timeout: soon\n", "cannot unmarshal"},
		{"a: 1\n---\nb: 2\n", "field a not found"},
		{"agent_url: x\n---\nlisten: y\n", "more than one YAML document"},
	} {
		if _, err := Parse([]byte(tt.doc), "c.yaml"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error %v, want %q", tt.doc, err, tt.want)
		}
	}
	f, err := Parse([]byte(""), "empty.yaml")
	if err != nil || f.AgentURL != "" {
		t.Errorf("empty file: %v %+v", err, f)
	}
	f, err = Parse([]byte(`
agent_url: http://127.0.0.1:8000
agent_timeout: 5s
policy:
  warn_below: 4
  rules:
    - name: r
      when: 'caller.trust_score < 8'
      decision: block
recorder:
  sync: always
identity:
  require_authenticated_callers: true
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if f.AgentTimeout != 5*time.Second || *f.Policy.WarnBelow != 4 || len(f.Policy.Rules) != 1 || f.Recorder.Sync != "always" || !f.Identity.RequireAuthenticatedCallers {
		t.Errorf("decoded %+v", f)
	}
}

func TestPrecedence(t *testing.T) {
	file := &File{AgentURL: "http://from-file", Listen: "0.0.0.0:9000", Manifest: bank, OverrideToken: "from-file-token-0123456789"}
	tests := []struct {
		name       string
		env        map[string]string
		flags      Flags
		wantURL    string
		wantListen string
		wantToken  string
	}{
		{"file only", nil, Flags{}, "http://from-file", "0.0.0.0:9000", "from-file-token-0123456789"},
		{"env beats file", map[string]string{"IATP_AGENT_URL": "http://from-env", "IATP_PORT": "9100", "IATP_TRUSTED_USER_OVERRIDE_TOKEN": "from-env-token-0123456789"}, Flags{},
			"http://from-env", "0.0.0.0:9100", "from-env-token-0123456789"},
		{"flags beat env", map[string]string{"IATP_AGENT_URL": "http://from-env", "IATP_PORT": "9100"}, Flags{AgentURL: "http://from-flag", Listen: "127.0.0.1:9200"},
			"http://from-flag", "127.0.0.1:9200", "from-file-token-0123456789"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := Resolve(file, ".", env(tt.env), tt.flags)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.AgentURL != tt.wantURL || cfg.Listen != tt.wantListen || cfg.OverrideToken != tt.wantToken {
				t.Errorf("url %q listen %q token %q", cfg.AgentURL, cfg.Listen, cfg.OverrideToken)
			}
			if cfg.DataDir != DefaultDataDir {
				t.Errorf("data dir %q", cfg.DataDir)
			}
		})
	}
}

func TestManifestFromEnv(t *testing.T) {
	m, err := ManifestFromEnv(env(map[string]string{
		"IATP_AGENT_ID": "env-agent", "IATP_TRUST_LEVEL": "trusted", "IATP_REVERSIBILITY": "full",
		"IATP_RETENTION": "ephemeral", "IATP_HUMAN_IN_LOOP": "false", "IATP_TRAINING_CONSENT": "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if m.AgentID() != "env-agent" || m.TrustLevel != manifest.Trusted || !m.Privacy.TrainingConsent || m.TrustScore() != 5+2+1+2+1-1 {
		t.Errorf("manifest %+v score %d", m, m.TrustScore())
	}
	m, err = ManifestFromEnv(env(map[string]string{"IATP_AGENT_ID": "bare"}))
	if err != nil || m.Privacy.RetentionPolicy != manifest.RetentionPermanent || m.Reversibility.Level != manifest.ReversibilityNone {
		t.Errorf("defaults: %+v %v", m, err)
	}
	_, err = ManifestFromEnv(env(map[string]string{"IATP_AGENT_ID": "x", "IATP_TRUST_LEVEL": "gold", "IATP_HUMAN_IN_LOOP": "maybe"}))
	if err == nil || !strings.Contains(err.Error(), `IATP_HUMAN_IN_LOOP="maybe"`) || !strings.Contains(err.Error(), `"gold" is not one of`) {
		t.Errorf("error %v, want both problems", err)
	}
	// The environment's manifest beats the file's, and --manifest beats both.
	cfg, src, err := Resolve(&File{Manifest: bank}, ".", env(map[string]string{"IATP_AGENT_ID": "env-agent", "IATP_AGENT_URL": "http://a"}), Flags{})
	if err != nil || cfg.Manifest.AgentID() != "env-agent" || !strings.Contains(src.Manifest, "environment") {
		t.Errorf("env manifest: %v %v", src, err)
	}
	if len(src.Warnings) != 1 || !strings.Contains(src.Warnings[0], "IATP_RETENTION is not set") {
		t.Errorf("warnings %q, want one about IATP_RETENTION", src.Warnings)
	}
	cfg, _, err = Resolve(nil, "", env(map[string]string{"IATP_AGENT_ID": "env-agent"}), Flags{Manifest: bank})
	if err != nil || cfg.Manifest.AgentID() != "secure-bank-agent" {
		t.Errorf("flag manifest: %v", err)
	}
}

func TestResolveErrors(t *testing.T) {
	dir := t.TempDir()
	_, _, err := Resolve(&File{Recorder: Recorder{Sync: "sometimes"}, Identity: Identity{TrustedAgents: map[string]string{"a": "not-a-key"}}},
		dir, env(map[string]string{"IATP_PORT": "99999"}), Flags{TrustedAgents: []string{"no-equals"}, Key: filepath.Join(dir, "missing.key")})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"IATP_PORT=\"99999\"", "no manifest", `recorder.sync: "sometimes"`, "identity.trusted_agents.a", `--trusted-agent "no-equals"`, "key:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestIdentityFromFiles(t *testing.T) {
	dir := t.TempDir()
	k, _ := identity.GenerateKey(nil)
	_, pubPath, err := identity.WriteKeyPair(dir, "caller", k)
	if err != nil {
		t.Fatal(err)
	}
	tokenPath := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenPath, []byte("admin-token-from-file-0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(bank)
	file := &File{Manifest: abs, AdminTokenFile: "admin.token", Identity: Identity{
		Key:           "caller.key",
		TrustedAgents: map[string]string{"inline": identity.FormatPublicKey(k.PublicKey()), "by-file": "caller.pub"},
	}}
	cfg, _, err := Resolve(file, dir, env(nil), Flags{ControlPlaneKeys: []string{"cp=" + pubPath}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tokenPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Resolve(file, dir, env(nil), Flags{}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("a token file readable by others: %v", err)
	}
	if cfg.Key.IsZero() || len(cfg.TrustedAgents) != 2 || len(cfg.ControlPlaneKeys) != 1 || cfg.AdminToken != "admin-token-from-file-0123" {
		t.Errorf("identity %+v admin %q", cfg.TrustedAgents, cfg.AdminToken)
	}
}
