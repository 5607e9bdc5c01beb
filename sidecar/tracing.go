package sidecar

import (
	"context"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// tracerName names the tracer of the sidecar's spans.
const tracerName = "github.com/iatp/iatp/sidecar"

// tracer returns the sidecar's tracer, or nil when tracing is off.
func (s *Sidecar) tracer() trace.Tracer {
	if s.cfg.TracerProvider == nil {
		return nil
	}
	return s.cfg.TracerProvider.Tracer(tracerName)
}

// TracerProviderFromEnv returns an OpenTelemetry tracer provider that
// exports spans over OTLP/HTTP as the standard variables say
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, with
// OTEL_EXPORTER_OTLP_HEADERS, …_TIMEOUT, …_INSECURE and the rest, read by
// the exporter itself), and its shutdown. When neither endpoint is set, or
// OTEL_SDK_DISABLED is true, it returns nil: tracing is off and costs
// nothing. service is the service.name unless OTEL_SERVICE_NAME sets one.
func TracerProviderFromEnv(ctx context.Context, service string) (trace.TracerProvider, func(context.Context) error, error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") ||
		os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		return nil, func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("sidecar: OTLP exporter: %w", err)
	}
	if v := os.Getenv("OTEL_SERVICE_NAME"); v != "" {
		service = v
	}
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(service)))
	if err != nil {
		res = resource.Default()
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}
