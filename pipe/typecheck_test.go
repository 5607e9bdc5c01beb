package pipe

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStagesComposeOnlyWhenTypesMatch compiles pipes into this package
// (with go build -overlay) and checks that the compiler refuses every pipe
// whose stages do not fit: the check happens at compile time.
func TestStagesComposeOnlyWhenTypesMatch(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool")
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, code, want string
	}{
		{"matching types compile", `var _ = FanIn(FanOut(Then(From(NewStage[string, int](nil, nil)), NewStage[int, bool](nil, nil)),
	NewStage[bool, string](nil, nil), NewStage[bool, string](nil, nil)), NewStage[[]string, float64](nil, nil))`, ""},
		{"then with another input", `var _ = Then(From(NewStage[string, int](nil, nil)), NewStage[string, int](nil, nil))`,
			"type Stage[string, int] of NewStage[string, int](nil, nil) does not match inferred type Stage[int, Out] for Stage[Mid, Out]"},
		{"a branch of another input", `var _ = FanOut(From(NewStage[string, int](nil, nil)), NewStage[int, bool](nil, nil), NewStage[string, bool](nil, nil))`,
			"does not match"},
		{"branches of different outputs", `var _ = FanOut(From(NewStage[string, int](nil, nil)), NewStage[int, bool](nil, nil), NewStage[int, string](nil, nil))`,
			"does not match"},
		{"a fan-in that takes no slice", `var _ = FanIn(From(NewStage[string, int](nil, nil)), NewStage[int, bool](nil, nil))`,
			"does not match"},
		{"a run sent the wrong type", `func f(r *Run[string, int]) { r.Send(nil, 42) }`,
			"cannot use 42 (untyped int constant) as string value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "x.go")
			if err := os.WriteFile(src, []byte("package pipe\n\n"+tt.code+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			overlay, _ := json.Marshal(map[string]any{"Replace": map[string]string{filepath.Join(dir, "zz_typecheck.go"): src}})
			ovl := filepath.Join(t.TempDir(), "overlay.json")
			if err := os.WriteFile(ovl, overlay, 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(goTool, "build", "-overlay", ovl, ".").CombinedOutput()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("does not compile: %s", out)
			case tt.want != "" && err == nil:
				t.Error("compiles")
			case tt.want != "" && !strings.Contains(string(out), tt.want):
				t.Errorf("compiler says %s, want %q", out, tt.want)
			}
		})
	}
}
