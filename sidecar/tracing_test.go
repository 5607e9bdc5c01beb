package sidecar

import (
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/iatp/iatp/internal/wire"
)

func TestTracing(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
		h := start(t, "secure_bank.json", func(c *Config) { c.TracerProvider = tp })
		const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		r := h.do("POST", "/proxy", `{"task":"x","card":"`+card+`"}`, wire.TraceID, "otel-1", "Traceparent", parent)
		if r.status != 200 {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		spans := exp.GetSpans()
		byName := map[string]tracetest.SpanStub{}
		for _, s := range spans {
			byName[s.Name] = s
		}
		root, ok := byName["POST /proxy"]
		if !ok {
			t.Fatalf("no server span among %d spans", len(spans))
		}
		if got := root.SpanContext.TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("the trace does not continue the caller's: %s", got)
		}
		if got := root.Parent.SpanID().String(); got != "00f067aa0ba902b7" {
			t.Errorf("the server span's parent is %s", got)
		}
		attrs := map[string]string{}
		for _, a := range root.Attributes {
			attrs[string(a.Key)] = a.Value.String()
		}
		for k, want := range map[string]string{"iatp.trace_id": "otel-1", "iatp.outcome": "forwarded", "iatp.decision": "allow",
			"http.request.method": "POST", "http.response.status_code": "200", "iatp.sensitive": "credit_card"} {
			if attrs[k] != want {
				t.Errorf("attribute %s = %q, want %q", k, attrs[k], want)
			}
		}
		for _, phase := range []string{"receive", "decide", "record", "forward"} {
			s, ok := byName[phase]
			if !ok || s.Parent.SpanID() != root.SpanContext.SpanID() {
				t.Errorf("phase span %s missing or not a child of the server span", phase)
			}
		}
		// The agent gets the forward span as its parent, once.
		calls := h.agent.received()
		tp0 := calls[0].Header.Values("Traceparent")
		fwd := byName["forward"]
		if len(tp0) != 1 || !strings.Contains(tp0[0], fwd.SpanContext.SpanID().String()) || !strings.Contains(tp0[0], "4bf92f3577b34da6a3ce929d0e0e4736") {
			t.Errorf("the agent got traceparent %q, want the forward span %s", tp0, fwd.SpanContext.SpanID())
		}
		// The record names the W3C trace too.
		if tr := h.trace("otel-1"); !strings.Contains(string(tr.body), `"otel_trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"`) {
			t.Errorf("the record lacks the OpenTelemetry trace id: %s", tr.body)
		}
	})
}

func TestNoTracingPassesTraceparentOn(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		if r := h.do("POST", "/proxy", `{}`, "Traceparent", parent); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
		if got := h.agent.received()[0].Header.Get("Traceparent"); got != parent {
			t.Errorf("traceparent %q, want the caller's unchanged", got)
		}
	})
}
