package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// harness holds what every run shares: the options, the binaries, the
// request bodies and what went wrong.
type harness struct {
	opts     Options
	progress io.Writer
	tmp      string // removed at the end unless --keep

	iatpBin       string
	sidecarConfig []byte
	nginxBin      string
	nginxMissing  string // why nginx cannot run, or ""
	nginxVersion  string

	body   []byte         // the closed- and open-loop body
	bodies map[int][]byte // by size

	targets  []target // selected and available, in report order
	skipped  []string
	failures []string
}

// TargetRun is what one run measured of one target.
type TargetRun struct {
	IdleRSS  int64         `json:"idle_rss_kib"`
	EndRSS   int64         `json:"end_rss_kib"`
	RSSAfter *RSSAfter     `json:"rss_after,omitempty"`
	Closed   *ClosedResult `json:"closed,omitempty"`
	Open     []*OpenResult `json:"open"`  // one per rate, in the order of Options.Rates
	Sizes    []*OpenResult `json:"sizes"` // one per size, in the order of Options.Sizes
	// Stages is the mean time per check of the target's sidecars during
	// the open loop at the first rate (iatp targets only).
	Stages []StageTime `json:"stages,omitempty"`
}

// RSSAfter is the target's memory after a fixed number of requests.
type RSSAfter struct {
	Requests int64   `json:"requests"`
	RPS      float64 `json:"rps"`
	Errors   int64   `json:"errors"`
	FinalKiB int64   `json:"final_kib"` // read when the last request was answered
	PeakKiB  int64   `json:"peak_kib"`  // the highest of the once-a-second samples
}

// RunResult is one run over every target.
type RunResult struct {
	Index   int      `json:"index"`
	Order   []string `json:"order"`
	LoadAvg float64  `json:"load_avg_1m_at_start"`
	// ForeignCPU is the share of the machine's CPU (0–1) that processes
	// other than the harness, the backend and the targets used while the
	// run measured: the other tenants of a shared machine.
	ForeignCPU float64               `json:"foreign_cpu_share"`
	Targets    map[string]*TargetRun `json:"targets"`
}

// newHarness prepares a measurement: request bodies, the temporary
// directory, the iatp binary (built from the repository unless given) and
// nginx (found on PATH unless given).
func newHarness(ctx context.Context, opts Options, progress io.Writer) (*harness, error) {
	h := &harness{opts: opts, progress: progress, bodies: map[int][]byte{}}
	var err error
	if h.body, err = jsonBody(opts.BodyBytes); err != nil {
		return nil, err
	}
	for _, n := range opts.Sizes {
		if h.bodies[n], err = jsonBody(n); err != nil {
			return nil, err
		}
	}
	if h.sidecarConfig, err = sidecarConfig(opts.IATPConfig); err != nil {
		return nil, err
	}
	wanted := opts.Targets
	if opts.Soak {
		wanted = []string{"direct", "iatp"}
	}
	if slices.Contains(wanted, "nginx") {
		h.nginxBin, h.nginxMissing, h.nginxVersion = findNginx(opts.NginxBin)
	}
	for _, t := range targets { // report order, whatever the flag's order
		if !slices.Contains(wanted, t.name) {
			continue
		}
		if t.unavailable != nil {
			if why := t.unavailable(h); why != "" {
				h.skipped = append(h.skipped, t.name+": "+why)
				h.logf("skipping %s: %s", t.name, why)
				continue
			}
		}
		h.targets = append(h.targets, t)
	}
	if len(h.targets) == 0 {
		return nil, fmt.Errorf("no target left to measure (skipped: %s)", strings.Join(h.skipped, "; "))
	}
	if h.tmp, err = os.MkdirTemp("", "iatp-load-"); err != nil {
		return nil, err
	}
	if opts.IATPBin != "" {
		h.iatpBin = opts.IATPBin
	} else {
		root, err := repoRoot()
		if err != nil {
			h.close()
			return nil, err
		}
		h.logf("building iatp from %s …", root)
		if h.iatpBin, err = buildIATP(ctx, root, h.tmp); err != nil {
			h.close()
			return nil, err
		}
	}
	return h, nil
}

// close removes the temporary directory, unless it is to be kept.
func (h *harness) close() {
	if h.tmp == "" {
		return
	}
	if h.opts.Keep {
		h.logf("kept %s", h.tmp)
		return
	}
	_ = os.RemoveAll(h.tmp)
}

func (h *harness) logf(format string, a ...any) {
	fmt.Fprintf(h.progress, "load: "+format+"\n", a...)
}

// fail records a measurement that saw errors; the run goes on, and the
// harness exits non-zero at the end.
func (h *harness) fail(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	h.failures = append(h.failures, msg)
	h.logf("ERROR: %s", msg)
}

// runAll runs opts.Runs measurements, alternating the order of the targets
// so that drift of the machine during a run does not always favour the
// same one.
func (h *harness) runAll(ctx context.Context) ([]*RunResult, error) {
	var runs []*RunResult
	for i := range h.opts.Runs {
		r, err := h.runOnce(ctx, i)
		if err != nil {
			return runs, fmt.Errorf("run %d: %w", i+1, err)
		}
		runs = append(runs, r)
	}
	return runs, nil
}

// started is a target running in this run.
type started struct {
	target
	*instance
	res *TargetRun
}

// runOnce starts a fresh backend and fresh targets in their own directory,
// measures every phase for every target, and stops them all.
func (h *harness) runOnce(ctx context.Context, i int) (_ *RunResult, err error) {
	order := slices.Clone(h.targets)
	if i%2 == 1 {
		slices.Reverse(order)
	}
	run := &RunResult{Index: i + 1, LoadAvg: loadAverage(), Targets: map[string]*TargetRun{}}
	rd := &runDir{}
	if rd.path, err = os.MkdirTemp(h.tmp, fmt.Sprintf("run%d-", i+1)); err != nil {
		return nil, err
	}
	if err := startBackend(ctx, rd, h.body); err != nil {
		if rd.backend != nil {
			rd.backend.stop(5 * time.Second)
		}
		return nil, err
	}
	var live []*started
	defer func() {
		for _, s := range slices.Backward(live) {
			for _, c := range slices.Backward(s.children) {
				c.stop(15 * time.Second)
			}
		}
		rd.backend.stop(5 * time.Second)
		if !h.opts.Keep {
			_ = os.RemoveAll(rd.path)
		}
	}()
	for _, t := range order {
		in, err := t.start(ctx, h, rd)
		if err != nil {
			return nil, err
		}
		s := &started{target: t, instance: in, res: &TargetRun{}}
		live = append(live, s)
		run.Order = append(run.Order, t.name)
		run.Targets[t.name] = s.res
	}
	h.logf("run %d/%d: order %v, load average %.2f", i+1, h.opts.Runs, run.Order, run.LoadAvg)

	if !sleepCtx(ctx, max(time.Second, h.opts.Settle)) {
		return nil, ctx.Err()
	}
	for _, s := range live {
		if s.res.IdleRSS, err = rssKiB(s.pids()); err != nil {
			return nil, fmt.Errorf("%s: idle RSS: %w", s.name, err)
		}
	}
	ours := func() []int {
		pids := []int{os.Getpid(), rd.backend.pid()}
		for _, s := range live {
			if s.name != "direct" { // direct is the backend
				pids = append(pids, s.pids()...)
			}
		}
		return pids
	}
	foreign := newForeignMeter(ours)

	// Each phase runs every target in turn, so paired figures (added
	// latency, ratios) come from moments close together.
	phase := func(name string, each func(s *started) error) error {
		for _, s := range live {
			if !sleepCtx(ctx, h.opts.Settle) {
				return ctx.Err()
			}
			if err := each(s); err != nil {
				return fmt.Errorf("%s, %s: %w", name, s.name, err)
			}
			if err := checkAlive(rd, s); err != nil {
				return fmt.Errorf("%s, %s: %w", name, s.name, err)
			}
		}
		return nil
	}
	if i == 0 && h.opts.RSSRequests > 0 {
		if err := phase("RSS", func(s *started) error { return h.rssAfter(ctx, i, s) }); err != nil {
			return nil, err
		}
	}
	if err := phase("closed loop", func(s *started) error { return h.closed(ctx, i, s) }); err != nil {
		return nil, err
	}
	for k, rate := range h.opts.Rates {
		err := phase(fmt.Sprintf("open loop %d RPS", rate), func(s *started) error {
			var before map[stageKey]stageTotals
			if k == 0 && len(s.metrics) > 0 {
				b, err := scrapeStages(ctx, s.metrics)
				if err != nil {
					return err
				}
				before = b
			}
			r, err := h.open(ctx, i, s, attackSpec{url: s.url, proxy: s.proxy, body: h.body, rate: rate, duration: h.opts.Duration})
			s.res.Open = append(s.res.Open, r)
			if err != nil || before == nil {
				return err
			}
			after, err := scrapeStages(ctx, s.metrics)
			if err != nil {
				return err
			}
			s.res.Stages = stageDelta(before, after)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, size := range h.opts.Sizes {
		err := phase("body "+sizeLabel(size), func(s *started) error {
			r, err := h.open(ctx, i, s, attackSpec{url: s.url, proxy: s.proxy, body: h.bodies[size], rate: h.opts.SizeRate, duration: h.opts.SizeDuration})
			s.res.Sizes = append(s.res.Sizes, r)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	run.ForeignCPU = foreign.share()
	for _, s := range live {
		if s.res.EndRSS, err = rssKiB(s.pids()); err != nil {
			return nil, fmt.Errorf("%s: RSS at the end: %w", s.name, err)
		}
	}
	return run, nil
}

// foreignMeter measures the CPU that other processes take from the
// machine: its busy time minus that of our own processes.
type foreignMeter struct {
	ours        func() []int
	busy, total uint64
	own         time.Duration
	ok          bool
}

func newForeignMeter(ours func() []int) *foreignMeter {
	m := &foreignMeter{ours: ours}
	var err1, err2 error
	m.busy, m.total, err1 = machineCPU()
	m.own, err2 = cpuTime(ours())
	m.ok = err1 == nil && err2 == nil
	return m
}

// share returns the foreign share of the machine since the meter was made,
// 0–1, or -1 when it could not be read.
func (m *foreignMeter) share() float64 {
	busy, total, err1 := machineCPU()
	own, err2 := cpuTime(m.ours())
	if !m.ok || err1 != nil || err2 != nil || total <= m.total {
		return -1
	}
	foreign := float64(busy-m.busy) - float64((own-m.own)/tick)
	return min(1, max(0, foreign/float64(total-m.total)))
}

// checkAlive fails when the backend or one of the target's processes has
// exited during a measurement.
func checkAlive(rd *runDir, s *started) error {
	for _, c := range append([]*child{rd.backend}, s.children...) {
		if c.exited() {
			return c.failure(errors.New("it exited during the measurement"))
		}
	}
	return nil
}

func (h *harness) closed(ctx context.Context, i int, s *started) error {
	r, err := closedLoop(ctx, closedSpec{url: s.url, proxy: s.proxy, body: h.body, conns: h.opts.Connections, warmup: h.opts.ClosedWarmup, duration: h.opts.ClosedDuration}, s.pids())
	if err != nil {
		return err
	}
	s.res.Closed = r
	h.logf("run %d · closed loop c%d · %-6s %8.0f RPS, %5.0f µs CPU/req", i+1, r.Connections, s.name, r.RPS, r.CPUPerReq)
	if r.Errors > 0 {
		h.fail("run %d, closed loop, %s: %d errors (first: %s)", i+1, s.name, r.Errors, r.FirstError)
	}
	return nil
}

func (h *harness) open(ctx context.Context, i int, s *started, spec attackSpec) (*OpenResult, error) {
	r, err := openLoop(ctx, spec, s.pids())
	if err != nil {
		return nil, err
	}
	h.logf("run %d · open loop %d RPS %s · %-6s p50 %5.0f p99 %6.0f max %6.0f µs, %4.0f µs CPU/req",
		i+1, r.Rate, sizeLabel(r.BodyBytes), s.name, r.P50, r.P99, r.Max, r.CPUPerReq)
	if r.Errors > 0 {
		h.fail("run %d, open loop %d RPS, body %s, %s: %d of %d requests failed (first: %s)", i+1, r.Rate, sizeLabel(r.BodyBytes), s.name, r.Errors, r.Sent, r.FirstError)
	}
	return r, nil
}

// rssAfter sends opts.RSSRequests requests through the closed-loop client
// and reads the target's RSS once a second and at the end.
func (h *harness) rssAfter(ctx context.Context, i int, s *started) error {
	res := &RSSAfter{}
	sample := func() {
		if kb, err := rssKiB(s.pids()); err == nil {
			res.PeakKiB = max(res.PeakKiB, kb)
		}
	}
	r, err := closedLoop(ctx, closedSpec{url: s.url, proxy: s.proxy, body: h.body, conns: h.opts.Connections, limit: h.opts.RSSRequests, every: sample}, s.pids())
	if err != nil {
		return err
	}
	if res.FinalKiB, err = rssKiB(s.pids()); err != nil {
		return err
	}
	res.PeakKiB = max(res.PeakKiB, res.FinalKiB)
	res.Requests, res.RPS, res.Errors = r.Requests, r.RPS, r.Errors
	s.res.RSSAfter = res
	h.logf("run %d · RSS after %d requests · %-6s %.1f MiB (peak %.1f), idle %.1f", i+1, r.Requests, s.name, mib(res.FinalKiB), mib(res.PeakKiB), mib(s.res.IdleRSS))
	if r.Errors > 0 {
		h.fail("run %d, RSS phase, %s: %d errors (first: %s)", i+1, s.name, r.Errors, r.FirstError)
	}
	return nil
}

func mib(kib int64) float64 { return float64(kib) / 1024 }
