package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iatp/iatp/identity"
)

func TestKeygen(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := run(t, "keygen", "--out", dir, "--name", "cp")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	keyPath, pubPath := filepath.Join(dir, "cp.key"), filepath.Join(dir, "cp.pub")
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v %v", fi.Mode(), err)
	}
	key, err := identity.ReadPrivateKeyFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := identity.ReadPublicKeyFile(pubPath)
	if err != nil || !pub.Equal(key.PublicKey()) {
		t.Fatalf("public key file does not match: %v", err)
	}
	pubText, _ := os.ReadFile(pubPath)
	if !strings.HasPrefix(string(pubText), "ed25519:") || strings.Count(string(pubText), "\n") != 1 {
		t.Fatalf("pub file = %q", pubText)
	}
	if !strings.Contains(out, identity.FormatPublicKey(pub)) || !strings.Contains(out, "Next:") {
		t.Fatalf("output:\n%s", out)
	}

	// Never overwrites.
	before, _ := os.ReadFile(keyPath)
	code, _, errOut = run(t, "keygen", "--out", dir, "--name", "cp")
	if code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("overwrite: exit %d, %s", code, errOut)
	}
	if after, _ := os.ReadFile(keyPath); string(after) != string(before) {
		t.Fatal("key file changed")
	}

	code, out, _ = run(t, "keygen", "--out", dir, "--name", "agent", "--json")
	var res keygenResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.PublicKey == "" || res.PrivateKeyFile != filepath.Join(dir, "agent.key") {
		t.Fatalf("--json: exit %d, %s", code, out)
	}

	for name, args := range map[string][]string{
		"bad name":    {"keygen", "--out", dir, "--name", "../x"},
		"missing dir": {"keygen", "--out", filepath.Join(dir, "nope")},
		"argument":    {"keygen", "extra"},
	} {
		if code, _, _ := run(t, args...); code != 2 {
			t.Errorf("%s: exit %d, want 2", name, code)
		}
	}
}
