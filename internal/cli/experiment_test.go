package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExperimentCascade runs a small cascade experiment end to end through
// the command line and checks what it prints and writes.
func TestExperimentCascade(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := run(t, "experiment", "cascade", "--agents", "10", "--rounds", "6", "--bad", "0.2", "--seed", "6",
		"--out", out, "-q")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"| | control (no sidecars) | iatp | iatp without propagation |",
		"poisoned requests that reached an irreversible action", "Written: " + filepath.Join(out, "cascade.json")} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("-q still wrote to stderr: %s", stderr)
	}
	md, err := os.ReadFile(filepath.Join(out, "cascade.md"))
	if err != nil || !strings.Contains(stdout, string(md)) {
		t.Errorf("cascade.md is not the table printed: %v", err)
	}
	png, err := os.ReadFile(filepath.Join(out, "cascade.png"))
	if err != nil || !strings.HasPrefix(string(png), "\x89PNG") {
		t.Errorf("cascade.png: %v", err)
	}
	var res struct {
		Config struct {
			Agents int    `json:"agents"`
			Seed   uint64 `json:"seed"`
		} `json:"config"`
		Arms []struct {
			Name string `json:"name"`
		} `json:"arms"`
	}
	js, err := os.ReadFile(filepath.Join(out, "cascade.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, &res); err != nil || res.Config.Agents != 10 || res.Config.Seed != 6 || len(res.Arms) != 3 {
		t.Errorf("cascade.json: %v %+v", err, res)
	}

	code, stdout, _ = run(t, "experiment", "cascade", "--agents", "10", "--rounds", "3", "--arms", "control", "--json", "--out", t.TempDir())
	if code != 0 || json.Unmarshal([]byte(stdout), &res) != nil || len(res.Arms) != 1 || res.Arms[0].Name != "control" {
		t.Errorf("--json --arms control: exit %d\n%s", code, stdout)
	}
}

func TestExperimentCascadeUsage(t *testing.T) {
	code, stdout, stderr := run(t, "experiment", "cascade", "--recall", "1.5", "--json", "--out", t.TempDir())
	var res jsonError
	if code != exitUsage || json.Unmarshal([]byte(stdout), &res) != nil || !strings.Contains(stderr, "recall (R) 1.5 is not a probability") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, _ := run(t, "experiment", "cascade", "--agents", "x"); code != exitUsage {
		t.Errorf("--agents x: exit %d", code)
	}
}

func TestExperimentCascadeBadRule(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	code, _, stderr := run(t, "experiment", "cascade", "--rule", "caller.trust_scor < 7")
	if code != exitUsage || !strings.Contains(stderr, `caller has no field "trust_scor"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("a refused run left %d entries in TMPDIR", len(left))
	}
}
