package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Options are the harness's settings; defaultOptions keeps a whole run
// under five minutes on two cores.
type Options struct {
	Runs    int
	Targets []string

	// Closed loop (max throughput).
	Connections    int
	ClosedWarmup   time.Duration
	ClosedDuration time.Duration

	// Open loop at fixed rates, with the main body.
	BodyBytes int
	Rates     []int
	Duration  time.Duration

	// Added latency by body size.
	Sizes        []int
	SizeRate     int
	SizeDuration time.Duration

	// RSSRequests is how many requests each target answers, in the first
	// run, before its "RSS after N requests" is read; 0 skips it.
	RSSRequests int64

	// Soak replaces the whole run: open loop on the sidecar alone.
	Soak         bool
	SoakRate     int
	SoakDuration time.Duration
	SoakBaseline time.Duration

	IATPBin    string
	IATPConfig string
	IATPArgs   []string
	NginxBin   string

	// Settle is the pause after start-up and between attacks.
	Settle time.Duration
	JSON   bool
	Keep   bool
}

func defaultOptions() Options {
	return Options{
		Runs:           3,
		Targets:        targetNames(),
		Connections:    16,
		ClosedWarmup:   500 * time.Millisecond,
		ClosedDuration: 3 * time.Second,
		BodyBytes:      1 << 10,
		Rates:          []int{1000},
		Duration:       4 * time.Second,
		Sizes:          []int{1 << 10, 16 << 10, 128 << 10, 1 << 20},
		SizeRate:       100,
		SizeDuration:   1500 * time.Millisecond,
		RSSRequests:    20_000,
		SoakRate:       5000,
		SoakDuration:   60 * time.Second,
		SoakBaseline:   15 * time.Second,
		Settle:         300 * time.Millisecond,
	}
}

// parseOptions reads the command line. Usage goes to usage.
func parseOptions(args []string, usage io.Writer) (Options, error) {
	o := defaultOptions()
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(usage)
	fs.Usage = func() {
		fmt.Fprint(usage, `Usage: go run ./bench/load [flags]

Measures direct (the backend alone), nginx (plain reverse proxy, when on
PATH) and the iatp sidecar in one run, on loopback, and prints a Markdown
report (--json for machines). Exits 1 when a target does not start or
answers anything but 200. Every flag also takes the --name form.

Flags:
`)
		fs.PrintDefaults()
	}
	var targetsFlag, ratesFlag, sizesFlag, argsFlag string
	fs.IntVar(&o.Runs, "runs", o.Runs, "repeat the whole measurement `N` times, alternating the target order; figures are median (min–max)")
	fs.StringVar(&targetsFlag, "targets", strings.Join(o.Targets, ","), "comma-separated `list` of targets to measure ("+strings.Join(targetNames(), ", ")+")")
	fs.IntVar(&o.Connections, "connections", o.Connections, "keep-alive connections of the closed-loop (max throughput) client")
	fs.DurationVar(&o.ClosedWarmup, "closed-warmup", o.ClosedWarmup, "closed loop: unmeasured warm-up before each measured window")
	fs.DurationVar(&o.ClosedDuration, "closed-duration", o.ClosedDuration, "closed loop: measured duration per target")
	bodyFlag := fs.String("body", sizeFlag(o.BodyBytes), "size of the JSON body of the closed and open loops (1k, 16k, 1m or bytes)")
	fs.StringVar(&ratesFlag, "rates", joinInts(o.Rates), "open loop: comma-separated `rates` in requests per second")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "open loop: duration of each attack")
	fs.StringVar(&sizesFlag, "sizes", sizesText(o.Sizes), "body sizes for the added latency by size (empty: skip)")
	fs.IntVar(&o.SizeRate, "size-rate", o.SizeRate, "body sizes: open-loop rate in requests per second")
	fs.DurationVar(&o.SizeDuration, "size-duration", o.SizeDuration, "body sizes: duration of each attack")
	fs.Int64Var(&o.RSSRequests, "requests-for-rss", o.RSSRequests, "in the first run, send `N` requests (closed loop) to each target and read its RSS after them (0: skip)")
	fs.BoolVar(&o.Soak, "soak", o.Soak, "soak mode instead: open loop on the sidecar at --soak-rate for --soak-duration, RSS sampled each second")
	fs.IntVar(&o.SoakRate, "soak-rate", o.SoakRate, "soak: requests per second")
	fs.DurationVar(&o.SoakDuration, "soak-duration", o.SoakDuration, "soak: duration on the sidecar")
	fs.DurationVar(&o.SoakBaseline, "soak-baseline", o.SoakBaseline, "soak: duration of the direct baseline at the same rate (for the added latency)")
	fs.StringVar(&o.IATPBin, "iatp-bin", "", "use this iatp binary instead of building ./cmd/iatp of the repository")
	fs.StringVar(&o.IATPConfig, "iatp-config", "", "extra sidecar YAML `file`, merged over the harness's (rate_limit off); its relative paths are taken from its directory")
	fs.StringVar(&argsFlag, "iatp-args", "", "extra `flags` for iatp sidecar, split at spaces (e.g. \"--require-authenticated-callers\")")
	fs.StringVar(&o.NginxBin, "nginx", "", "nginx `binary` (default: nginx on PATH; none: the nginx row is skipped)")
	fs.DurationVar(&o.Settle, "settle", o.Settle, "pause after start-up and between attacks")
	fs.BoolVar(&o.JSON, "json", false, "print the report as JSON instead of Markdown")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (configs, logs, recorder data) and print its path")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (flags only)", fs.Arg(0))
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	var err error
	o.Targets = splitList(targetsFlag)
	for _, t := range o.Targets {
		if _, ok := lookupTarget(t); !ok {
			bad("--targets: unknown target %q (known: %s)", t, strings.Join(targetNames(), ", "))
		}
	}
	if len(o.Targets) == 0 && !o.Soak {
		bad("--targets: name at least one target")
	}
	if o.BodyBytes, err = parseSize(*bodyFlag); err != nil {
		bad("--body: %v", err)
	} else if o.BodyBytes < minBodySize {
		bad("--body: at least %d bytes", minBodySize)
	}
	if o.Rates, err = parseInts(ratesFlag); err != nil {
		bad("--rates: %v", err)
	}
	o.Sizes = nil
	for _, s := range splitList(sizesFlag) {
		n, err := parseSize(s)
		if err == nil && n < minBodySize {
			err = fmt.Errorf("size %q: at least %d bytes", s, minBodySize)
		}
		if err != nil {
			bad("--sizes: %v", err)
			continue
		}
		o.Sizes = append(o.Sizes, n)
	}
	o.IATPArgs = strings.Fields(argsFlag)
	if o.Runs < 1 {
		bad("--runs: at least 1")
	}
	if o.Connections < 1 {
		bad("--connections: at least 1")
	}
	if o.SizeRate < 1 || o.SoakRate < 1 {
		bad("--size-rate and --soak-rate: at least 1 request per second")
	}
	for name, d := range map[string]time.Duration{"--closed-duration": o.ClosedDuration, "--duration": o.Duration, "--size-duration": o.SizeDuration, "--soak-duration": o.SoakDuration, "--soak-baseline": o.SoakBaseline} {
		if d <= 0 {
			bad("%s: must be positive", name)
		}
	}
	if o.RSSRequests < 0 {
		bad("--requests-for-rss: 0 or more")
	}
	return o, errors.Join(errs...)
}

// estimate is how long a run with these options should take, start-up and
// build excluded; requests for RSS are counted at an assumed 5k RPS.
func (o Options) estimate() time.Duration {
	if o.Soak {
		return o.SoakDuration + o.SoakBaseline + 5*time.Second
	}
	t := time.Duration(len(o.Targets))
	attacks := t * (1 + time.Duration(len(o.Rates)+len(o.Sizes)))
	perRun := 2*time.Second + attacks*o.Settle +
		t*(o.ClosedWarmup+o.ClosedDuration) +
		t*time.Duration(len(o.Rates))*o.Duration +
		t*time.Duration(len(o.Sizes))*o.SizeDuration
	rss := t * time.Duration(o.RSSRequests) * time.Second / 5000
	return time.Duration(o.Runs)*perRun + rss
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// sizeFlag prints a size the way parseSize reads it.
func sizeFlag(n int) string {
	switch {
	case n%(1<<20) == 0:
		return strconv.Itoa(n>>20) + "m"
	case n%(1<<10) == 0:
		return strconv.Itoa(n>>10) + "k"
	}
	return strconv.Itoa(n)
}

func sizesText(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = sizeFlag(n)
	}
	return strings.Join(s, ",")
}
