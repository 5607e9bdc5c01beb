package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestMain runs the writer's process of -split when this test binary is
// started as one.
func TestMain(m *testing.M) {
	if os.Getenv(writerEnv) != "" {
		if err := writerProcess(context.Background(), os.Stdout); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestPipes runs the example in one process and across two, and checks
// the story it tells: the poisoned notes are stopped, the researcher falls
// to untrusted and is refused, and the recorder holds the report.
func TestPipes(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(map[bool]string{false: "one process", true: "two processes"}[split], func(t *testing.T) {
			var out strings.Builder
			if err := run(context.Background(), &out, t.TempDir(), split); err != nil {
				t.Fatal(err)
			}
			got := out.String()
			for _, want := range []string{
				"Our research shows that three sources agree on solar panels.",
				"stopped between researcher and writer by verify (injection): flagged by verifier injection",
				"researcher's reputation: 3.00 (unknown)",
				"Our research shows that three sources agree on wind turbines.",
				"researcher's reputation: 1.00 (untrusted)",
				"stopped between editor and researcher by policy (untrusted_target)",
				`A new pipeline with the researcher: pipe: untrusted agent: "researcher" may not take part in a pipeline: its reputation is 1 (untrusted)`,
				"reputation researcher → writer  block  hallucination",
				"blocked    researcher → writer  block  verifier:injection",
			} {
				if !strings.Contains(got, want) {
					t.Errorf("the output lacks %q:\n%s", want, got)
				}
			}
			if split && !strings.Contains(got, "(in process ") {
				t.Errorf("no draft came from the writer's process:\n%s", got)
			}
			if strings.Contains(got, "drop@evil.example") {
				t.Errorf("the injected address reached the output:\n%s", got)
			}
		})
	}
}
