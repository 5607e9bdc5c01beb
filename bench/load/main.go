// Command load is iatp's load harness: one command that measures the
// sidecar against the backend alone and against nginx as a plain reverse
// proxy, on loopback, and prints the figures of PERFORMANCE.md (throughput,
// latency added at fixed rates and by body size, CPU per request, RSS) as a
// Markdown report or JSON.
//
// Run it from the repository with
//
//	go run ./bench/load
//
// It builds ./cmd/iatp and drives the sidecar only through its command line
// (`iatp sidecar`), starts a minimal Go backend by re-executing itself,
// starts nginx when it is on PATH, and needs nothing else. docs/benchmarks.md
// explains every figure and flag.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	if ok, err := runChildRole(); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli runs the harness with args and returns the exit code: 0 when every
// target started and answered only 200, 1 otherwise, 2 for bad flags.
func cli(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 2
	}
	rep, err := measure(ctx, opts, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 1
	}
	if opts.JSON {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeMarkdown(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 1
	}
	if len(rep.Failures) > 0 {
		fmt.Fprintf(stderr, "load: %d measurement(s) saw errors; the figures above are not valid:\n  %s\n",
			len(rep.Failures), strings.Join(rep.Failures, "\n  "))
		return 1
	}
	return 0
}

// measure runs the whole measurement the options describe, writing
// progress to progress, and returns the report. An error means a target did
// not start or died; errors in answers are in Report.Failures instead.
func measure(ctx context.Context, opts Options, progress io.Writer) (*Report, error) {
	h, err := newHarness(ctx, opts, progress)
	if err != nil {
		return nil, err
	}
	defer h.close()
	rep := &Report{
		Machine: describeMachine(h),
		Options: optionsJSON(opts),
		Targets: map[string]string{},
		opts:    opts,
	}
	for _, t := range h.targets {
		rep.Targets[t.name] = t.about
		rep.order = append(rep.order, t.name)
	}
	h.logf("about %v of measurement (build and start-up not counted)", opts.estimate().Round(1e9))
	if opts.Soak {
		if rep.Soak, err = h.runSoak(ctx); err != nil {
			return nil, err
		}
	} else {
		if rep.Runs, err = h.runAll(ctx); err != nil {
			return nil, err
		}
		rep.Summary = summarize(rep.Runs, rep.order, opts)
	}
	rep.Skipped, rep.Failures = h.skipped, h.failures
	return rep, nil
}
