package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iatp/iatp/identity"
)

func TestManifestSignVerify(t *testing.T) {
	e := newAttestEnv(t)
	agentKey := filepath.Join(e.dir, "agent.key")
	code, signed, errOut := run(t, "manifest", "sign", "--key", agentKey, "--key-id", "agent-2026", exampleManifest("booking_agent.json"))
	if code != 0 {
		t.Fatalf("sign: exit %d: %s", code, errOut)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(signed), &doc); err != nil || doc["agent_id"] != "booking-agent" {
		t.Fatalf("signed document: %v\n%s", err, signed)
	}
	signedFile := e.write(t, "signed.json", signed)

	// A second key signs beside the first (rotation).
	cpSigned := func() string {
		code, out, errOut := run(t, "manifest", "sign", "--key", e.cpKey, "--key-id", "cp", signedFile)
		if code != 0 {
			t.Fatalf("second signature: exit %d: %s", code, errOut)
		}
		return e.write(t, "both.json", out)
	}()

	verify := func(args ...string) (int, string, string) {
		return run(t, append([]string{"manifest", "verify"}, args...)...)
	}
	for name, tc := range map[string]struct {
		args     []string
		code     int
		contains string
	}{
		"valid":                 {[]string{"--key", "agent-2026=" + e.agentPub, signedFile}, 0, `verified by 1 key ("agent-2026")`},
		"both keys":             {[]string{"--key", "agent-2026=" + e.agentPub, "--key", "cp=" + e.cpPub, cpSigned}, 0, "verified by 2 keys"},
		"only the new key":      {[]string{"--key", "cp=" + e.cpPub, cpSigned}, 0, `("cp")`},
		"unknown kid only":      {[]string{"--key", "other=" + e.cpPub, signedFile}, 1, "no valid signature"},
		"wrong key for the kid": {[]string{"--key", "agent-2026=" + e.cpPub, signedFile}, 1, "bad signature"},
		"tampered": {[]string{"--key", "agent-2026=" + e.agentPub,
			e.write(t, "tampered.json", strings.Replace(signed, `"rate_limit": 100`, `"rate_limit": 1000`, 1))}, 1, "bad signature"},
		"unsigned":      {[]string{"--key", "agent-2026=" + e.agentPub, exampleManifest("booking_agent.json")}, 1, "not signed"},
		"no key":        {[]string{signedFile}, 2, "--key"},
		"missing file":  {[]string{"--key", "agent-2026=" + e.agentPub, filepath.Join(e.dir, "nope.json")}, 2, "no such file"},
		"key file junk": {[]string{"--key", "agent-2026=" + e.conf, signedFile}, 2, "invalid key"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := verify(tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.contains) {
				t.Fatalf("exit %d (want %d):\n%s%s\nwant %q", code, tc.code, out, errOut, tc.contains)
			}
		})
	}
	code, out, _ := verify("--json", "--key", "agent-2026="+e.agentPub, signedFile)
	var res manifestVerifyResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.Valid || len(res.Verified) != 1 {
		t.Fatalf("--json: exit %d: %s", code, out)
	}
	// The library agrees with the command line.
	pub, _ := identity.ReadPublicKeyFile(e.agentPub)
	data, _ := os.ReadFile(signedFile)
	if _, err := identity.VerifyManifestKey(data, pub); err != nil {
		t.Fatal(err)
	}
}

func TestManifestSignUsage(t *testing.T) {
	e := newAttestEnv(t)
	agentKey := filepath.Join(e.dir, "agent.key")
	for name, tc := range map[string]struct {
		args []string
		code int
	}{
		"no key id":        {[]string{"manifest", "sign", "--key", agentKey, exampleManifest("booking_agent.json")}, 2},
		"missing manifest": {[]string{"manifest", "sign", "--key", agentKey, "--key-id", "k", filepath.Join(e.dir, "nope.json")}, 2},
		"invalid manifest": {[]string{"manifest", "sign", "--key", agentKey, "--key-id", "k", e.write(t, "bad.json", `{"trust_level":"gold"}`)}, 1},
		"no subcommand":    {[]string{"manifest"}, 2},
	} {
		if code, _, errOut := run(t, tc.args...); code != tc.code {
			t.Errorf("%s: exit %d, want %d: %s", name, code, tc.code, errOut)
		}
	}
}
