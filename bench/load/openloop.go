package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// OpenResult is one open-loop attack: requests sent at a fixed rate whatever
// the answers, so a slow answer does not hold back the next request (no
// coordinated omission). Latencies are of the 200 answers; times are µs.
type OpenResult struct {
	Rate       int     `json:"rate"`
	BodyBytes  int     `json:"body_bytes"`
	Seconds    float64 `json:"seconds"`
	Sent       int     `json:"sent"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	P50        float64 `json:"p50_us"`
	P90        float64 `json:"p90_us"`
	P99        float64 `json:"p99_us"`
	Max        float64 `json:"max_us"`
	// Over10ms counts answers slower than 10 ms: stalls, not queueing.
	Over10ms int `json:"over_10ms"`
	// LagP99 and LagMax say how late the generator sent requests against
	// its schedule; large values mean the load generator was starved and
	// the latencies flatter the target.
	LagP99 float64 `json:"sched_lag_p99_us"`
	LagMax float64 `json:"sched_lag_max_us"`
	// CPUPerReq is the target's CPU time (user + system) over the attack,
	// divided by the requests sent, in µs.
	CPUPerReq float64 `json:"cpu_us_per_req"`
	// GeneratorCPUPerReq is the same for the harness itself (vegeta's
	// client), which shares the machine with the target.
	GeneratorCPUPerReq float64 `json:"generator_cpu_us_per_req"`

	lat Latencies
}

// attackSpec is what an open-loop attack sends.
type attackSpec struct {
	url      string
	proxy    string // the HTTP proxy to send through, if any
	body     []byte
	rate     int
	duration time.Duration
}

// openLoop attacks spec.url with vegeta at a constant rate, and reads the
// CPU time of pids before and after. Every answer other than 200 counts as
// an error.
func openLoop(ctx context.Context, spec attackSpec, pids []int) (*OpenResult, error) {
	if spec.rate <= 0 {
		return nil, fmt.Errorf("open loop: rate %d must be positive", spec.rate)
	}
	tr := vegeta.NewStaticTargeter(vegeta.Target{
		Method: http.MethodPost,
		URL:    spec.url,
		Body:   spec.body,
		Header: http.Header{"Content-Type": []string{"application/json"}},
	})
	opts := []func(*vegeta.Attacker){
		vegeta.KeepAlive(true),
		vegeta.HTTP2(false),
		vegeta.Timeout(10 * time.Second),
		vegeta.Workers(uint64(max(10, spec.rate/100))),
		vegeta.MaxBody(512),
	}
	if spec.proxy != "" {
		pu, err := url.Parse(spec.proxy)
		if err != nil {
			return nil, err
		}
		opts = append(opts, vegeta.Proxy(http.ProxyURL(pu)))
	}
	atk := vegeta.NewAttacker(opts...)
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()

	type hit struct {
		seq uint64
		at  time.Time
		lat time.Duration
		ok  bool
	}
	hits := make([]hit, 0, int(float64(spec.rate)*spec.duration.Seconds())+16)
	res := &OpenResult{Rate: spec.rate, BodyBytes: len(spec.body)}
	self := []int{os.Getpid()}
	cpu0, err := cpuTime(pids)
	if err != nil {
		return nil, err
	}
	gen0, err := cpuTime(self)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	for r := range atk.Attack(tr, vegeta.ConstantPacer{Freq: spec.rate, Per: time.Second}, spec.duration, "") {
		ok := r.Code == http.StatusOK && r.Error == ""
		if !ok {
			res.Errors++
			if res.FirstError == "" {
				res.FirstError = describeFailure(r)
			}
		}
		hits = append(hits, hit{seq: r.Seq, at: r.Timestamp, lat: r.Latency, ok: ok})
	}
	res.Seconds = time.Since(began).Seconds()
	cpu1, err := cpuTime(pids)
	if err != nil {
		return nil, err
	}
	gen1, err := cpuTime(self)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Sent = len(hits)
	if res.Sent == 0 {
		return nil, fmt.Errorf("open loop: vegeta sent no request to %s", spec.url)
	}
	res.CPUPerReq = micros(cpu1-cpu0) / float64(res.Sent)
	res.GeneratorCPUPerReq = micros(gen1-gen0) / float64(res.Sent)

	// Hit k is due (k+1) intervals after the attack began; the earliest
	// "start minus due time" stands for the beginning, so lag ≥ 0.
	interval := time.Second / time.Duration(spec.rate)
	t0 := hits[0].at
	offsets := make([]time.Duration, len(hits))
	base := time.Duration(1<<63 - 1)
	for i, h := range hits {
		offsets[i] = h.at.Sub(t0) - time.Duration(h.seq+1)*interval
		base = min(base, offsets[i])
	}
	lat := make([]time.Duration, 0, len(hits))
	for i, h := range hits {
		offsets[i] -= base
		if h.ok {
			lat = append(lat, h.lat)
			if h.lat > 10*time.Millisecond {
				res.Over10ms++
			}
		}
	}
	lags := Summarize(offsets)
	res.LagP99, res.LagMax = micros(lags.P99), micros(lags.Max)
	res.lat = Summarize(lat)
	res.P50, res.P90, res.P99, res.Max = micros(res.lat.P50), micros(res.lat.P90), micros(res.lat.P99), micros(res.lat.Max)
	return res, nil
}

// describeFailure says what went wrong with one request.
func describeFailure(r *vegeta.Result) string {
	if r.Code == 0 {
		return r.Error
	}
	s := fmt.Sprintf("HTTP %d", r.Code)
	if len(r.Body) > 0 {
		s += ": " + clip(string(r.Body), 200)
	}
	return s
}

// clip puts s on one line and shortens it to n bytes.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
