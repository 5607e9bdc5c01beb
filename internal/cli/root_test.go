package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestVersionFlag(t *testing.T) {
	code, out, _ := run(t, "--version")
	_, want, _ := run(t, "version")
	if code != exitOK || out != want || !strings.HasPrefix(out, "iatp ") {
		t.Errorf("iatp --version = %d %q, want %q as iatp version says", code, out, want)
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish", "powershell"} {
		code, out, errOut := run(t, "completion", shell)
		if code != exitOK || !strings.Contains(out, "iatp") {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %s", shell, code, len(out), errOut)
		}
	}
	// The scripts call back into iatp; manifest arguments complete with
	// JSON and YAML files.
	code, out, _ := run(t, "__complete", "verify", "")
	if code != exitOK || !strings.Contains(out, "json\nyaml\nyml\n:8") {
		t.Errorf("__complete verify: %d %q", code, out)
	}
}

// TestJSONEverywhere checks that every command of this package but those
// with their own owners (audit, demo) and cobra's (completion, help) has
// --json, and that a failure under --json still prints JSON on stdout.
func TestJSONEverywhere(t *testing.T) {
	root := newRootCmd(&streams{in: strings.NewReader(""), out: &strings.Builder{}, err: &strings.Builder{}})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		switch c.Name() {
		case "audit", "demo", "completion", "help":
			return
		}
		if c.HasSubCommands() {
			for _, sub := range c.Commands() {
				walk(sub)
			}
			return
		}
		if c.Flags().Lookup("json") == nil {
			t.Errorf("%s has no --json", c.CommandPath())
		}
	}
	walk(root)

	code, out, errOut := run(t, "verify", "--json", "/nonexistent/manifest.json")
	var res jsonError
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != exitUsage || res.ExitStatus != exitUsage || res.Status != "fail" ||
		!strings.Contains(res.Error, "no such file") || !strings.Contains(errOut, "no such file") {
		t.Errorf("exit %d, stdout %q (%v), stderr %q", code, out, err, errOut)
	}
	if code, out, _ := run(t, "verify", "/nonexistent/manifest.json"); code != exitUsage || out != "" {
		t.Errorf("without --json: exit %d, stdout %q", code, out)
	}
}
