package sidecar

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/iatp/iatp/pipeline"
)

// requestKB is a ~1 kB JSON request of the kind agents exchange.
var requestKB = `{"task":"book_flight","trace":"c0a8012e-7f3b-4c55-9e21-3b1f0d6a9e11","user":{"name":"Ada Lovelace","tier":"gold","locale":"en-GB"},` +
	`"itinerary":[{"from":"LHR","to":"JFK","date":"2026-12-01T09:30:00Z","class":"economy","fare":412.50},` +
	`{"from":"JFK","to":"SFO","date":"2026-12-05T14:10:00Z","class":"economy","fare":189.99}],` +
	`"preferences":{"seat":"aisle","meal":"vegetarian","bags":1,"notes":"` + strings.Repeat("window if no aisle; ", 20) + `"},` +
	`"budget":{"currency":"GBP","max":900},"idempotency_key":"b7e1c2d4-5a6f-4e8b-9c0d-1e2f3a4b5c6d"}`

func benchSidecar(b *testing.B, manifestFile string) (*Sidecar, *testAgent) {
	agent := newTestAgent(&testing.T{})
	b.Cleanup(agent.srv.Close)
	s, err := New(Config{AgentURL: agent.srv.URL, Manifest: loadManifest(b, manifestFile), DataDir: b.TempDir(),
		RateLimitPerMinute: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, agent
}

// BenchmarkProxyAllowed sends a 1 kB JSON request through the whole
// pipeline — trace id, detection, policy, the request record, the agent
// over loopback, the answer's record — in process.
func BenchmarkProxyAllowed(b *testing.B) {
	s, _ := benchSidecar(b, "secure_bank.json")
	req := fasthttp.AcquireRequest()
	b.ReportAllocs()
	b.SetBytes(int64(len(requestKB)))
	for b.Loop() {
		req.Reset()
		req.Header.SetMethod("POST")
		req.SetRequestURI("/proxy")
		req.Header.SetContentType("application/json")
		req.SetBodyString(requestKB)
		var ctx fasthttp.RequestCtx
		ctx.Init(req, nil, nil)
		s.serveFast(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

// BenchmarkAdmit is the pipeline's own work on a 1 kB request, without the
// agent: headers, route, detection and scrubbing, policy, the request record.
func BenchmarkAdmit(b *testing.B) {
	s, _ := benchSidecar(b, "secure_bank.json")
	checks := s.ingressChecks()
	p := pipeline.New(pipeline.Config{Recorder: s.rec, AgentID: "bench"}, checks[:len(checks)-1]...)
	body := []byte(requestKB)
	header := pipeline.Fields{{Name: "Content-Type", Value: "application/json"}, {Name: "Host", Value: "sidecar.test"}}
	ctx := b.Context()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		x := pipeline.Acquire()
		x.Method, x.Path, x.Header, x.Body, x.Peer = "POST", "/proxy", header, body, "127.0.0.1"
		if a := p.Serve(ctx, x); a.Status != 204 {
			b.Fatalf("status %d: %s", a.Status, a.Body)
		}
		pipeline.Finish(x)
	}
}
