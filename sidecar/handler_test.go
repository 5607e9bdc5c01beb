package sidecar

import (
	"context"
	"github.com/iatp/iatp/internal/wire"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// TestHTTPHandler runs the same pipeline mounted on net/http.
func TestHTTPHandler(t *testing.T) {
	agent := newTestAgent(t)
	sc, err := New(Config{AgentURL: agent.srv.URL, Manifest: loadManifest(t, "untrusted_honeypot.json"), DataDir: t.TempDir(),
		OverrideToken: testOverride, AdminToken: testAdmin, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	srv := httptest.NewServer(sc.Handler())
	defer srv.Close()
	h := &harness{t: t, sc: sc, url: srv.URL, agent: agent}
	if r := h.do("POST", "/proxy", `{"c":"`+card+`"}`); r.status != 403 || r.str("blocked_by") != "credit_card_permanent" {
		t.Errorf("card: %d %s", r.status, r.body)
	}
	if r := h.do("POST", "/proxy", `{}`); r.status != 449 {
		t.Errorf("plain: %d %s", r.status, r.body)
	}
	r := h.do("POST", "/proxy/teapot", `{}`, wire.Override, testOverride, wire.TraceID, "nh-1")
	if r.status != 418 || string(r.body) != "short and stout" || r.header.Get(wire.Quarantined) != "true" || r.header.Get(wire.TrustScore) != "0" {
		t.Errorf("override: %d %q %v", r.status, r.body, r.header)
	}
	if r := h.do("POST", "/proxy", `{`); r.status != 400 {
		t.Errorf("bad json: %d", r.status)
	}
	if r := h.do("GET", "/.well-known/agent-manifest", ""); r.status != 200 || r.str("agent_id") != "honeypot-agent" {
		t.Errorf("manifest: %d", r.status)
	}
	if tr := h.trace("nh-1"); tr.status != 200 || !strings.Contains(string(tr.body), `"kind":"response"`) {
		t.Errorf("trace: %d %s", tr.status, tr.body)
	}
	// Streamed answers are flushed as they come on net/http too.
	req, _ := http.NewRequest("POST", srv.URL+"/proxy/sse", strings.NewReader(`{}`))
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set(wire.Override, testOverride)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.Count(string(b), "data:") != 3 {
		t.Errorf("sse: %d %q", resp.StatusCode, b)
	}
}

func TestOperatorRulesAtIngress(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) {
			c.Policy.Rules = []policy.Rule{{
				Name: "no-deletes-from-low-trust", Decision: "block", Reason: "destructive task from a caller below 8",
				When: `has(request.body.task) && request.body.task.startsWith("delete") && caller.trust_score < 8`,
			}}
		})
		r := h.do("POST", "/proxy", `{"task":"delete_everything"}`)
		if r.status != 403 || r.str("blocked_by") != "no-deletes-from-low-trust" || r.str("error") != "Policy violation: destructive task from a caller below 8" {
			t.Errorf("%d %s", r.status, r.body)
		}
		if r := h.do("POST", "/proxy", `{"task":"read"}`); r.status != 200 {
			t.Errorf("read: %d", r.status)
		}
	})
}

func TestBadRuleStopsStartUp(t *testing.T) {
	_, err := New(Config{AgentURL: "http://127.0.0.1:1", Manifest: loadManifest(t, "secure_bank.json"), DataDir: t.TempDir(),
		Policy: policy.Config{Rules: []policy.Rule{{Name: "typo", When: "caller.trust_scor < 8", Decision: "block"}}}})
	if err == nil || !strings.Contains(err.Error(), `"typo"`) {
		t.Errorf("New error = %v, want the rule's name", err)
	}
}

func TestConfigErrors(t *testing.T) {
	m := loadManifest(t, "secure_bank.json")
	for name, cfg := range map[string]Config{
		"no agent url":        {Manifest: m, DataDir: t.TempDir()},
		"relative agent url":  {AgentURL: "localhost:8000", Manifest: m, DataDir: t.TempDir()},
		"no manifest":         {AgentURL: "http://127.0.0.1:1", DataDir: t.TempDir()},
		"no data dir":         {AgentURL: "http://127.0.0.1:1", Manifest: m},
		"negative timeout":    {AgentURL: "http://127.0.0.1:1", Manifest: m, DataDir: t.TempDir(), AgentTimeout: -time.Second},
		"negative body limit": {AgentURL: "http://127.0.0.1:1", Manifest: m, DataDir: t.TempDir(), MaxBodyBytes: -1},
	} {
		t.Run(name, func(t *testing.T) {
			if sc, err := New(cfg); err == nil {
				sc.Close()
				t.Error("New accepted it")
			}
		})
	}
}

// TestGracefulShutdown checks a request in flight when shutdown starts is
// answered, and the recorder holds its answer afterwards.
func TestGracefulShutdown(t *testing.T) {
	agent := newTestAgent(t)
	dir := t.TempDir()
	sc, err := New(Config{AgentURL: agent.srv.URL, Manifest: loadManifest(t, "coder_agent.json"), DataDir: dir,
		AgentTimeout: 10 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sc.Serve(ctx, ln) }()
	got := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/proxy/slow", strings.NewReader(`{}`))
		req.Header.Set(wire.TraceID, "inflight")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- -1
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	for len(agent.received()) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if status := <-got; status != 200 {
		t.Errorf("in-flight request got %d", status)
	}
	rd, err := recorder.OpenReader(filepath.Join(dir, "recorder"))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	recs, err := rd.Trace(context.Background(), "inflight", 0)
	if err != nil || len(recs) != 2 || recs[1].Kind != recorder.KindResponse || recs[1].Status != 200 {
		t.Errorf("records after shutdown: %+v %v", recs, err)
	}
}
