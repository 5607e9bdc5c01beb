package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// SoakResult is the soak mode's measurement: the sidecar under a sustained
// open-loop rate, against a direct baseline at the same rate.
type SoakResult struct {
	Direct *OpenResult `json:"direct"`
	IATP   *OpenResult `json:"iatp"`
	// AddedP50 and AddedP99 are iatp − direct, in µs.
	AddedP50 float64 `json:"added_p50_us"`
	AddedP99 float64 `json:"added_p99_us"`
	IdleRSS  int64   `json:"idle_rss_kib"`
	PeakRSS  int64   `json:"peak_rss_kib"`
	EndRSS   int64   `json:"end_rss_kib"`
	// RSS holds the sidecar's RSS sampled once a second during the attack.
	RSS []int64 `json:"rss_kib_each_second"`
	// Files holds the sidecar's open file descriptors, sampled with RSS:
	// they grow with the client connections an overload makes it hold.
	Files     []int `json:"open_files_each_second"`
	PeakFiles int   `json:"peak_open_files"`
	// ForeignCPU is the share of the machine (0–1) that other processes
	// took during the sidecar's attack; -1 when it could not be read.
	ForeignCPU float64 `json:"foreign_cpu_share"`
}

// runSoak measures the direct baseline, then the sidecar for the soak
// duration while sampling its RSS each second.
func (h *harness) runSoak(ctx context.Context) (_ *SoakResult, err error) {
	rd := &runDir{}
	if rd.path, err = os.MkdirTemp(h.tmp, "soak-"); err != nil {
		return nil, err
	}
	if err := startBackend(ctx, rd, h.body); err != nil {
		if rd.backend != nil {
			rd.backend.stop(5 * time.Second)
		}
		return nil, err
	}
	defer rd.backend.stop(5 * time.Second)
	direct, _ := lookupTarget("direct")
	iatp, _ := lookupTarget("iatp")
	din, err := direct.start(ctx, h, rd)
	if err != nil {
		return nil, err
	}
	sin, err := iatp.start(ctx, h, rd)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range sin.children {
			c.stop(15 * time.Second)
		}
	}()
	res := &SoakResult{}
	if !sleepCtx(ctx, max(time.Second, h.opts.Settle)) {
		return nil, ctx.Err()
	}
	if res.IdleRSS, err = rssKiB(sin.pids()); err != nil {
		return nil, err
	}

	h.logf("soak: direct baseline, %d RPS for %v", h.opts.SoakRate, h.opts.SoakBaseline)
	if res.Direct, err = openLoop(ctx, attackSpec{url: din.url, body: h.body, rate: h.opts.SoakRate, duration: h.opts.SoakBaseline}, din.pids()); err != nil {
		return nil, err
	}
	if res.Direct.Errors > 0 {
		h.fail("soak, direct: %d of %d requests failed (first: %s)", res.Direct.Errors, res.Direct.Sent, res.Direct.FirstError)
	}
	if !sleepCtx(ctx, h.opts.Settle) {
		return nil, ctx.Err()
	}

	h.logf("soak: iatp, %d RPS for %v", h.opts.SoakRate, h.opts.SoakDuration)
	foreign := newForeignMeter(func() []int { return append([]int{os.Getpid(), rd.backend.pid()}, sin.pids()...) })
	stopSampling := sample(sin.pids, time.Second, &res.RSS, &res.Files)
	res.IATP, err = openLoop(ctx, attackSpec{url: sin.url, body: h.body, rate: h.opts.SoakRate, duration: h.opts.SoakDuration}, sin.pids())
	stopSampling()
	res.ForeignCPU = foreign.share()
	if err != nil {
		return nil, err
	}
	if c := sin.children[0]; c.exited() {
		return nil, c.failure(errors.New("it exited during the soak"))
	}
	if res.EndRSS, err = rssKiB(sin.pids()); err != nil {
		return nil, err
	}
	res.PeakRSS = res.EndRSS
	for _, kb := range res.RSS {
		res.PeakRSS = max(res.PeakRSS, kb)
	}
	for _, n := range res.Files {
		res.PeakFiles = max(res.PeakFiles, n)
	}
	res.AddedP50 = Added(res.IATP.lat.P50, res.Direct.lat.P50)
	res.AddedP99 = Added(res.IATP.lat.P99, res.Direct.lat.P99)
	if res.IATP.Errors > 0 {
		h.fail("soak, iatp: %d of %d requests failed (first: %s)", res.IATP.Errors, res.IATP.Sent, res.IATP.FirstError)
	}
	h.logf("soak: iatp p50 %.0f p99 %.0f max %.0f µs; RSS idle %.1f, peak %.1f MiB", res.IATP.P50, res.IATP.P99, res.IATP.Max, mib(res.IdleRSS), mib(res.PeakRSS))
	return res, nil
}

// sample appends the RSS and the open files of pids() to rss and files
// every interval until the returned function is called (which waits for the
// sampler to end).
func sample(pids func() []int, interval time.Duration, rss *[]int64, files *[]int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p := pids()
				kb, err1 := rssKiB(p)
				n, err2 := openFiles(p)
				if err1 == nil && err2 == nil {
					*rss = append(*rss, kb)
					*files = append(*files, n)
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// soakVerdict compares the soak with the targets of PERFORMANCE.md.
func soakVerdict(s *SoakResult) string {
	ok := func(b bool) string {
		if b {
			return "met"
		}
		return "not met"
	}
	return fmt.Sprintf("zero errors: %s; p99 added ≤ 1 ms: %s; RSS ≤ 64 MiB: %s",
		ok(s.IATP.Errors == 0), ok(s.AddedP99 <= 1000), ok(s.PeakRSS <= 64<<10))
}
