package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/iatp/iatp/internal/cascade"
)

func newExperimentCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "experiment",
		Short: "Measure what iatp does on a mesh of real agents and sidecars",
		Long: `Experiments run many agents, each behind a real iatp sidecar, in this
process on loopback, and measure what the protocol achieves.

  iatp experiment cascade   do slashes stop hallucinations spreading? (docs/cascade.md)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newCascadeCmd(s))
	return cmd
}

func newCascadeCmd(s *streams) *cobra.Command {
	cfg := cascade.NewConfig()
	var (
		out     string
		asJSON  bool
		arms    []string
		quietly bool
	)
	cmd := &cobra.Command{
		Use:   "cascade",
		Short: "Measure whether iatp stops hallucinations spreading through a mesh of agents",
		Long: `Start a layered mesh of agents on loopback — entry agents, summarisers,
planners and executors that write, pay and delete — some of which
hallucinate, and play the same seeded traffic three times: agents calling
each other directly (control), every agent behind a real iatp sidecar with
reputation events spreading over NATS JetStream (iatp), and the same
without propagation. A verifier with recall R and false-positive rate P
slashes what it flags through the signed verifier API.

Prints a Markdown table: poisoned requests that reached an irreversible
action, honest agents cut off, time to mesh-wide isolation, added latency
per hop. Writes cascade.md, cascade.json and the plot cascade.png to --out
(default: a new temporary directory). Counts are the same for the same
seed and flags; times are measured. docs/cascade.md explains the model.

Exit status: 0 when the run completed, 1 when it could not.`,
		Example: `  iatp experiment cascade
  iatp experiment cascade --bad 0.2 --recall 0.9 --seed 7 --out ./cascade
  iatp experiment cascade --agents 9 --rounds 10 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Arms = arms
			if !quietly && !asJSON {
				cfg.Progress = s.err
			}
			if out != "" {
				if err := os.MkdirAll(out, 0o755); err != nil {
					return failf("experiment cascade: %v", err)
				}
			}
			res, err := cascade.Run(cmd.Context(), cfg)
			if err != nil {
				if errors.Is(err, cascade.ErrInvalidConfig) {
					return usagef("experiment cascade: %v", err)
				}
				return failf("experiment cascade: %v", err)
			}
			dir := out
			if dir == "" {
				if dir, err = os.MkdirTemp("", "iatp-experiment-"); err != nil {
					return failf("experiment cascade: %v", err)
				}
			}
			files, err := writeCascade(dir, res)
			if err != nil {
				return failf("experiment cascade: %v", err)
			}
			if asJSON {
				if !quietly {
					fmt.Fprintf(s.err, "experiment cascade: wrote %s\n", strings.Join(files, ", "))
				}
				enc := json.NewEncoder(s.out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(res); err != nil {
					return failf("experiment cascade: %v", err)
				}
				return nil
			}
			fmt.Fprintf(s.out, "iatp experiment cascade: done in %s\n\n", time.Duration(res.Seconds*float64(time.Second)).Round(100*time.Millisecond))
			if err := res.WriteMarkdown(s.out); err != nil {
				return failf("experiment cascade: %v", err)
			}
			fmt.Fprintf(s.out, "\nWritten: %s\n", strings.Join(files, ", "))
			fmt.Fprintf(s.out, "docs/cascade.md says what each figure means; change the seed (--seed) or the mesh (--bad, --recall, --false-positive …) to see how they move.\n")
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Agents, "agents", cfg.Agents, "agents in the mesh (20 % entry, 30 % executors, the rest summarise and plan)")
	f.IntVar(&cfg.Fanout, "fanout", cfg.Fanout, "agents of the next layer each agent may call")
	f.Float64Var(&cfg.BadShare, "bad", cfg.BadShare, "share F of agents that hallucinate (chosen among the non-executors)")
	f.Float64Var(&cfg.Params.Hallucination, "hallucination", cfg.Params.Hallucination, "probability H that a bad agent's output is poisoned")
	f.Float64Var(&cfg.Params.DestructiveShare, "destructive-share", cfg.Params.DestructiveShare, "share of poisoned outputs to summarisers and planners that name a destructive task (the others are fabricated instructions)")
	f.Float64Var(&cfg.Params.Recall, "recall", cfg.Params.Recall, "probability R that the verifier flags a poisoned output")
	f.Float64Var(&cfg.Params.FalsePositive, "false-positive", cfg.Params.FalsePositive, "probability P that the verifier flags any other output")
	f.StringVar(&cfg.Severity, "severity", cfg.Severity, "severity of the verifier's slashes: critical (−2), high (−1), medium (−0.5) or low (−0.25)")
	f.IntVar(&cfg.Rounds, "rounds", cfg.Rounds, "rounds of traffic; in each, every entry agent gets one request")
	f.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the topology, the bad agents, the traffic and the verifier's errors")
	f.StringVar(&cfg.Transport, "transport", cfg.Transport, "how reputation events spread in the iatp arm: nats (an embedded JetStream server) or http (gossip between peers)")
	f.IntVar(&cfg.GossipPeers, "gossip-peers", cfg.GossipPeers, "peers of each sidecar with --transport http")
	f.StringVar(&cfg.Rule, "rule", cascade.DefaultRule, "CEL condition under which every ingress blocks a request (operator rule "+cascade.RuleName+")")
	f.IntVar(&cfg.SummaryEvery, "summary-every", cfg.SummaryEvery, "turn what each egress saw into summary events every N rounds (0: never, as within a sidecar's first minute)")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "requests in flight at once within a round (counts do not depend on it; latencies do)")
	f.StringSliceVar(&arms, "arms", nil, "arms to run (default all): "+strings.Join(cascade.Arms, ","))
	f.StringVar(&out, "out", "", "directory for cascade.md, cascade.json and cascade.png (default: a new temporary directory)")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	f.BoolVarP(&quietly, "quiet", "q", false, "do not report progress on stderr")
	return cmd
}

// writeCascade writes the table, the JSON result and the plot into dir
// and returns their paths.
func writeCascade(dir string, res *cascade.Result) ([]string, error) {
	var md, js, png bytes.Buffer
	if err := res.WriteMarkdown(&md); err != nil {
		return nil, err
	}
	enc := json.NewEncoder(&js)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return nil, err
	}
	if err := res.WritePlot(&png); err != nil {
		return nil, fmt.Errorf("plot: %w", err)
	}
	var paths []string
	for name, b := range map[string][]byte{"cascade.md": md.Bytes(), "cascade.json": js.Bytes(), "cascade.png": png.Bytes()} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths, nil
}
