package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
)

// attestEnv is a control-plane key pair, an agent key pair, a codebase and
// a config file in a temporary directory.
type attestEnv struct {
	dir, cpKey, cpPub, agentPub, code, conf string
}

func newAttestEnv(t *testing.T) *attestEnv {
	t.Helper()
	e := &attestEnv{dir: t.TempDir()}
	for _, name := range []string{"cp", "agent"} {
		if code, _, errOut := run(t, "keygen", "--out", e.dir, "--name", name); code != 0 {
			t.Fatal(errOut)
		}
	}
	e.cpKey, e.cpPub = filepath.Join(e.dir, "cp.key"), filepath.Join(e.dir, "cp.pub")
	e.agentPub = filepath.Join(e.dir, "agent.pub")
	e.code = filepath.Join(e.dir, "code")
	e.conf = filepath.Join(e.dir, "config.yaml")
	if err := os.MkdirAll(filepath.Join(e.code, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	for p, content := range map[string]string{
		filepath.Join(e.code, "main.py"):     "print('hi')\n",
		filepath.Join(e.code, "lib", "a.py"): "a = 1\n",
		e.conf:                               "port: 8080\n",
	} {
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *attestEnv) write(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAttestHash(t *testing.T) {
	e := newAttestEnv(t)
	code, out, _ := run(t, "attest", "hash", e.code)
	want, err := identity.HashTree(e.code, identity.TreeHashOptions{})
	if code != 0 || err != nil || out != want+"\n" {
		t.Fatalf("exit %d: %q, want %q", code, out, want)
	}
	if err := os.MkdirAll(filepath.Join(e.code, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.write(t, "code/.git/HEAD", "ref: main\n")
	code, out, _ = run(t, "attest", "hash", "--exclude", ".git", "--json", e.code)
	var res map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res["codebase_hash"] != want {
		t.Fatalf("--exclude .git --json: exit %d: %s", code, out)
	}
	if code, _, _ := run(t, "attest", "hash", e.conf); code != 2 {
		t.Fatalf("a file: exit %d, want 2", code)
	}
}

func TestAttestSignVerify(t *testing.T) {
	e := newAttestEnv(t)
	codeHash, _ := identity.HashTree(e.code, identity.TreeHashOptions{})
	sign := func(t *testing.T, extra ...string) (int, string, string) {
		t.Helper()
		args := append([]string{"attest", "sign", "--key", e.cpKey, "--key-id", "cp-prod", "--agent-id", "banking-agent"}, extra...)
		return run(t, args...)
	}

	code, v2, errOut := sign(t, "--codebase", e.code, "--config", e.conf, "--agent-key", e.agentPub)
	if code != 0 {
		t.Fatalf("sign v2: exit %d: %s", code, errOut)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(v2), &rec); err != nil {
		t.Fatal(err)
	}
	agentPub, _ := os.ReadFile(e.agentPub)
	if rec["signature_version"] != 2.0 || rec["verification_key"] != strings.TrimSpace(string(agentPub)) || rec["codebase_hash"] != codeHash {
		t.Fatalf("v2 record: %s", v2)
	}
	v2File := e.write(t, "v2.json", v2)

	code, v1, errOut := sign(t, "--codebase-hash", codeHash, "--config-hash", identity.HashBytes([]byte("port: 8080\n")), "--v1", "--expires-in", "1h")
	if code != 0 || strings.Contains(v1, "signature_version") || strings.Contains(v1, "verification_key") {
		t.Fatalf("sign v1: exit %d: %s %s", code, v1, errOut)
	}
	v1File := e.write(t, "v1.json", v1)

	verify := func(extra ...string) (int, string, string) {
		return run(t, append([]string{"attest", "verify", "--trusted-key", "cp-prod=" + e.cpPub}, extra...)...)
	}
	for name, tc := range map[string]struct {
		args     []string
		code     int
		contains string
	}{
		"v2 valid":                  {[]string{v2File}, 0, "Valid v2 attestation for agent banking-agent"},
		"v1 valid":                  {[]string{v1File}, 0, "binds no agent key"},
		"expected codebase":         {[]string{"--expect-codebase-hash", codeHash, "--expect-agent-id", "banking-agent", v2File}, 0, "Valid"},
		"other codebase":            {[]string{"--expect-codebase-hash", identity.HashBytes(nil), v2File}, 1, "codebase hash mismatch"},
		"other agent":               {[]string{"--expect-agent-id", "evil", v1File}, 1, "agent id mismatch"},
		"v2 required":               {[]string{"--require-v2", v1File}, 1, "v2 required"},
		"v1 past max age":           {[]string{"--max-age", "1ns", v1File}, 1, "attestation too old"},
		"expires_at moved":          {[]string{e.write(t, "moved.json", strings.Replace(v2, `"expires_at": "20`, `"expires_at": "21`, 1))}, 1, "bad signature"},
		"agent id edited":           {[]string{e.write(t, "edited.json", strings.Replace(v1, "banking-agent", "evil-agent", 1))}, 1, "bad signature"},
		"not JSON":                  {[]string{e.write(t, "junk.json", "nope")}, 1, "malformed"},
		"missing file":              {[]string{filepath.Join(e.dir, "missing.json")}, 2, "no such file"},
		"stdin is not used by path": {[]string{v2File, "extra"}, 2, "needs"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := verify(tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.contains) {
				t.Fatalf("exit %d (want %d), output:\n%s%s\nwant it to contain %q", code, tc.code, out, errOut, tc.contains)
			}
		})
	}
	// Unknown signing key: the record names cp-prod, the verifier knows
	// only "other".
	code, _, errOut = run(t, "attest", "verify", "--trusted-key", "other="+e.cpPub, v2File)
	if code != 1 || !strings.Contains(errOut, `unknown signing key "cp-prod"`) {
		t.Fatalf("unknown key: exit %d: %s", code, errOut)
	}
	// --json reports the reason and keeps exit 1.
	code, out, _ := verify("--json", "--expect-agent-id", "evil", v2File)
	var res attestVerifyResult
	if code != 1 || json.Unmarshal([]byte(out), &res) != nil || res.Valid || !strings.Contains(res.Error, "agent id mismatch") {
		t.Fatalf("--json failure: exit %d: %s", code, out)
	}
	code, out, _ = verify("--json", v2File)
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.Valid || res.Version != 2 {
		t.Fatalf("--json success: exit %d: %s", code, out)
	}
	// Expired: a record made to expire at once, checked a moment later.
	_, short, _ := sign(t, "--codebase", e.code, "--config", e.conf, "--agent-key", e.agentPub, "--expires-in", "1ms")
	time.Sleep(5 * time.Millisecond)
	code, _, errOut = verify(e.write(t, "short.json", short))
	if code != 1 || !strings.Contains(errOut, "attestation expired") {
		t.Fatalf("expired: exit %d: %s", code, errOut)
	}
}

func TestAttestSignUsage(t *testing.T) {
	e := newAttestEnv(t)
	base := []string{"attest", "sign", "--key", e.cpKey, "--key-id", "cp", "--agent-id", "a"}
	hashes := []string{"--codebase-hash", identity.HashBytes(nil), "--config-hash", identity.HashBytes(nil)}
	loose := e.write(t, "loose.key", "")
	keyPEM, _ := os.ReadFile(e.cpKey)
	if err := os.WriteFile(loose, keyPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args     []string
		contains string
	}{
		"no key":              {[]string{"attest", "sign", "--key-id", "cp", "--agent-id", "a"}, "needs --key"},
		"both codebase":       {append(append(base, hashes...), "--codebase", e.code, "--v1"), "exactly one of --codebase"},
		"no config":           {append(base, "--codebase", e.code, "--v1"), "exactly one of --config"},
		"v2 without key":      {append(base, hashes...), "needs --agent-key"},
		"v1 with agent key":   {append(append(base, hashes...), "--v1", "--agent-key", e.agentPub), "cannot bind"},
		"bad hash":            {append(base, "--codebase-hash", "abc", "--config-hash", "def", "--v1"), "codebase_hash"},
		"loose key file":      {[]string{"attest", "sign", "--key", loose, "--key-id", "cp", "--agent-id", "a", "--v1", hashes[0], hashes[1], hashes[2], hashes[3]}, "chmod 600"},
		"negative lifetime":   {append(append(base, hashes...), "--v1", "--expires-in", "-1h"), "--expires-in"},
		"agent key not a key": {append(append(base, hashes...), "--agent-key", e.conf), "--agent-key"},
	} {
		t.Run(name, func(t *testing.T) {
			code, _, errOut := run(t, tc.args...)
			if code != 2 || !strings.Contains(errOut, tc.contains) {
				t.Fatalf("exit %d (want 2): %s (want %q)", code, errOut, tc.contains)
			}
		})
	}
	for name, args := range map[string][]string{
		"no trusted key":             {"attest", "verify", e.conf},
		"bad trusted key":            {"attest", "verify", "--trusted-key", "cp", e.conf},
		"trusted key file not a key": {"attest", "verify", "--trusted-key", "cp=" + e.conf, e.conf},
		"no subcommand":              {"attest"},
	} {
		if code, _, _ := run(t, args...); code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
}
