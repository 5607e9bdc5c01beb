package layout

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/iatp/iatp/"

// allowed lists, for each package, the iatp packages it may import besides
// internal/wire, which every package may import.
var allowed = map[string][]string{
	"internal/wire":       {},
	"manifest":            {},
	"detect":              {},
	"identity":            {},
	"recorder":            {},
	"reputation":          {"manifest", "detect", "identity"},
	"reputation/gossip":   {"reputation", "identity"},
	"reputation/natsmesh": {"reputation"},
	"policy":              {"manifest", "detect"},
	"pipeline":            {"manifest", "detect", "policy", "recorder", "identity"},
	"client":              {"manifest", "policy", "recorder", "identity", "pipeline"},
	"sidecar":             {"manifest", "detect", "policy", "recorder", "reputation", "reputation/gossip", "reputation/natsmesh", "identity", "pipeline", "client"},
	"pipe":                {"manifest", "detect", "policy", "recorder", "identity", "pipeline", "pipe/frame"},
	"pipe/frame":          {"identity"},
	// The cascade experiment runs real sidecars and reads what their
	// reputation nodes hold; internal/cli runs it.
	"internal/cascade": {"sidecar", "manifest", "policy", "recorder", "reputation", "identity"},
}

// TestDependenciesPointOneWay fails when a package imports an iatp package
// above it or beside it.
func TestDependenciesPointOneWay(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"...").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(fields[0], module)
		want, ok := allowed[pkg]
		if !ok {
			continue
		}
		seen++
		for _, imp := range fields[1:] {
			dep, isOurs := strings.CutPrefix(imp, module)
			if isOurs && dep != "internal/wire" && !slices.Contains(want, dep) {
				t.Errorf("%s imports %s; it may import only %v", pkg, dep, want)
			}
		}
	}
	if seen != len(allowed) {
		t.Errorf("checked %d packages, want %d: was one renamed?", seen, len(allowed))
	}
}
