package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// Report is everything one invocation measured, raw and summarised.
type Report struct {
	Machine  Machine           `json:"machine"`
	Options  map[string]any    `json:"options"`
	Targets  map[string]string `json:"targets"` // name → what it is
	Skipped  []string          `json:"skipped,omitempty"`
	Runs     []*RunResult      `json:"runs,omitempty"`
	Summary  *Summary          `json:"summary,omitempty"`
	Soak     *SoakResult       `json:"soak,omitempty"`
	Failures []string          `json:"failures,omitempty"`

	order []string // targets in report order
	opts  Options
}

// Summary holds each figure over the runs as a Spread.
type Summary struct {
	Closed []ClosedRow `json:"closed"`
	Open   []OpenTable `json:"open"`
	Sizes  []SizeRow   `json:"sizes"`
	Memory []MemoryRow `json:"memory"`
	// Stages is the time per check at the first open-loop rate.
	Stages []StageRow `json:"stages,omitempty"`
}

// StageRow is one check of one target's pipeline: its mean time per run,
// in µs, over the runs.
type StageRow struct {
	Target   string `json:"target"`
	Exchange string `json:"exchange"`
	Stage    string `json:"stage"`
	Mean     Spread `json:"mean_us"`
}

// ClosedRow is one target's maximum throughput.
type ClosedRow struct {
	Target  string `json:"target"`
	RPS     Spread `json:"rps"`
	XNginx  Spread `json:"ratio_to_nginx"`
	XDirect Spread `json:"ratio_to_direct"`
	CPU     Spread `json:"cpu_us_per_req"`
	Errors  int64  `json:"errors"`
}

// OpenTable is every target at one open-loop rate.
type OpenTable struct {
	Rate int       `json:"rate"`
	Rows []OpenRow `json:"rows"`
}

// OpenRow is one target's latency at one rate, in µs; Added* are the
// target minus direct in the same run.
type OpenRow struct {
	Target   string `json:"target"`
	P50      Spread `json:"p50_us"`
	P90      Spread `json:"p90_us"`
	P99      Spread `json:"p99_us"`
	Max      Spread `json:"max_us"`
	AddedP50 Spread `json:"added_p50_us"`
	AddedP99 Spread `json:"added_p99_us"`
	CPU      Spread `json:"cpu_us_per_req"`
	LagMax   Spread `json:"sched_lag_max_us"`
	Over10ms int    `json:"over_10ms"`
	Sent     int    `json:"sent"`
	Errors   int    `json:"errors"`
}

// SizeRow is one target's p50 by body size.
type SizeRow struct {
	Target string     `json:"target"`
	Cells  []SizeCell `json:"cells"`
}

// SizeCell is the p50 and added p50 at one body size, in µs.
type SizeCell struct {
	Bytes    int    `json:"bytes"`
	P50      Spread `json:"p50_us"`
	AddedP50 Spread `json:"added_p50_us"`
	Errors   int    `json:"errors"`
}

// MemoryRow is one target's RSS, in MiB.
type MemoryRow struct {
	Target string    `json:"target"`
	Idle   Spread    `json:"idle_mib"`
	End    Spread    `json:"end_of_run_mib"`
	After  *RSSAfter `json:"after_requests,omitempty"` // first run only
}

// MarshalJSON writes an empty spread as null (JSON has no NaN).
func (s Spread) MarshalJSON() ([]byte, error) {
	if !s.Valid() {
		return []byte("null"), nil
	}
	type plain Spread
	return json.Marshal(plain(s))
}

// summarize computes the spreads of every figure over the runs.
func summarize(runs []*RunResult, order []string, o Options) *Summary {
	s := &Summary{}
	// over collects f over the runs where the target (and, for paired
	// figures, its partner) ran.
	over := func(name string, f func(r *RunResult, t *TargetRun) float64) Spread {
		var v []float64
		for _, r := range runs {
			if t := r.Targets[name]; t != nil {
				v = append(v, f(r, t))
			}
		}
		return NewSpread(v)
	}
	other := func(r *RunResult, name string) *TargetRun { return r.Targets[name] }
	for _, name := range order {
		row := ClosedRow{Target: name}
		row.RPS = over(name, func(_ *RunResult, t *TargetRun) float64 { return t.Closed.RPS })
		row.CPU = over(name, func(_ *RunResult, t *TargetRun) float64 { return t.Closed.CPUPerReq })
		ratio := func(to string) Spread {
			return over(name, func(r *RunResult, t *TargetRun) float64 {
				if b := other(r, to); b != nil {
					return Ratio(t.Closed.RPS, b.Closed.RPS)
				}
				return math.NaN()
			})
		}
		row.XNginx, row.XDirect = ratio("nginx"), ratio("direct")
		for _, r := range runs {
			if t := r.Targets[name]; t != nil {
				row.Errors += t.Closed.Errors
			}
		}
		s.Closed = append(s.Closed, row)
	}
	for i, rate := range o.Rates {
		tab := OpenTable{Rate: rate}
		for _, name := range order {
			at := func(f func(r *OpenResult) float64) Spread {
				return over(name, func(_ *RunResult, t *TargetRun) float64 { return f(t.Open[i]) })
			}
			added := func(f func(l Latencies) float64) Spread {
				return over(name, func(r *RunResult, t *TargetRun) float64 {
					d := other(r, "direct")
					if d == nil {
						return math.NaN()
					}
					return f(t.Open[i].lat) - f(d.Open[i].lat)
				})
			}
			row := OpenRow{Target: name,
				P50:      at(func(r *OpenResult) float64 { return r.P50 }),
				P90:      at(func(r *OpenResult) float64 { return r.P90 }),
				P99:      at(func(r *OpenResult) float64 { return r.P99 }),
				Max:      at(func(r *OpenResult) float64 { return r.Max }),
				CPU:      at(func(r *OpenResult) float64 { return r.CPUPerReq }),
				LagMax:   at(func(r *OpenResult) float64 { return r.LagMax }),
				AddedP50: added(func(l Latencies) float64 { return micros(l.P50) }),
				AddedP99: added(func(l Latencies) float64 { return micros(l.P99) }),
			}
			for _, r := range runs {
				if t := r.Targets[name]; t != nil {
					row.Errors += t.Open[i].Errors
					row.Sent += t.Open[i].Sent
					row.Over10ms += t.Open[i].Over10ms
				}
			}
			tab.Rows = append(tab.Rows, row)
		}
		s.Open = append(s.Open, tab)
	}
	if len(o.Sizes) > 0 {
		for _, name := range order {
			row := SizeRow{Target: name}
			for i, size := range o.Sizes {
				c := SizeCell{Bytes: size}
				c.P50 = over(name, func(_ *RunResult, t *TargetRun) float64 { return t.Sizes[i].P50 })
				c.AddedP50 = over(name, func(r *RunResult, t *TargetRun) float64 {
					if d := other(r, "direct"); d != nil {
						return Added(t.Sizes[i].lat.P50, d.Sizes[i].lat.P50)
					}
					return math.NaN()
				})
				for _, r := range runs {
					if t := r.Targets[name]; t != nil {
						c.Errors += t.Sizes[i].Errors
					}
				}
				row.Cells = append(row.Cells, c)
			}
			s.Sizes = append(s.Sizes, row)
		}
	}
	for _, name := range order {
		row := MemoryRow{Target: name,
			Idle: over(name, func(_ *RunResult, t *TargetRun) float64 { return mib(t.IdleRSS) }),
			End:  over(name, func(_ *RunResult, t *TargetRun) float64 { return mib(t.EndRSS) }),
		}
		if len(runs) > 0 && runs[0].Targets[name] != nil {
			row.After = runs[0].Targets[name].RSSAfter
		}
		s.Memory = append(s.Memory, row)
	}
	for _, name := range order {
		var keys []StageTime // the stages in report order, from the first run that has them
		for _, r := range runs {
			if t := r.Targets[name]; t != nil && len(t.Stages) > len(keys) {
				keys = t.Stages
			}
		}
		for _, k := range keys {
			row := StageRow{Target: name, Exchange: k.Exchange, Stage: k.Stage}
			row.Mean = over(name, func(_ *RunResult, t *TargetRun) float64 {
				for _, st := range t.Stages {
					if st.Exchange == k.Exchange && st.Stage == k.Stage {
						return st.MeanUs
					}
				}
				return math.NaN()
			})
			s.Stages = append(s.Stages, row)
		}
	}
	return s
}

// optionsJSON is the options as the JSON report shows them.
func optionsJSON(o Options) map[string]any {
	m := map[string]any{
		"runs": o.Runs, "targets": o.Targets, "connections": o.Connections,
		"closed_warmup": o.ClosedWarmup.String(), "closed_duration": o.ClosedDuration.String(),
		"body_bytes": o.BodyBytes, "rates": o.Rates, "open_duration": o.Duration.String(),
		"sizes": o.Sizes, "size_rate": o.SizeRate, "size_duration": o.SizeDuration.String(),
		"requests_for_rss": o.RSSRequests, "settle": o.Settle.String(),
		"iatp_args": o.IATPArgs, "iatp_config": o.IATPConfig,
	}
	if o.Soak {
		m = map[string]any{
			"soak": true, "soak_rate": o.SoakRate, "soak_duration": o.SoakDuration.String(),
			"soak_baseline": o.SoakBaseline.String(), "body_bytes": o.BodyBytes,
			"iatp_args": o.IATPArgs, "iatp_config": o.IATPConfig,
		}
	}
	return m
}

// writeJSON prints the report as indented JSON.
func (r *Report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// writeMarkdown prints the report as Markdown tables.
func (r *Report) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	m, o := r.Machine, r.opts
	if r.Soak != nil {
		p("# iatp soak: %d RPS for %v\n\n", o.SoakRate, o.SoakDuration)
	} else {
		p("# iatp load harness\n\n")
	}
	p("Measured %s on %s, %d cores, %.1f GiB; %s, kernel %s; %s", m.Date, orUnknown(m.CPU), m.Cores, m.MemoryGiB, orUnknown(m.OS), orUnknown(m.Kernel), m.Go)
	if m.Nginx != "" {
		p("; nginx %s", m.Nginx)
	}
	p("; %s", orUnknown(m.IATP))
	if m.Commit != "" {
		p(" at `%s`", m.Commit)
	}
	p("; the sidecar's data dir on %s.\n", m.TempFS)
	p("Everything runs on 127.0.0.1: the load generator (this process), the backend and the proxy share the cores.\n\n")
	if r.Soak != nil {
		r.soakMarkdown(p)
	} else {
		r.runsMarkdown(p)
	}
	if len(r.Skipped) > 0 {
		p("\nSkipped: %s.\n", strings.Join(r.Skipped, "; "))
	}
	if len(r.Failures) > 0 {
		p("\n## Failures\n\n")
		for _, f := range r.Failures {
			p("- %s\n", f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Report) runsMarkdown(p func(string, ...any)) {
	o, s := r.opts, r.Summary
	if o.Runs > 1 {
		p("%d runs, the order of the targets reversed every other run; each figure is the median (min–max) over the runs. ", o.Runs)
	} else {
		p("One run. ")
	}
	p("\"Added\" is the target minus direct at the same rate with the same body, in the same run.")
	var loads, foreign []string
	for _, run := range r.Runs {
		loads = append(loads, fmt.Sprintf("%.1f", run.LoadAvg))
		if run.ForeignCPU >= 0 {
			foreign = append(foreign, fmt.Sprintf("%.0f %%", 100*run.ForeignCPU))
		} else {
			foreign = append(foreign, "?")
		}
	}
	p(" Each run's 1-minute load average at its start: %s; share of the machine's CPU that other processes took during it: %s.\n\n", strings.Join(loads, ", "), strings.Join(foreign, ", "))

	p("## Max throughput (closed loop: %d keep-alive connections, %v after %v warm-up, %s JSON POST; fasthttp client)\n\n", o.Connections, o.ClosedDuration, o.ClosedWarmup, sizeLabel(o.BodyBytes))
	p("| target | RPS | × nginx | × direct | CPU µs/req | errors |\n|---|---|---|---|---|---|\n")
	for _, row := range s.Closed {
		p("| %s | %s | %s | %s | %s | %d |\n", row.Target, spread(row.RPS, fmtRPS), spread(row.XNginx, fmtRatio), spread(row.XDirect, fmtRatio), spread(row.CPU, fmtUs), row.Errors)
	}
	for _, tab := range s.Open {
		p("\n## Latency at %d RPS (open loop: vegeta, %v per target, %s JSON POST)\n\n", tab.Rate, o.Duration, sizeLabel(o.BodyBytes))
		p("| target | p50 µs | p90 µs | p99 µs | max µs | added p50 µs | added p99 µs | CPU µs/req | > 10 ms | errors |\n|---|---|---|---|---|---|---|---|---|---|\n")
		for _, row := range tab.Rows {
			p("| %s | %s | %s | %s | %s | %s | %s | %s | %d | %d of %d |\n", row.Target,
				spread(row.P50, fmtUs), spread(row.P90, fmtUs), spread(row.P99, fmtUs), spread(row.Max, fmtUs),
				added(row.Target, row.AddedP50), added(row.Target, row.AddedP99), spread(row.CPU, fmtUs), row.Over10ms, row.Errors, row.Sent)
		}
	}
	if len(s.Sizes) > 0 {
		hasDirect := slices.Contains(r.order, "direct")
		title := "Added p50"
		if !hasDirect {
			title = "p50"
		}
		p("\n## %s by body size (open loop: %d RPS, %v per size and target)\n\n", title, o.SizeRate, o.SizeDuration)
		if hasDirect {
			p("The direct row is its p50; the other rows are the added p50, in µs.\n\n")
		} else {
			p("p50 in µs (without the direct target there is nothing to subtract).\n\n")
		}
		p("| target |")
		for _, n := range o.Sizes {
			p(" %s |", sizeLabel(n))
		}
		p("\n|---|%s\n", strings.Repeat("---|", len(o.Sizes)))
		for _, row := range s.Sizes {
			p("| %s |", row.Target)
			for _, c := range row.Cells {
				if row.Target == "direct" || !hasDirect {
					p(" %s |", spread(c.P50, fmtUs))
				} else {
					p(" %s |", added(row.Target, c.AddedP50))
				}
			}
			p("\n")
		}
	}
	if len(s.Stages) > 0 && len(o.Rates) > 0 {
		p("\n## Time per check at %d RPS (the sidecars' iatp_stage_seconds: mean µs per run of the check)\n\n", o.Rates[0])
		p("`forward` includes the agent's (or the next sidecar's) round trip and the answer; the rest is the sidecar's own work.\n\n")
		p("| target | exchange | check | mean µs |\n|---|---|---|---|\n")
		for _, row := range s.Stages {
			p("| %s | %s | %s | %s |\n", row.Target, row.Exchange, row.Stage, spread(row.Mean, fmtStageUs))
		}
	}
	p("\n## Memory (RSS, MiB; nginx: master and workers)\n\n")
	after := "after N requests"
	if o.RSSRequests > 0 {
		after = fmt.Sprintf("after %d requests (peak)", o.RSSRequests)
	}
	p("| target | idle, fresh start | %s | end of run |\n|---|---|---|---|\n", after)
	for _, row := range s.Memory {
		a := "—"
		if row.After != nil {
			a = fmt.Sprintf("%.1f (%.1f)", mib(row.After.FinalKiB), mib(row.After.PeakKiB))
		}
		p("| %s | %s | %s | %s |\n", row.Target, spread(row.Idle, fmtMiB), a, spread(row.End, fmtMiB))
	}
	p("\nCPU µs/req is the proxy process's utime+stime (10 ms ticks) over the measured window, divided by its requests; for direct it is the backend's. ")
	p("\"> 10 ms\" counts answers slower than 10 ms over all runs: stalls rather than queueing.")
	var lag float64
	for _, tab := range s.Open {
		for _, row := range tab.Rows {
			if row.LagMax.Valid() {
				lag = max(lag, row.LagMax.Max)
			}
		}
	}
	if lag > 1000 {
		p(" The load generator sent some requests up to %.1f ms late against its schedule (the machine was busy); latencies near that size are suspect.", lag/1000)
	}
	p("\n")
}

func (r *Report) soakMarkdown(p func(string, ...any)) {
	s := r.Soak
	p("Open loop (vegeta), %s JSON POST. Direct baseline: %v at the same rate, just before.\n\n", sizeLabel(r.opts.BodyBytes), r.opts.SoakBaseline)
	p("| target | sent | errors | p50 µs | p90 µs | p99 µs | max µs | > 10 ms | CPU µs/req | generator CPU µs/req |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, row := range []struct {
		name string
		r    *OpenResult
	}{{"direct", s.Direct}, {"iatp", s.IATP}} {
		p("| %s | %d | %d | %.0f | %.0f | %.0f | %.0f | %d | %.0f | %.0f |\n", row.name, row.r.Sent, row.r.Errors, row.r.P50, row.r.P90, row.r.P99, row.r.Max, row.r.Over10ms, row.r.CPUPerReq, row.r.GeneratorCPUPerReq)
	}
	p("\nAdded by iatp: p50 %+.0f µs, p99 %+.0f µs. RSS: idle %.1f MiB, peak %.1f MiB, end %.1f MiB. Open files: peak %d.\n", s.AddedP50, s.AddedP99, mib(s.IdleRSS), mib(s.PeakRSS), mib(s.EndRSS), s.PeakFiles)
	p("Against PERFORMANCE.md: %s.\n", soakVerdict(s))
	if s.ForeignCPU >= 0 {
		p("Other processes took %.0f %% of the machine's CPU during the sidecar's attack.\n", 100*s.ForeignCPU)
	}
	if len(s.RSS) > 0 {
		p("\nRSS (MiB), the highest sample of each 10 s: ")
		var parts []string
		for i := 0; i < len(s.RSS); i += 10 {
			var hi int64
			for _, kb := range s.RSS[i:min(i+10, len(s.RSS))] {
				hi = max(hi, kb)
			}
			parts = append(parts, fmt.Sprintf("%.1f", mib(hi)))
		}
		p("%s.\n", strings.Join(parts, " → "))
	}
	if s.IATP.LagMax > 1000 {
		p("\nThe load generator sent some requests up to %.1f ms late against its schedule.\n", s.IATP.LagMax/1000)
	}
}

// spread prints a figure over the runs: the value, or "median (min–max)".
func spread(s Spread, f func(float64) string) string {
	if !s.Valid() {
		return "—"
	}
	if s.N == 1 || f(s.Min) == f(s.Max) {
		return f(s.Median)
	}
	return f(s.Median) + " (" + f(s.Min) + "–" + f(s.Max) + ")"
}

// added prints an added latency; direct has none.
func added(target string, s Spread) string {
	if target == "direct" {
		return "—"
	}
	return spread(s, func(v float64) string { return fmt.Sprintf("%+.0f", v) })
}

func fmtUs(v float64) string { return fmt.Sprintf("%.0f", v) }

// fmtStageUs shows a check's time with one decimal below 10 µs.
func fmtStageUs(v float64) string {
	if v < 10 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}
func fmtRatio(v float64) string { return fmt.Sprintf("%.2f", v) }
func fmtMiB(v float64) string   { return fmt.Sprintf("%.1f", v) }
func fmtRPS(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.1fk", v/1000)
	}
	return fmt.Sprintf("%.0f", v)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
