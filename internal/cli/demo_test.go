package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo runs the README's main command, keeps the data, and checks the
// flight recorders it leaves verify — and stop verifying after a one-byte edit.
func TestDemo(t *testing.T) {
	keep := t.TempDir()
	code, out, errOut := run(t, "demo", "--keep", keep)
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out, "✗") || !strings.Contains(out, "All steps passed.") {
		t.Errorf("demo output:\n%s", out)
	}
	for _, agent := range []string{"secure-bank-agent", "honeypot-agent"} {
		dir := filepath.Join(keep, agent)
		if code, out, errOut := run(t, "audit", "verify", dir); code != 0 {
			t.Fatalf("audit verify %s: exit %d\n%s%s", agent, code, out, errOut)
		}
	}
	segs, err := filepath.Glob(filepath.Join(keep, "honeypot-agent", "recorder", "seg-*"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segments: %v", err)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(data), "CREDIT_CARD_REDACTED")
	data[i] = 'X'
	if err := os.WriteFile(segs[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run(t, "audit", "verify", filepath.Join(keep, "honeypot-agent")); code != 1 {
		t.Errorf("audit verify after a one-byte edit: exit %d\n%s%s", code, out, errOut)
	}
}

// TestDemoLeavesNothing checks the demo without --keep removes its files.
func TestDemoLeavesNothing(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	if code, out, _ := run(t, "demo"); code != 0 {
		t.Fatalf("demo exit %d\n%s", code, out)
	}
	left, _ := os.ReadDir(tmp)
	if len(left) != 0 {
		t.Errorf("the demo left %d entries in TMPDIR", len(left))
	}
}
