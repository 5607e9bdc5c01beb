package sidecar

import (
	"go.opentelemetry.io/otel/trace"

	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// Defaults of Config.
const (
	DefaultListen            = "127.0.0.1:8001"
	DefaultAgentTimeout      = 30 * time.Second
	DefaultMaxBodyBytes      = 10 << 20
	DefaultMaxJSONDepth      = 256
	DefaultMaxRecordPayload  = 64 << 10
	DefaultMaxResponseRecord = 64 << 10
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultMaxConnsPerAgent  = 512
	DefaultMaxConnections    = 10000
	DefaultStreamTimeout     = 10 * time.Minute
	DefaultMaxAttestationAge = 24 * time.Hour
	DefaultManifestMaxAge    = 5 * time.Minute
)

// Config configures a Sidecar. Zero values select the defaults named beside
// each field; AgentURL, Manifest and DataDir (or Recorder.Dir) are required.
type Config struct {
	// AgentURL is the protected agent. POST /proxy forwards to it exactly as
	// written; POST /proxy/a/b forwards to AgentURL + "/a/b".
	AgentURL string
	// Manifest is the protected agent's manifest (required).
	Manifest *manifest.Manifest
	// Listen is the address Run listens on; "" means DefaultListen.
	Listen string
	// EgressListen is the address of the egress proxy (an HTTP forward
	// proxy the agent uses to call other agents, PROTOCOL §0); "" turns
	// egress off. The CLI defaults it to DefaultEgressListen.
	EgressListen string
	// Egress configures the egress proxy.
	Egress EgressConfig
	// Reputation configures the reputation node, kept in DataDir.
	Reputation ReputationConfig
	// DataDir holds the sidecar's state: the flight recorder in
	// DataDir/recorder. Required.
	DataDir string

	// Policy is the operator's policy (rules, warn threshold, switches).
	Policy policy.Config
	// OverrideToken is the human-held secret that overrides a 449 warning
	// (PROTOCOL §6). Empty or weak disables overrides.
	OverrideToken string
	// AdminToken authorises slash and import (Authorization: Bearer).
	// Empty or weak disables them.
	AdminToken string

	// AgentTimeout bounds the wait for the agent's answer; the manifest's
	// capabilities.sla_latency_ms, when shorter, is used instead. 0 means
	// DefaultAgentTimeout (30 s).
	AgentTimeout time.Duration
	// MaxBodyBytes bounds a request body (413 beyond); 0 means 10 MiB.
	MaxBodyBytes int64
	// MaxJSONDepth bounds JSON nesting (400 beyond); 0 means 256.
	MaxJSONDepth int
	// RedactForwarded forwards the scrubbed body instead of the original.
	RedactForwarded bool
	// RateLimitPerMinute limits each caller (authenticated agent id, else
	// client address). 0 means the manifest's capabilities.rate_limit; a
	// negative value turns rate limiting off.
	RateLimitPerMinute int
	// RateLimitBurst is the bucket size; 0 means RateLimitPerMinute.
	RateLimitBurst int

	// Recorder configures the flight recorder; Dir defaults to
	// DataDir/recorder.
	Recorder recorder.Config
	// MaxRecordPayload bounds the scrubbed request payload kept in a record;
	// a larger one is replaced by a summary. 0 means 64 KiB.
	MaxRecordPayload int
	// MaxResponseRecord bounds the scrubbed copy of the agent's answer kept
	// in a record. 0 means 64 KiB.
	MaxResponseRecord int

	// Server limits. Zero values mean the Default* constants.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	MaxHeaderBytes    int
	ShutdownTimeout   time.Duration
	// MaxConnsPerAgent bounds the connections to the agent; 0 means 512.
	MaxConnsPerAgent int
	// MaxConnections bounds the connections each listener serves at once;
	// past it a new connection gets 503 and is closed. 0 means
	// DefaultMaxConnections.
	MaxConnections int

	// StreamTimeout bounds a streamed answer (the caller sent Accept:
	// text/event-stream) from start to end; the agent timeout bounds every
	// other answer. 0 means DefaultStreamTimeout (10 minutes).
	StreamTimeout time.Duration

	// Key is the sidecar's own Ed25519 key: it names the agent's
	// verification_key in the served manifest, signs the manifest, and
	// signs the recorder's checkpoints. The zero value means no key.
	Key identity.PrivateKey
	// KeyID is the key id of manifest signatures; "" means the agent id.
	KeyID string
	// Attestation is the control plane's attestation of this agent, served
	// at /.well-known/agent-attestation and in the manifest. Its agent id
	// and (v2) verification key must be this agent's.
	Attestation *identity.Attestation
	// TrustedAgents pins caller agent ids to their public keys.
	TrustedAgents map[string]ed25519.PublicKey
	// ControlPlaneKeys are the control-plane keys whose attestations are
	// accepted, by key id.
	ControlPlaneKeys map[string]ed25519.PublicKey
	// RequireAuthenticatedCallers refuses unsigned requests with 401.
	RequireAuthenticatedCallers bool
	// MaxClockSkew bounds the age of a request signature; 0 means 60 s.
	MaxClockSkew time.Duration
	// MaxAttestationAge bounds the age of v1 attestations; 0 means 24 h.
	MaxAttestationAge time.Duration
	// PublicURL is the sidecar's URL as callers address it, such as
	// "https://bank.example.com", when a load balancer or TLS terminator in
	// front of it changes the scheme or Host: request signatures cover the
	// URI the caller used. Empty means the scheme and Host of each request.
	PublicURL string
	// ManifestMaxAge is the Cache-Control max-age of the served manifest:
	// how long callers' sidecars use it before they revalidate it (with its
	// ETag). 0 means DefaultManifestMaxAge.
	ManifestMaxAge time.Duration
	// PublicTraces serves /trace and /quarantine without the admin token,
	// as the Python package does. They hold scrubbed request payloads.
	PublicTraces bool

	// Pprof serves net/http/pprof at /debug/pprof/, behind the admin token.
	Pprof bool
	// TracerProvider, if not nil, traces every exchange with OpenTelemetry
	// (see TracerProviderFromEnv); nil traces nothing, at no cost.
	TracerProvider trace.TracerProvider
	// Logger receives operational logs; nil means slog.Default().
	Logger *slog.Logger
	// Clock is the time source; nil means time.Now.
	Clock func() time.Time
}

// withDefaults validates cfg and fills in defaults.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.AgentURL == "" {
		bad("agent URL is required (--agent-url or IATP_AGENT_URL)")
	} else if u, err := url.Parse(cfg.AgentURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("agent URL %q must be an absolute http:// or https:// URL", cfg.AgentURL)
	}
	if cfg.PublicURL != "" {
		if u, err := url.Parse(cfg.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
			bad("public URL (identity.public_url) %q must be a scheme and host only, such as https://bank.example.com", cfg.PublicURL)
		}
		cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	}
	if cfg.Manifest == nil {
		bad("a manifest is required (--manifest FILE, or IATP_AGENT_ID and friends)")
	}
	if cfg.DataDir == "" && cfg.Recorder.Dir == "" {
		bad("a data directory is required (--data-dir)")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	def := func(d *time.Duration, v time.Duration, name string) {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			bad("%s must not be negative, got %s", name, *d)
		}
	}
	def(&cfg.AgentTimeout, DefaultAgentTimeout, "agent timeout")
	def(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout, "read header timeout")
	def(&cfg.ReadTimeout, DefaultReadTimeout, "read timeout")
	def(&cfg.IdleTimeout, DefaultIdleTimeout, "idle timeout")
	def(&cfg.ShutdownTimeout, DefaultShutdownTimeout, "shutdown timeout")
	def(&cfg.StreamTimeout, DefaultStreamTimeout, "stream timeout")
	def(&cfg.MaxAttestationAge, DefaultMaxAttestationAge, "max attestation age")
	def(&cfg.ManifestMaxAge, DefaultManifestMaxAge, "manifest max age")
	if cfg.MaxClockSkew < 0 {
		bad("max clock skew must not be negative, got %s", cfg.MaxClockSkew)
	}
	defInt := func(n *int64, v int64, name string) {
		switch {
		case *n == 0:
			*n = v
		case *n < 0:
			bad("%s must not be negative, got %d", name, *n)
		}
	}
	defInt(&cfg.MaxBodyBytes, DefaultMaxBodyBytes, "max body bytes")
	for _, f := range []struct {
		p    *int
		v    int
		name string
	}{
		{&cfg.MaxJSONDepth, DefaultMaxJSONDepth, "max JSON depth"},
		{&cfg.MaxRecordPayload, DefaultMaxRecordPayload, "max record payload"},
		{&cfg.MaxResponseRecord, DefaultMaxResponseRecord, "max response record"},
		{&cfg.MaxHeaderBytes, DefaultMaxHeaderBytes, "max header bytes"},
		{&cfg.MaxConnsPerAgent, DefaultMaxConnsPerAgent, "max connections per agent"},
		{&cfg.MaxConnections, DefaultMaxConnections, "max connections"},
	} {
		n := int64(*f.p)
		defInt(&n, int64(f.v), f.name)
		*f.p = int(n)
	}
	if cfg.RateLimitPerMinute == 0 && cfg.Manifest != nil {
		cfg.RateLimitPerMinute = cfg.Manifest.Capabilities.RateLimit
	}
	const maxRecordLimit = 64<<20 - 64<<10 // the recorder's largest record, less room for the rest of it
	if cfg.MaxRecordPayload > maxRecordLimit {
		bad("max record payload (recorder.max_payload_bytes) %d is over %d", cfg.MaxRecordPayload, maxRecordLimit)
	}
	if cfg.MaxResponseRecord > maxRecordLimit {
		bad("max response record (recorder.max_response_bytes) %d is over %d", cfg.MaxResponseRecord, maxRecordLimit)
	}
	if cfg.Recorder.MaxRecordBytes == 0 {
		// A record holds at most one bounded payload plus reasons and details.
		cfg.Recorder.MaxRecordBytes = max(recorder.DefaultMaxRecordBytes, max(cfg.MaxRecordPayload, cfg.MaxResponseRecord)+64<<10)
	}
	if cfg.Recorder.Dir == "" && cfg.DataDir != "" {
		cfg.Recorder.Dir = cfg.DataDir + "/recorder"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Recorder.Logger == nil {
		cfg.Recorder.Logger = cfg.Logger
	}
	if cfg.Recorder.Clock == nil {
		cfg.Recorder.Clock = cfg.Clock
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("sidecar: invalid configuration: %w", errors.Join(errs...))
	}
	return cfg, nil
}
