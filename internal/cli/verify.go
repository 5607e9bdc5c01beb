package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/manifest"
)

// verifyResult is the --json output of iatp verify.
type verifyResult struct {
	Status     string           `json:"status"`  // success (exit 0) | fail (exit 1)
	Verdict    manifest.Verdict `json:"verdict"` // valid | high-risk | invalid
	File       string           `json:"file"`
	AgentID    string           `json:"agent_id"`
	TrustLevel string           `json:"trust_level"`
	TrustScore *int             `json:"trust_score"` // null when fields are invalid
	manifest.Findings
}

func newVerifyCmd(s *streams) *cobra.Command {
	var asJSON, verbose bool
	cmd := &cobra.Command{
		Use:   "verify MANIFEST",
		Short: "Validate a capability manifest (JSON or YAML, either shape) and show its trust score",
		Long: `Validate a capability manifest and show its trust score.

Every finding is an error (the manifest is invalid: a sidecar refuses it), a
high-risk finding (well-formed, and a sidecar serves it with a warning, but
callers cannot depend on it, such as an untrusted agent with no
reversibility) or a warning. iatp scan and the sidecar's start-up log report
the same findings in the same words.

Exit status: 0 when valid (warnings allowed), 1 when invalid or high-risk,
2 when the file cannot be read.`,
		Args:              exactArgs(1, "a manifest file"),
		ValidArgsFunction: manifestFileCompletion,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			data, err := manifest.ReadFile(path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
					return usagef("cannot read manifest: %v", err)
				}
				if !errors.Is(err, manifest.ErrNotManifest) {
					return usagef("%v", err)
				}
			}
			res := verifyResult{File: path}
			var m *manifest.Manifest
			if err == nil {
				var f *manifest.Findings
				if m, f, err = manifest.Assess(data); err == nil {
					res.Findings = *f
					res.AgentID, res.TrustLevel = m.AgentID(), string(m.TrustLevel)
					if f.FieldsValid() {
						score := m.TrustScore()
						res.TrustScore = &score
					}
				}
			}
			if err != nil { // not a manifest at all
				res.Findings = manifest.Findings{
					Errors:   []manifest.Problem{{Severity: manifest.SeverityError, Message: err.Error()}},
					HighRisk: []manifest.Problem{}, Warnings: []manifest.Problem{},
				}
			}
			res.Verdict = res.Findings.Verdict()
			res.Status = "success"
			if res.Verdict != manifest.VerdictValid {
				res.Status = "fail"
			}
			if asJSON {
				if err := encodeJSONIndent(s.out, res); err != nil {
					return err
				}
			} else {
				printVerify(s.out, &res, m, verbose)
			}
			if res.Status != "success" {
				return silentFail
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "also print the parsed manifest and its capabilities")
	return cmd
}

func printVerify(w io.Writer, res *verifyResult, m *manifest.Manifest, verbose bool) {
	fmt.Fprintf(w, "Manifest %s\n", res.File)
	if m != nil {
		fmt.Fprintf(w, "  Agent ID:     %s\n", orDash(res.AgentID))
		fmt.Fprintf(w, "  Trust level:  %s\n", orDash(res.TrustLevel))
		if res.TrustScore != nil {
			fmt.Fprintf(w, "  Trust score:  %d/10\n", *res.TrustScore)
		} else {
			fmt.Fprintf(w, "  Trust score:  - (fix the errors below first)\n")
		}
	}
	if verbose && m != nil {
		printCapabilities(w, m)
		spec, _ := json.MarshalIndent(m, "  ", "  ")
		fmt.Fprintf(w, "\nParsed manifest (spec shape):\n  %s\n", spec)
	}
	printFindings(w, &res.Findings)
	fmt.Fprintln(w)
	fmt.Fprintln(w, verdictLine(&res.Findings, "Fix the fields named above and run iatp verify again."))
}

// printFindings lists every finding of a manifest as iatp verify and iatp
// scan both show them: ✗ for errors and high-risk findings, ! for warnings,
// each in the words of manifest.Problem.String.
func printFindings(w io.Writer, f *manifest.Findings) {
	all := f.All()
	if len(all) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFindings:\n")
	for _, p := range all {
		mark := "✗"
		if p.Severity == manifest.SeverityWarning {
			mark = "!"
		}
		fmt.Fprintf(w, "  %s %s\n", mark, p)
	}
}

// verdictLine is the last line of iatp verify and iatp scan: the verdict,
// what each reader does with such a manifest, and what to do next (fix, for
// an invalid manifest).
func verdictLine(f *manifest.Findings, fix string) string {
	switch f.Verdict() {
	case manifest.VerdictInvalid:
		return fmt.Sprintf("✗ Invalid manifest (%s): a sidecar refuses to start with it. %s", plural(len(f.Errors), "error"), fix)
	case manifest.VerdictHighRisk:
		return fmt.Sprintf("✗ High-risk manifest (%s): well-formed, so a sidecar serves it and logs the same finding at start,\n"+
			"  but callers cannot depend on this agent. Change the claims named above, or do not publish it.",
			plural(len(f.HighRisk), "high-risk finding"))
	}
	return fmt.Sprintf("✓ Valid manifest (%s).", plural(len(f.Warnings), "warning"))
}

func printCapabilities(w io.Writer, m *manifest.Manifest) {
	c, r, p := m.Capabilities, m.Reversibility, m.Privacy
	fmt.Fprintf(w, "\nCapabilities:\n")
	fmt.Fprintf(w, "  Idempotent:        %s\n", yesNo(c.Idempotency))
	fmt.Fprintf(w, "  Reversibility:     %s", r.Level)
	if r.UndoWindowSeconds > 0 {
		fmt.Fprintf(w, " (undo window %s)", manifest.FormatDuration(r.UndoWindowSeconds*1000))
	}
	fmt.Fprintln(w)
	if c.SLALatencyMs > 0 {
		fmt.Fprintf(w, "  SLA latency:       %d ms\n", c.SLALatencyMs)
	}
	if c.RateLimit > 0 {
		fmt.Fprintf(w, "  Rate limit:        %d requests/minute\n", c.RateLimit)
	}
	fmt.Fprintf(w, "  Retention:         %s\n", p.RetentionPolicy)
	fmt.Fprintf(w, "  Human review:      %s\n", yesNo(p.HumanInLoop))
	fmt.Fprintf(w, "  Training consent:  %s\n", yesNo(p.TrainingConsent))
	if len(m.Scopes) > 0 {
		fmt.Fprintf(w, "  Scopes:            %v\n", m.Scopes)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// exactArgs is cobra.ExactArgs with a message that names what is missing,
// reported as a usage error (exit 2).
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s needs %s (got %d arguments); see iatp %s --help", cmd.Name(), what, len(args), cmd.Name())
		}
		return nil
	}
}
