package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

const bank = "../../examples/manifests/secure_bank.json"

func TestLoadStrict(t *testing.T) {
	for _, tt := range []struct{ doc, want string }{
		{"agent_url: http://x\nlisen: :80\n", "c.yaml:2: unknown key lisen (did you mean listen?)"},
		{"policy:\n  warn_bellow: 3\n", "c.yaml:2: unknown key warn_bellow (did you mean warn_below?)"},
		{"recorder:\n  recover: 1\n  sinc: batch\n", "c.yaml:3: unknown key sinc (did you mean sync?)"},
		{"identity:\n  public: https://x\n", "c.yaml:2: unknown key public (did you mean public_url?)"},
		{"zzz: 1\n", "c.yaml:1: unknown key zzz (docs/configuration.md lists every key)"},
		{"agent_timeout: soon\n", `c.yaml:1: "soon" is not a duration: write a number with a unit, such as 500ms`},
		{"server:\n  idle_timeout: 30\n", `c.yaml:2: "30" is not a duration`},
		{"max_body_bytes: 10MiB\n", `c.yaml:1: "10MiB" is not a whole number (sizes are in bytes, without a suffix)`},
		{"redact_forwarded: maybe\n", `c.yaml:1: "maybe" is not a boolean: write true or false`},
		{"a: 1\n---\nb: 2\n", "c.yaml:1: unknown key a"},
		{"agent_url: x\n---\nlisten: y\n", "more than one YAML document"},
		{"agent_url: x\n  listen: y\n", "c.yaml:2: YAML syntax error: mapping values are not allowed in this context (check the indentation"},
		{"agent_url: x\n\tlisten: y\n", "YAML indents with spaces, not tabs"},
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
	cfg, _, err = Resolve(nil, "", env(map[string]string{"IATP_AGENT_ID": "env-agent"}), Flags{Manifest: bank, AgentURL: "http://a"})
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

// TestParseKeepsTheRest checks that a file with unknown keys and wrong
// types comes back decoded except for them, with every problem at once.
func TestParseKeepsTheRest(t *testing.T) {
	f, err := Parse([]byte("agent_url: http://127.0.0.1:8000\nagent_timout: 5s\nlisten: :9000\nrecorder:\n  sinc: batch\n"), "c.yaml")
	if f == nil || f.AgentURL != "http://127.0.0.1:8000" || f.Listen != ":9000" {
		t.Errorf("partly decoded file = %+v", f)
	}
	if got := len(unjoin(err)); got != 2 {
		t.Errorf("%d problems, want 2: %v", got, err)
	}
}

// TestResolveListenAndAgentURL checks the remedies given for the usual
// slips in addresses, each naming where the value came from.
func TestResolveListenAndAgentURL(t *testing.T) {
	tests := []struct {
		name  string
		file  *File
		env   map[string]string
		flags Flags
		want  string // "" for no error
	}{
		{"bare port flag", nil, nil, Flags{Listen: "8011"}, `--listen "8011" has no host: did you mean 127.0.0.1:8011 (this machine only) or :8011 (every interface)?`},
		{"bare port in file", &File{Listen: "8011"}, nil, Flags{}, `listen "8011" has no host: did you mean 127.0.0.1:8011`},
		{"not an address", nil, nil, Flags{Listen: "localhost"}, `--listen "localhost" is not host:port: write, for example, 127.0.0.1:8001`},
		{"port out of range", nil, nil, Flags{Listen: ":70000"}, `--listen ":70000": the port must be a number from 1 to 65535`},
		{"every interface", nil, nil, Flags{Listen: ":8011"}, ""},
		{"agent URL without scheme", nil, nil, Flags{AgentURL: "localhost:8000"}, `--agent-url "localhost:8000" is not an absolute http:// or https:// URL: did you mean http://localhost:8000?`},
		{"agent URL from env", nil, map[string]string{"IATP_AGENT_URL": "ftp://x"}, Flags{}, `IATP_AGENT_URL "ftp://x" is not an absolute http:// or https:// URL`},
		{"agent URL from file", &File{AgentURL: "127.0.0.1:8000"}, nil, Flags{}, `agent_url "127.0.0.1:8000" is not an absolute http:// or https:// URL: did you mean http://127.0.0.1:8000?`},
		{"no agent URL", nil, nil, Flags{AgentURL: "-"}, "no agent URL: give --agent-url URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			flags := tt.flags
			flags.Manifest = bank
			switch {
			case flags.AgentURL == "-":
				flags.AgentURL = ""
			case flags.AgentURL == "" && tt.env == nil && (tt.file == nil || tt.file.AgentURL == ""):
				flags.AgentURL = "http://127.0.0.1:8000"
			}
			_, _, err := Resolve(tt.file, ".", env(tt.env), flags)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
}

// TestResolveReportsEverything checks that problems from every source come
// back together.
func TestResolveReportsEverything(t *testing.T) {
	warn := 20
	file := &File{Listen: "8011", Policy: policy.Config{WarnBelow: &warn}, Manifest: "absent.json"}
	_, _, err := Resolve(file, t.TempDir(), env(map[string]string{"IATP_PORT": "x"}), Flags{AgentURL: "localhost:8000"})
	for _, want := range []string{`listen "8011" has no host`, `IATP_PORT="x"`, "policy.warn_below: 20 is outside 0–11", `--agent-url "localhost:8000"`, "absent.json: no such file or directory (check the path"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

// unjoin returns the errors joined in err.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
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
	file := &File{AgentURL: "http://127.0.0.1:8000", Manifest: abs, AdminTokenFile: "admin.token", Identity: Identity{
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
