package sidecar

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"

	"github.com/valyala/fasthttp"
)

// serveInProcess runs one request through the fasthttp front end without a
// network on the caller's side (the agent is still a real server).
func serveInProcess(s *Sidecar, req *fasthttp.Request) *fasthttp.Response {
	var ctx fasthttp.RequestCtx
	ctx.Init(req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}, nil)
	s.serveFast(&ctx)
	resp := &fasthttp.Response{}
	ctx.Response.CopyTo(resp)
	if ctx.Response.IsBodyStream() {
		body, _ := io.ReadAll(ctx.Response.BodyStream())
		_ = ctx.Response.CloseBodyStream()
		resp.SetBody(body)
	}
	return resp
}

// FuzzProxy sends arbitrary bodies, paths and headers through the whole
// pipeline: nothing may panic, every refusal is JSON with error and
// trace_id, and a refused request never reaches the agent.
func FuzzProxy(f *testing.F) {
	agent := newTestAgent(&testing.T{})
	defer agent.srv.Close()
	s, err := New(Config{AgentURL: agent.srv.URL, Manifest: loadManifest(f, "untrusted_honeypot.json"), DataDir: f.TempDir(),
		OverrideToken: testOverride, MaxBodyBytes: 64 << 10, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	f.Add("POST", "/proxy", "", "", []byte(`{"task":"x"}`))
	f.Add("POST", "/proxy", "t-1", testOverride, []byte(`{"task":"x"}`))
	f.Add("POST", "/proxy/a/b?c=d", "t-2", testOverride, []byte(`[1,"4532015112830366"]`))
	f.Add("POST", "/proxy", "bad id", "", []byte(`{"ssn":"123-45-6789"}`))
	f.Add("GET", "/proxy", "", "", []byte(`{}`))
	f.Add("POST", "/proxy/%2e%2e/x", "", "", []byte(`{}`))
	f.Add("POST", "/proxy", "", testOverride, []byte("{\"a\":\"\xff\"}"))
	f.Add("POST", "/proxy/sse", "", testOverride, []byte(`"\u0034532015112830366"`))
	allowed := []int{200, 400, 403, 405, 413, 418, 449, 502, 504}
	f.Fuzz(func(t *testing.T, method, path, traceID, override string, body []byte) {
		if len(path) == 0 || path[0] != '/' {
			path = "/proxy" + path
		}
		req := fasthttp.AcquireRequest()
		defer fasthttp.ReleaseRequest(req)
		req.Header.SetMethod(method)
		req.SetRequestURI(path)
		req.Header.SetHost("sidecar.test")
		if traceID != "" {
			req.Header.Set(headerTraceID, traceID)
		}
		if override != "" {
			req.Header.Set(headerOverride, override)
		}
		req.SetBody(body)
		before := len(agent.received())
		resp := serveInProcess(s, req)
		if n := panics.Load(); n != 0 {
			t.Fatalf("a handler panicked (%d)", n)
		}
		status := resp.StatusCode()
		if !isProxyPath(req.URI().PathOriginal()) {
			return // an admin endpoint
		}
		if !slices.Contains(allowed, status) && status != 200 {
			t.Fatalf("status %d for %s %s: %s", status, method, path, resp.Body())
		}
		if status >= 400 && status != 418 {
			var e struct {
				Error   string `json:"error"`
				TraceID string `json:"trace_id"`
			}
			if err := json.Unmarshal(resp.Body(), &e); err != nil || e.Error == "" || e.TraceID == "" {
				t.Fatalf("status %d without a JSON error: %q", status, resp.Body())
			}
			if status != 502 && status != 504 && len(agent.received()) != before {
				t.Fatalf("refused request (%d) reached the agent", status)
			}
		}
	})
}
