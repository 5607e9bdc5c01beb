package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"
)

// target is one thing the harness measures: a way to start it in front of
// the run's backend. A new target (say, two sidecars chained) is one more
// entry in targets and a start function.
type target struct {
	name  string
	about string // one line for the report
	// unavailable returns why the target cannot run on this machine, or "".
	// An unavailable target is skipped with that reason, not failed.
	unavailable func(h *harness) string
	// start launches the target; the instance's url answers POST requests.
	start func(ctx context.Context, h *harness, rd *runDir) (*instance, error)
}

// targets lists every target, in the order of the report. A chain of two
// sidecars, say, would be one more entry whose start calls startSidecar
// twice (the second in front of the first's address) and returns a single
// instance holding both processes' pids and children.
var targets = []target{
	{
		name:  "direct",
		about: "the backend alone: a minimal Go net/http server answering a small JSON",
		start: startDirect,
	},
	{
		name:        "nginx",
		about:       "nginx as a plain reverse proxy of the backend (upstream keepalive 64, 2 workers)",
		unavailable: func(h *harness) string { return h.nginxMissing },
		start:       startNginx,
	},
	{
		name:  "iatp",
		about: "iatp sidecar, default config but rate limiting off, recorder on",
		start: func(ctx context.Context, h *harness, rd *runDir) (*instance, error) {
			return startSidecar(ctx, h, rd, "iatp", rd.backendURL, nil)
		},
	},
	{
		name: "iatp-mesh",
		about: "two iatp sidecars, the path of a call between agents: the caller's egress proxy signs, " +
			"the callee's ingress verifies; the client goes through the proxy with a net/http client",
		start: startMesh,
	},
}

// targetNames lists the names of every target.
func targetNames() []string {
	out := make([]string, len(targets))
	for i, t := range targets {
		out[i] = t.name
	}
	return out
}

// lookupTarget returns the target named name.
func lookupTarget(name string) (target, bool) {
	for _, t := range targets {
		if t.name == name {
			return t, true
		}
	}
	return target{}, false
}

// instance is a started target.
type instance struct {
	url string
	// proxy, when set, is the HTTP proxy the client sends through (the
	// caller's egress proxy of the mesh target).
	proxy string
	// pids returns the processes whose CPU time and RSS are the target's.
	pids func() []int
	// metrics are the Prometheus endpoints of the target's sidecars, read
	// for the time per check; none for the targets that are not iatp.
	metrics []string
	// children are stopped at the end of the run, in reverse order.
	children []*child
}

// runDir is one run's temporary directory and its backend.
type runDir struct {
	path       string
	backendURL string // http://127.0.0.1:PORT
	backend    *child
}

// sub creates and returns a subdirectory of the run's directory.
func (rd *runDir) sub(name string) (string, error) {
	p := filepath.Join(rd.path, name)
	return p, os.MkdirAll(p, 0o755)
}

// startBackend re-executes the harness binary as the backend agent.
func startBackend(ctx context.Context, rd *runDir, body []byte) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("backend: cannot find the harness binary to re-execute: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), roleEnv+"=backend", listenEnv+"="+loopback(port))
	c, err := startChild("the backend", cmd, filepath.Join(rd.path, "backend.log"))
	if err != nil {
		return err
	}
	rd.backend = c
	rd.backendURL = "http://" + loopback(port)
	return waitReady(ctx, c, 10*time.Second, probePost(rd.backendURL+"/proxy", body))
}

func startDirect(_ context.Context, _ *harness, rd *runDir) (*instance, error) {
	pid := rd.backend.pid()
	return &instance{url: rd.backendURL + "/proxy", pids: func() []int { return []int{pid} }}, nil
}

// probePost returns a readiness probe that POSTs body to url and wants a
// 200. A connection error is retried; any other answer is fatal, since a
// target that refuses the benchmark's request cannot be measured.
func probePost(url string, body []byte) func(context.Context) error {
	client := &http.Client{Timeout: 5 * time.Second}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return fatal{err}
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		if resp.StatusCode != http.StatusOK {
			return fatal{fmt.Errorf("POST %s answered %s to the benchmark's request: %s", url, resp.Status, clip(string(bytes.TrimSpace(msg)), 300))}
		}
		return nil
	}
}

// probePostVia is probePost through an HTTP proxy.
func probePostVia(target, proxy string, body []byte) func(context.Context) error {
	pu, err := url.Parse(proxy)
	if err != nil {
		return func(context.Context) error { return fatal{err} }
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			return fatal{err}
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		if resp.StatusCode != http.StatusOK {
			return fatal{fmt.Errorf("POST %s through %s answered %s: %s", target, proxy, resp.Status, clip(string(bytes.TrimSpace(msg)), 300))}
		}
		return nil
	}
}

// stop stops the instance's processes, the last started first.
func (in *instance) stop() {
	for _, c := range slices.Backward(in.children) {
		c.stop(5 * time.Second)
	}
}
