package cascade

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// armTitles are the arms' names in tables.
var armTitles = map[string]string{
	ArmControl:       "control (no sidecars)",
	ArmIATP:          "iatp",
	ArmNoPropagation: "iatp without propagation",
}

// WriteMarkdown writes the result as a Markdown table, one column per arm,
// with a line above it saying what was run.
func (res *Result) WriteMarkdown(w io.Writer) error {
	c := res.Config
	var b strings.Builder
	fmt.Fprintf(&b, "%d agents (%s), %d bad (F = %s), H = %s, R = %s, P = %s, severity %s, %d rounds × %d entry agents = %d requests, %d of them poisoned; seed %d; transport %s%s.\n\n",
		c.Agents, layersText(res.Layers), len(res.BadAgents), pct(c.BadShare), num(c.Hallucination), num(c.Recall), num(c.FalsePositive),
		c.Severity, c.Rounds, res.Layers[RoleEntry.String()], res.Chains, res.PoisonedChains, c.Seed, c.Transport, summaryText(c.SummaryEvery))
	if c.Rule != DefaultRule {
		fmt.Fprintf(&b, "Operator rule: `%s`.\n\n", c.Rule)
	}
	b.WriteString("| |")
	for _, a := range res.Arms {
		fmt.Fprintf(&b, " %s |", armTitles[a.Name])
	}
	b.WriteString("\n|---|")
	for range res.Arms {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	var control *ArmResult
	for i := range res.Arms {
		if res.Arms[i].Name == ArmControl {
			control = &res.Arms[i]
		}
	}
	row := func(title string, cell func(a *ArmResult) string) {
		fmt.Fprintf(&b, "| %s |", title)
		for i := range res.Arms {
			fmt.Fprintf(&b, " %s |", cell(&res.Arms[i]))
		}
		b.WriteString("\n")
	}
	sidecar := func(f func(a *ArmResult) string) func(a *ArmResult) string {
		return func(a *ArmResult) string {
			if a.Name == ArmControl {
				return "—"
			}
			return f(a)
		}
	}
	row("**poisoned requests that reached an irreversible action**", func(a *ArmResult) string {
		return fmt.Sprintf("**%d / %d (%s)**", a.PoisonedActions, res.PoisonedChains, pct(float64(a.PoisonedRate)))
	})
	row("poisoned actions per bad agent (mean)", func(a *ArmResult) string {
		return num(float64(Rate(a.PoisonedActions, len(res.BadAgents))))
	})
	row("clean requests that reached their action", func(a *ArmResult) string {
		return fmt.Sprintf("%d / %d (%s)", a.LegitActions, res.CleanChains, pct(float64(a.LegitRate)))
	})
	row("clean requests lost to honest / to bad agents' reputation", sidecar(func(a *ArmResult) string {
		return fmt.Sprintf("%d / %d", a.CleanLostToHonest, a.CleanLostToBad)
	}))
	row("**honest agents cut off** (a request refused for their reputation)", func(a *ArmResult) string {
		return fmt.Sprintf("**%d / %d (%s)**", len(a.HonestCutOff), res.HonestAgents, pct(float64(a.HonestCutOffRate)))
	})
	row("honest agents at least one sidecar would refuse a destructive request from, at the end", sidecar(func(a *ArmResult) string {
		return fmt.Sprintf("%d / %d", a.HonestCutOffAtEnd, res.HonestAgents)
	}))
	row("bad agents cut off / isolated by every sidecar at the end", sidecar(func(a *ArmResult) string {
		return fmt.Sprintf("%d / %d of %d", a.BadCutOffAtEnd, a.BadIsolatedAtEnd, len(res.BadAgents))
	}))
	row("**first poisoned output → every sidecar refuses its destructive requests** (median / max)", sidecar(func(a *ArmResult) string {
		return seconds(a.CutOffSeconds, len(res.BadAgents))
	}))
	row("first poisoned output → every sidecar holds it untrusted (median / max)", sidecar(func(a *ArmResult) string {
		return seconds(a.IsolatedSeconds, len(res.BadAgents))
	}))
	row("propagation: first sidecar → every sidecar (median / max)", sidecar(func(a *ArmResult) string {
		if a.PropagationSeconds.N == 0 {
			return "—"
		}
		return fmt.Sprintf("%s / %s s", num(float64(a.PropagationSeconds.P50)), num(float64(a.PropagationSeconds.Max)))
	}))
	row("time per hop, p50 / p95", func(a *ArmResult) string {
		return fmt.Sprintf("%s / %s ms", num(float64(a.HopOverheadMs.P50)), num(float64(a.HopOverheadMs.P95)))
	})
	row("**added latency per hop** (p50 − control's p50)", sidecar(func(a *ArmResult) string {
		if control == nil {
			return "—"
		}
		return fmt.Sprintf("**%s ms**", num(float64(a.HopOverheadMs.P50-control.HopOverheadMs.P50)))
	}))
	row("time per request that reached its action (4 agents, 3 hops), p50 / p95", func(a *ArmResult) string {
		return fmt.Sprintf("%s / %s ms", num(float64(a.RequestMs.P50)), num(float64(a.RequestMs.P95)))
	})
	row("**added latency per request** (p50 − control's p50)", sidecar(func(a *ArmResult) string {
		if control == nil {
			return "—"
		}
		return fmt.Sprintf("**%s ms**", num(float64(a.RequestMs.P50-control.RequestMs.P50)))
	}))
	row("requests refused, by rule (for honest agents' reputation)", sidecar(func(a *ArmResult) string {
		if len(a.Refusals) == 0 {
			return "none"
		}
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(a.Refusals)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, a.Refusals[k]))
		}
		return fmt.Sprintf("%s (%d)", strings.Join(parts, ", "), a.RefusedOfHonest)
	}))
	row("verifier slashes (of honest agents)", sidecar(func(a *ArmResult) string {
		s := fmt.Sprintf("%d (%d)", a.Slashes, a.SlashesOfHonest)
		if a.SlashErrors > 0 {
			s += fmt.Sprintf(", %d refused", a.SlashErrors)
		}
		return s
	}))
	row("wall time: start / rounds / stop", func(a *ArmResult) string {
		return fmt.Sprintf("%.1f / %.1f / %.1f s", a.Timing.StartSeconds, a.Timing.RoundsSeconds, a.Timing.StopSeconds)
	})
	var notes []string
	for _, a := range res.Arms {
		if a.Errors > 0 {
			notes = append(notes, fmt.Sprintf("%s: %d answers were neither the agent's nor a policy refusal.", armTitles[a.Name], a.Errors))
		}
		if a.Unsettled > 0 {
			notes = append(notes, fmt.Sprintf("%s: after %d round(s) the sidecars did not all hold every reputation event in time; counts may vary between runs.", armTitles[a.Name], a.Unsettled))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func layersText(l map[string]int) string {
	var parts []string
	for role := range numRoles {
		parts = append(parts, fmt.Sprintf("%d %s", l[role.String()], role))
	}
	return strings.Join(parts, ", ")
}

func summaryText(every int) string {
	switch every {
	case 0:
		return ""
	case 1:
		return "; summaries after every round"
	}
	return fmt.Sprintf("; summaries every %d rounds", every)
}

// seconds formats a summary of times: median / max, and how many agents
// never got there.
func seconds(s Summary, of int) string {
	if s.N == 0 {
		return fmt.Sprintf("never (0 of %d)", of)
	}
	out := fmt.Sprintf("%s / %s s", num(float64(s.P50)), num(float64(s.Max)))
	if s.N < of {
		out += fmt.Sprintf(" (%d of %d)", s.N, of)
	}
	return out
}

// pct formats a share as a percentage; "—" when it is undefined.
func pct(f float64) string {
	if isNaN(Float(f)) {
		return "—"
	}
	return strings.TrimSuffix(strings.TrimSuffix(fmt.Sprintf("%.1f", 100*f), "0"), ".") + " %"
}

// num formats a number with at most three decimals; "—" when undefined.
func num(f float64) string {
	if isNaN(Float(f)) {
		return "—"
	}
	s := fmt.Sprintf("%.3f", f)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}
