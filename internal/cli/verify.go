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
	Status     string             `json:"status"` // success | fail
	File       string             `json:"file"`
	AgentID    string             `json:"agent_id"`
	TrustLevel string             `json:"trust_level"`
	TrustScore *int               `json:"trust_score"` // null when fields are invalid
	Errors     []manifest.Problem `json:"errors"`
	Warnings   []manifest.Problem `json:"warnings"`
}

func newVerifyCmd(s *streams) *cobra.Command {
	var asJSON, verbose bool
	cmd := &cobra.Command{
		Use:   "verify MANIFEST",
		Short: "Validate a capability manifest (JSON or YAML, either shape) and show its trust score",
		Long: `Validate a capability manifest and show its trust score.

Exit status: 0 when valid (warnings allowed), 1 when invalid or its claims
contradict each other, 2 when the file cannot be read.`,
		Args: exactArgs(1, "a manifest file"),
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
			res := verifyResult{File: path, Errors: []manifest.Problem{}, Warnings: []manifest.Problem{}}
			var m *manifest.Manifest
			if err == nil {
				var rep *manifest.Report
				m, rep, err = manifest.Inspect(data)
				if err == nil {
					res.Errors, res.Warnings = rep.Errors, rep.Warnings
					res.AgentID, res.TrustLevel = m.AgentID(), string(m.TrustLevel)
					if rep.FieldsValid() {
						score := m.TrustScore()
						res.TrustScore = &score
					}
				}
			}
			if err != nil { // not a manifest at all
				res.Errors = []manifest.Problem{{Message: err.Error()}}
			}
			res.Status = "success"
			if len(res.Errors) > 0 {
				res.Status = "fail"
			}
			if asJSON {
				enc := json.NewEncoder(s.out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
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
	if len(res.Errors) > 0 {
		fmt.Fprintf(w, "\nErrors:\n")
		for _, p := range res.Errors {
			fmt.Fprintf(w, "  ✗ %s\n", p)
		}
	}
	if len(res.Warnings) > 0 {
		fmt.Fprintf(w, "\nWarnings:\n")
		for _, p := range res.Warnings {
			fmt.Fprintf(w, "  ! %s\n", p)
		}
	}
	fmt.Fprintln(w)
	if res.Status == "success" {
		fmt.Fprintf(w, "✓ Valid manifest (%s).\n", plural(len(res.Warnings), "warning"))
	} else {
		fmt.Fprintf(w, "✗ Invalid manifest (%s). Fix the fields named above and run iatp verify again.\n", plural(len(res.Errors), "error"))
	}
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
