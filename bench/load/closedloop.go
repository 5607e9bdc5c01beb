package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// ClosedResult is one closed-loop run: a fixed number of keep-alive
// connections, each sending its next request as soon as the previous answer
// arrived, as fast as the target allows.
type ClosedResult struct {
	Connections int     `json:"connections"`
	Seconds     float64 `json:"seconds"`
	Requests    int64   `json:"requests"`
	RPS         float64 `json:"rps"`
	Errors      int64   `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	// CPUPerReq is the target's CPU time over the measured window divided
	// by the requests answered in it, in µs.
	CPUPerReq float64 `json:"cpu_us_per_req"`
}

// closedSpec is what a closed-loop run sends and for how long.
type closedSpec struct {
	url   string
	proxy string // the HTTP proxy to send through, if any (net/http client)
	body  []byte
	conns int
	// warmup runs before the measured window: connections open, caches
	// fill, and the first requests are not counted.
	warmup   time.Duration
	duration time.Duration
	// limit, when positive, ends the run after that many answers
	// (measured window only) instead of after duration.
	limit int64
	// every, when set, is called once a second during the run.
	every func()
}

// closedLoop runs the closed-loop client: conns goroutines, each with its own
// keep-alive connection from a fasthttp.HostClient (a client about as cheap
// as wrk, so the generator takes little of the machine from the target).
// Every answer other than 200 counts as an error.
func closedLoop(ctx context.Context, spec closedSpec, pids []int) (*ClosedResult, error) {
	u, err := url.Parse(spec.url)
	if err != nil {
		return nil, err
	}
	if spec.conns <= 0 {
		return nil, fmt.Errorf("closed loop: %d connections", spec.conns)
	}
	hc := &fasthttp.HostClient{
		Addr:                          u.Host,
		MaxConns:                      spec.conns,
		ReadTimeout:                   10 * time.Second,
		WriteTimeout:                  10 * time.Second,
		MaxIdemponentCallAttempts:     1,
		DisableHeaderNamesNormalizing: true,
		NoDefaultUserAgentHeader:      true,
	}
	defer hc.CloseIdleConnections()

	var (
		done      atomic.Bool
		answered  atomic.Int64
		stopAt    atomic.Int64 // with a limit: the count that ends the run
		failed    atomic.Int64
		firstOnce sync.Once
		firstErr  string
		wg        sync.WaitGroup
	)
	fail := func(msg string) {
		failed.Add(1)
		firstOnce.Do(func() { firstErr = msg })
	}
	send := func() {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		req.SetRequestURI(spec.url)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(spec.body)
		for !done.Load() {
			if err := hc.Do(req, resp); err != nil {
				fail(err.Error())
				time.Sleep(time.Millisecond) // a dead target must not spin the CPU
				continue
			}
			if code := resp.StatusCode(); code != fasthttp.StatusOK {
				fail(fmt.Sprintf("HTTP %d: %s", code, clip(string(resp.Body()), 200)))
				continue
			}
			if n := answered.Add(1); n == stopAt.Load() {
				done.Store(true)
			}
		}
	}
	if spec.proxy != "" {
		// fasthttp's client speaks no proxy protocol: through a proxy, each
		// connection is a net/http client's (a costlier generator).
		pu, err := url.Parse(spec.proxy)
		if err != nil {
			return nil, err
		}
		tr := &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConnsPerHost: spec.conns, MaxConnsPerHost: spec.conns}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		send = func() {
			for !done.Load() {
				resp, err := client.Post(spec.url, "application/json", bytes.NewReader(spec.body))
				if err != nil {
					fail(err.Error())
					time.Sleep(time.Millisecond)
					continue
				}
				msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Sprintf("HTTP %d: %s", resp.StatusCode, clip(string(msg), 200)))
					continue
				}
				if n := answered.Add(1); n == stopAt.Load() {
					done.Store(true)
				}
			}
		}
	}
	for range spec.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			send()
		}()
	}
	stopAll := func() { done.Store(true); wg.Wait() }

	if !sleepCtx(ctx, spec.warmup) {
		stopAll()
		return nil, ctx.Err()
	}
	n0 := answered.Load()
	if spec.limit > 0 {
		stopAt.Store(n0 + spec.limit)
	}
	cpu0, err := cpuTime(pids)
	if err != nil {
		stopAll()
		return nil, err
	}
	t0 := time.Now()
	ticker := time.NewTicker(100 * time.Millisecond)
	lastEvery := t0
loop:
	for {
		select {
		case <-ctx.Done():
			stopAll()
			return nil, ctx.Err()
		case now := <-ticker.C:
			if spec.every != nil && now.Sub(lastEvery) >= time.Second {
				lastEvery = now
				spec.every()
			}
			if spec.limit > 0 {
				if done.Load() {
					break loop
				}
			} else if now.Sub(t0) >= spec.duration {
				break loop
			}
		}
	}
	ticker.Stop()
	n1 := answered.Load()
	elapsed := time.Since(t0)
	cpu1, err := cpuTime(pids)
	stopAll()
	if err != nil {
		return nil, err
	}
	res := &ClosedResult{
		Connections: spec.conns,
		Seconds:     elapsed.Seconds(),
		Requests:    n1 - n0,
		Errors:      failed.Load(),
		FirstError:  firstErr,
	}
	res.RPS = float64(res.Requests) / elapsed.Seconds()
	if res.Requests > 0 {
		res.CPUPerReq = micros(cpu1-cpu0) / float64(res.Requests)
	}
	return res, nil
}

// sleepCtx sleeps for d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
