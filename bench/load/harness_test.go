package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary play the backend when the harness
// re-executes it, as the harness binary does.
func TestMain(m *testing.M) {
	if ok, err := runChildRole(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if sharedBin.dir != "" {
		_ = os.RemoveAll(sharedBin.dir)
	}
	os.Exit(code)
}

// sharedBin is the sidecar built once for every test that needs one.
var sharedBin struct {
	once      sync.Once
	dir, path string
	err       error
}

// iatpBin returns IATP_LOAD_IATP_BIN, or ./cmd/iatp built once.
func iatpBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("IATP_LOAD_IATP_BIN"); p != "" {
		return p
	}
	sharedBin.once.Do(func() {
		root, err := repoRoot()
		if err != nil {
			sharedBin.err = err
			return
		}
		if sharedBin.dir, err = os.MkdirTemp("", "iatp-load-test-"); err != nil {
			sharedBin.err = err
			return
		}
		sharedBin.path, sharedBin.err = buildIATP(context.Background(), root, sharedBin.dir)
	})
	if sharedBin.err != nil {
		t.Fatal(sharedBin.err)
	}
	return sharedBin.path
}

// tinyOptions is a whole measurement in a few seconds: one run, direct and
// iatp, short attacks at low rates. Set IATP_LOAD_IATP_BIN to reuse a built
// sidecar instead of building ./cmd/iatp.
func tinyOptions(t *testing.T) Options {
	t.Helper()
	o, err := parseOptions([]string{
		"--runs", "1", "--targets", "direct,iatp",
		"--connections", "4", "--closed-warmup", "100ms", "--closed-duration", "500ms",
		"--rates", "50", "--duration", "1s",
		"--sizes", "1k,16k", "--size-rate", "20", "--size-duration", "400ms",
		"--requests-for-rss", "200", "--settle", "50ms",
		"--iatp-bin", iatpBin(t),
	}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestEndToEnd runs the harness against real processes — the re-executed
// backend and a built `iatp sidecar` — and checks that the report has every
// row with sane numbers. It asserts nothing about speed.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and builds iatp")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := tinyOptions(t)
	var progress bytes.Buffer
	rep, err := measure(ctx, opts, &progress)
	if err != nil {
		t.Fatalf("measure: %v\nprogress:\n%s", err, progress.String())
	}
	if len(rep.Failures) > 0 {
		t.Fatalf("failures: %v", rep.Failures)
	}
	if len(rep.Runs) != 1 {
		t.Fatalf("%d runs, want 1", len(rep.Runs))
	}
	if f := rep.Runs[0].ForeignCPU; f != -1 && (f < 0 || f > 1) {
		t.Errorf("foreign CPU share %v, want 0–1 or -1", f)
	}
	for _, name := range []string{"direct", "iatp"} {
		tr := rep.Runs[0].Targets[name]
		if tr == nil {
			t.Fatalf("no result for %s", name)
		}
		if tr.Closed == nil || tr.Closed.RPS <= 0 || tr.Closed.Requests <= 0 || tr.Closed.CPUPerReq <= 0 {
			t.Errorf("%s closed loop: %+v, want positive RPS, requests and CPU", name, tr.Closed)
		}
		if tr.IdleRSS <= 0 || tr.EndRSS <= 0 {
			t.Errorf("%s RSS idle %d, end %d: want positive", name, tr.IdleRSS, tr.EndRSS)
		}
		if a := tr.RSSAfter; a == nil || a.Requests < opts.RSSRequests || a.FinalKiB <= 0 || a.PeakKiB < a.FinalKiB {
			t.Errorf("%s RSS after requests: %+v", name, a)
		}
		if len(tr.Open) != 1 || len(tr.Sizes) != 2 {
			t.Fatalf("%s: %d open-loop and %d size results, want 1 and 2", name, len(tr.Open), len(tr.Sizes))
		}
		for _, r := range append(tr.Open, tr.Sizes...) {
			if r.Sent == 0 || r.Errors != 0 {
				t.Errorf("%s open loop %d RPS, %d bytes: sent %d, errors %d", name, r.Rate, r.BodyBytes, r.Sent, r.Errors)
			}
			if !(0 < r.P50 && r.P50 <= r.P90 && r.P90 <= r.P99 && r.P99 <= r.Max) {
				t.Errorf("%s open loop %d RPS, %d bytes: percentiles out of order: %v %v %v %v", name, r.Rate, r.BodyBytes, r.P50, r.P90, r.P99, r.Max)
			}
			if r.CPUPerReq < 0 || r.LagMax < 0 {
				t.Errorf("%s: negative CPU %v or lag %v", name, r.CPUPerReq, r.LagMax)
			}
		}
		if got := tr.Sizes[1].BodyBytes; got != 16<<10 {
			t.Errorf("%s: second size sent %d-byte bodies", name, got)
		}
	}
	if st := rep.Runs[0].Targets["direct"].Stages; len(st) != 0 {
		t.Errorf("direct has check times: %+v", st)
	}
	// The iatp target's checks at the first rate: every ingress check
	// ran once per request sent, in the pipeline's order.
	stages := rep.Runs[0].Targets["iatp"].Stages
	var names []string
	for _, st := range stages {
		names = append(names, st.Stage)
		if st.Exchange != "ingress" || st.MeanUs <= 0 || st.Count < uint64(rep.Runs[0].Targets["iatp"].Open[0].Sent) {
			t.Errorf("iatp check %+v: want ingress, a positive mean, run once per request (%d)", st, rep.Runs[0].Targets["iatp"].Open[0].Sent)
		}
	}
	if got, want := strings.Join(names, " "), "headers route body identify rate_limit parse detect policy override record forward"; got != want {
		t.Errorf("iatp checks %q, want %q", got, want)
	}

	var md bytes.Buffer
	if err := rep.writeMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	out := md.String()
	for _, want := range []string{
		"## Max throughput", "## Latency at 50 RPS", "## Added p50 by body size", "## Memory",
		"## Time per check at 50 RPS", "| iatp | ingress | detect |",
		"| direct |", "| iatp |", "| target | 1 KiB | 16 KiB |", "after 200 requests",
		rep.Machine.Go, "× nginx",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Markdown report lacks %q:\n%s", want, out)
		}
	}
	// iatp's rows: 1 closed, 1 open, 1 size, 1 memory, one per check.
	if n := strings.Count(out, "\n| iatp |"); n != 4+len(stages) {
		t.Errorf("%d iatp rows in the Markdown report, want %d:\n%s", n, 4+len(stages), out)
	}
	if strings.Contains(out, "NaN") {
		t.Errorf("the Markdown report holds NaN:\n%s", out)
	}

	var js bytes.Buffer
	if err := rep.writeJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Summary struct {
			Closed []struct {
				Target string
				RPS    *struct{ Median float64 } `json:"rps"`
				XNginx *struct{ Median float64 } `json:"ratio_to_nginx"`
			}
		}
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON report does not decode: %v", err)
	}
	if len(back.Summary.Closed) != 2 || back.Summary.Closed[1].RPS == nil || back.Summary.Closed[1].RPS.Median <= 0 || back.Summary.Closed[1].XNginx != nil {
		t.Errorf("JSON summary of the closed loop: %s", js.String())
	}
}

// TestStartFailure checks that a sidecar that cannot start is reported with
// its own words and fails the measurement.
func TestStartFailure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and builds iatp")
	}
	opts := tinyOptions(t)
	opts.IATPArgs = []string{"--no-such-flag"}
	_, err := measure(context.Background(), opts, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "iatp did not start") || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("measure with a bad sidecar flag: %v", err)
	}
}

// TestSoakTiny runs the soak mode at a low rate for two seconds.
func TestSoakTiny(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes and builds iatp")
	}
	opts := tinyOptions(t)
	opts.Soak, opts.SoakRate, opts.SoakDuration, opts.SoakBaseline = true, 50, 1500*time.Millisecond, 500*time.Millisecond
	rep, err := measure(context.Background(), opts, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Soak
	if s == nil || len(rep.Failures) > 0 {
		t.Fatalf("soak %+v, failures %v", s, rep.Failures)
	}
	if s.IATP.Sent == 0 || s.Direct.Sent == 0 || s.IATP.P50 > s.IATP.P99 || s.IdleRSS <= 0 || s.PeakRSS < s.EndRSS || len(s.RSS) == 0 {
		t.Errorf("soak figures: %+v, iatp %+v", s, s.IATP)
	}
	var md bytes.Buffer
	if err := rep.writeMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# iatp soak: 50 RPS", "| direct |", "| iatp |", "Added by iatp", "RSS (MiB)"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("soak report lacks %q:\n%s", want, md.String())
		}
	}
}
