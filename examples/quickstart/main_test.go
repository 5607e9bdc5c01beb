package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestQuickstart runs the quickstart in front of a real agent and calls it.
func TestQuickstart(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"answer":42}`))
	}))
	defer agent.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, agent.URL, addr, t.TempDir()) }()
	var resp *http.Response
	for range 100 {
		if resp, err = http.Post("http://"+addr+"/proxy", "application/json", strings.NewReader(`{"q":"life"}`)); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Agent-Trust-Score") != "10" {
		t.Errorf("status %d, trust score %q", resp.StatusCode, resp.Header.Get("X-Agent-Trust-Score"))
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
