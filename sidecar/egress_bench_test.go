package sidecar

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"testing"

	"github.com/iatp/iatp/identity"
)

// BenchmarkEgressPath sends a 1 kB call along the whole path between two
// agents: A's egress proxy (discover from cache, decide, sign, record) →
// B's ingress (verify, decide, record) → B's agent, over loopback.
func BenchmarkEgressPath(b *testing.B) {
	agent := newTestAgent(&testing.T{})
	b.Cleanup(agent.srv.Close)
	keyA, _ := identity.GenerateKey(nil)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	serve := func(cfg Config) (string, string) {
		s, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		var eln net.Listener
		if cfg.EgressListen != "" {
			eln, _ = net.Listen("tcp", "127.0.0.1:0")
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.ServeAll(ctx, ln, eln) }()
		b.Cleanup(func() { cancel(); <-done })
		if eln != nil {
			return "http://" + ln.Addr().String(), "http://" + eln.Addr().String()
		}
		return "http://" + ln.Addr().String(), ""
	}
	bURL, _ := serve(Config{AgentURL: agent.srv.URL, Manifest: loadManifest(b, "secure_bank.json"), DataDir: b.TempDir(),
		RateLimitPerMinute: -1, Logger: quiet, TrustedAgents: map[string]ed25519.PublicKey{"coder-agent": keyA.PublicKey()}})
	_, proxy := serve(Config{AgentURL: agent.srv.URL, Manifest: loadManifest(b, "coder_agent.json"), DataDir: b.TempDir(),
		RateLimitPerMinute: -1, Logger: quiet, Key: keyA, EgressListen: "on"})
	pu, _ := url.Parse(proxy)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	body := []byte(requestKB)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		resp, err := client.Post(bURL+"/proxy", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}
