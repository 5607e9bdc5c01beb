package client_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
)

// reportLatency reports the p50 and p99 of durs, in µs.
func reportLatency(b *testing.B, durs []time.Duration) {
	if len(durs) == 0 {
		return
	}
	slices.Sort(durs)
	at := func(q float64) float64 {
		return float64(durs[min(len(durs)-1, int(q*float64(len(durs))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

// BenchmarkColdHandshake is a first call's handshake against a real
// sidecar over loopback: fetch the manifest and the attestation, verify
// the manifest's JWS and the attestation, and decide (Evaluate, with the
// target forgotten before each iteration). Connections stay open between
// iterations, as they do between the calls of an agent.
func BenchmarkColdHandshake(b *testing.B) {
	for _, f := range []front{fastFront, httpFront} {
		b.Run(string(f), func(b *testing.B) {
			m := newMesh(b)
			bank := startRemote(b, f, "secure_bank.json", m.attested(b))
			c := m.newClient(b, nil)
			req := client.Request{URL: bank.url + "/proxy", Body: []byte(`{"task":"balance","amount":120.5}`)}
			ctx := context.Background()
			durs := make([]time.Duration, 0, 1<<16)
			b.ReportAllocs()
			for b.Loop() {
				c.Discoverer().Forget(bank.url)
				start := time.Now()
				d, err := c.Evaluate(ctx, req)
				durs = append(durs, time.Since(start))
				if err != nil || d.Outcome != policy.Allow || d.Proven != "attested" || d.TrustScore != 10 {
					b.Fatalf("%+v, %v", d, err)
				}
			}
			reportLatency(b, durs)
		})
	}
}

// BenchmarkWarmDecision is the decision on a small allowed JSON call to a
// target already discovered:
//
//	Evaluate         the public call: trace id, URL, parse and scan the
//	                 body, discover (a cache hit), decide
//	Discover+Decide  the decision itself: Discover (a cache hit) and the
//	                 policy engine on the cached target
//	pipeline         the same two as the Transport's checks run them,
//	                 DiscoverCheck and pipeline.Decide on an Exchange
//	Discover         the cache hit alone
//	Decide           policy.Engine.Decide alone, on the cached target
func BenchmarkWarmDecision(b *testing.B) {
	m := newMesh(b)
	bank := startRemote(b, httpFront, "secure_bank.json", m.attested(b))
	c := m.newClient(b, nil)
	ctx := context.Background()
	url := bank.url + "/proxy"
	body := []byte(`{"task":"balance","account":"primary"}`)
	tg, err := c.Discover(ctx, url)
	if err != nil || tg.Proven != "attested" {
		b.Fatalf("%+v, %v", tg, err)
	}
	engine, err := policy.New(policy.Config{}) // the client's egress policy: the built-in rules
	if err != nil {
		b.Fatal(err)
	}
	self := policy.Caller{AgentID: "coder-agent", Authenticated: true, Attested: true, TrustLevel: manifest.Standard}
	in := policy.Input{Direction: policy.Egress, Caller: self, Request: policy.Request{Method: "POST", Path: "/proxy"}}
	allowed := func(b *testing.B, d policy.Decision, err error) {
		if err != nil || d.Outcome != policy.Allow || d.TrustScore != 10 {
			b.Fatalf("%+v, %v", d, err)
		}
	}

	b.Run("Evaluate", func(b *testing.B) {
		req := client.Request{URL: url, Body: body}
		b.ReportAllocs()
		for b.Loop() {
			d, err := c.Evaluate(ctx, req)
			if err != nil || d.Outcome != policy.Allow {
				b.Fatalf("%+v, %v", d, err)
			}
		}
	})
	b.Run("Discover+Decide", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			t, err := c.Discover(ctx, url)
			if err != nil {
				b.Fatal(err)
			}
			in.Target = t.PolicyTarget(policy.Reputation{})
			d, err := engine.Decide(ctx, &in)
			allowed(b, d, err)
		}
	})
	b.Run("pipeline", func(b *testing.B) {
		discover := client.DiscoverCheck{Discoverer: c.Discoverer()}
		decide := pipeline.Decide{Engine: engine, Direction: policy.Egress}
		x := pipeline.Acquire()
		defer pipeline.Release(x)
		b.ReportAllocs()
		for b.Loop() {
			x.Kind, x.Method, x.Origin, x.Path, x.Caller = pipeline.Egress, "POST", tg.Origin, "/proxy", self
			if r := discover.Run(ctx, x); r != nil {
				b.Fatal(r.Msg)
			}
			if r := decide.Run(ctx, x); r != nil {
				b.Fatal(r.Msg)
			}
			allowed(b, x.Decision, nil)
		}
	})
	b.Run("Discover", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if t, err := c.Discover(ctx, url); err != nil || t != tg {
				b.Fatal("not the cached target")
			}
		}
	})
	b.Run("Decide", func(b *testing.B) {
		in.Target = tg.PolicyTarget(policy.Reputation{})
		b.ReportAllocs()
		for b.Loop() {
			d, err := engine.Decide(ctx, &in)
			allowed(b, d, err)
		}
	})
}
