// Package sidecar is the iatp sidecar: it protects one agent (ingress),
// publishing its manifest, authenticating callers, deciding every request
// with the policy engine, scrubbing and recording it in the flight recorder,
// and forwarding what is allowed.
//
// Embed it with New and Run, the Go counterpart of the Python package's
// create_sidecar(agent_url, manifest, port).run(); or mount Handler in a
// server of your own. Run serves POST /proxy on fasthttp, which is what
// makes the sidecar as fast as nginx as a plain proxy (docs/http-stack.md);
// Handler serves the same pipeline on net/http.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
	"github.com/iatp/iatp/reputation"
)

// flightRecorder is what the sidecar needs of the flight recorder.
type flightRecorder interface {
	Append(ctx context.Context, r *recorder.Record) (uint64, error)
	Trace(ctx context.Context, traceID string, limit int) ([]recorder.Record, error)
	Close() error
}

var _ flightRecorder = (*recorder.Log)(nil)

// Sidecar protects one agent. Create it with New; it is safe for concurrent use.
type Sidecar struct {
	cfg            Config
	log            *slog.Logger
	manifestDoc    []byte
	manifestETag   string
	attestationDoc []byte
	engine         *policy.Engine
	rec            flightRecorder
	node           *reputation.Node
	repHandler     http.Handler
	quarantine     *quarantineStore
	verifier       *identity.CallerVerifier
	override       pipeline.Secret
	admin          pipeline.Secret
	metrics        *metrics
	agent          *upstream
	ingress        *pipeline.Pipeline
	egress         *pipeline.Pipeline // nil without EgressListen
	connect        *pipeline.Pipeline // nil unless Egress.AllowConnect
	discoverer     *client.Discoverer
	upstreams      *lru.Cache[string, *upstream]
	egressToken    pipeline.Secret
	adminHandler   http.Handler
	fastAdmin      fasthttp.RequestHandler

	agentAddr string        // host:port of the agent
	unready   atomic.Bool   // the last readiness probe failed
	timeout   time.Duration // the agent timeout, or its SLA when shorter

	closeOnce sync.Once
	closeErr  error
}

var _ http.Handler = (*Sidecar)(nil)

// New checks cfg, opens the flight recorder and builds the sidecar. Close
// (or the end of Run) releases it.
func New(cfg Config) (*Sidecar, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, log: cfg.Logger, quarantine: newQuarantineStore()}
	m := cfg.Manifest
	if err := s.setIdentity(); err != nil {
		return nil, err
	}
	if s.engine, err = policy.New(cfg.Policy); err != nil {
		return nil, fmt.Errorf("sidecar: %w", err)
	}
	if s.override, err = pipeline.NewSecret(cfg.OverrideToken); err != nil && cfg.OverrideToken != "" {
		s.log.Warn("user override disabled: the override token is refused", "reason", err.Error(),
			"fix", "set IATP_TRUSTED_USER_OVERRIDE_TOKEN to a random secret of at least 16 characters")
	}
	if s.admin, err = pipeline.NewSecret(cfg.AdminToken); err != nil && cfg.AdminToken != "" {
		s.log.Warn("admin endpoints disabled: the admin token is refused", "reason", err.Error(),
			"fix", "set IATP_ADMIN_TOKEN to a random secret of at least 16 characters")
	}
	if len(cfg.TrustedAgents) > 0 || len(cfg.ControlPlaneKeys) > 0 {
		var att *identity.Validator
		if len(cfg.ControlPlaneKeys) > 0 {
			if att, err = identity.NewValidator(cfg.ControlPlaneKeys); err != nil {
				return nil, fmt.Errorf("sidecar: control-plane keys: %w", err)
			}
		}
		s.verifier, err = identity.NewCallerVerifier(identity.CallerVerifierConfig{
			TrustedAgents: cfg.TrustedAgents, Attestations: att, MaxClockSkew: cfg.MaxClockSkew, Clock: cfg.Clock,
		})
		if err != nil {
			return nil, fmt.Errorf("sidecar: trusted agents: %w", err)
		}
	}
	if err := s.setAgent(); err != nil {
		return nil, err
	}
	s.timeout = cfg.AgentTimeout
	if sla := time.Duration(m.Capabilities.SLALatencyMs) * time.Millisecond; sla > 0 && sla < s.timeout {
		s.timeout = sla
	}
	s.metrics = newMetrics(m.AgentID())

	rc := cfg.Recorder
	if !cfg.Key.IsZero() && rc.CheckpointKey == nil {
		rc.CheckpointKey = cfg.Key
		if rc.CheckpointKeyID == "" {
			rc.CheckpointKeyID = s.keyID()
		}
	}
	log, err := recorder.Open(context.Background(), rc)
	if err != nil {
		return nil, fmt.Errorf("sidecar: flight recorder: %w", err)
	}
	s.rec = log
	if err := s.openReputation(context.Background()); err != nil {
		log.Close()
		return nil, err
	}
	s.adminHandler = s.adminMux()
	s.fastAdmin = ownedAdapter(fasthttpadaptor.NewFastHTTPHandler(s.adminHandler))
	s.ingress = s.newIngress()
	s.metrics.setStages(false, s.ingress.Names())
	if cfg.EgressListen != "" {
		if err := s.newEgress(); err != nil {
			s.Close()
			return nil, err
		}
	}
	for _, p := range m.Warnings() {
		s.log.Warn("manifest: "+p.String(), "agent_id", m.AgentID())
	}
	return s, nil
}

func (s *Sidecar) keyID() string {
	if s.cfg.KeyID != "" {
		return s.cfg.KeyID
	}
	return s.cfg.Manifest.AgentID()
}

// setIdentity binds the sidecar's key and attestation to the manifest and
// builds the served documents.
func (s *Sidecar) setIdentity() error {
	m := *s.cfg.Manifest // the caller's manifest is not modified
	if !s.cfg.Key.IsZero() {
		own := identity.FormatPublicKey(s.cfg.Key.PublicKey())
		if k := m.Identity.VerificationKey; k != "" && k != own {
			return fmt.Errorf("sidecar: the manifest's identity.verification_key %s is not the public key of --key (%s)", k, own)
		}
		m.Identity.VerificationKey = own
	}
	if a := s.cfg.Attestation; a != nil {
		if a.AgentID != m.AgentID() {
			return fmt.Errorf("sidecar: the attestation is for agent %q, this sidecar protects %q", a.AgentID, m.AgentID())
		}
		if a.VerificationKey != "" {
			want, err := identity.ParsePublicKey(a.VerificationKey)
			if err != nil {
				return fmt.Errorf("sidecar: the attestation's verification_key: %w", err)
			}
			if s.cfg.Key.IsZero() || !want.Equal(s.cfg.Key.PublicKey()) {
				return fmt.Errorf("sidecar: the attestation binds key %s, which is not this sidecar's key (--key)", a.VerificationKey)
			}
		}
		if v, err := identity.NewValidator(s.cfg.ControlPlaneKeys); err == nil {
			if _, known := v.TrustedKey(a.SigningKeyID); known {
				if _, err := v.ValidateAt(a, s.cfg.Clock(), identity.ValidateOptions{AgentID: m.AgentID(), MaxAge: s.cfg.MaxAttestationAge}); err != nil {
					return fmt.Errorf("sidecar: the attestation does not validate: %w", err)
				}
			}
		}
		doc, err := a.MarshalJSON()
		if err != nil {
			return fmt.Errorf("sidecar: attestation: %w", err)
		}
		s.attestationDoc = doc
		m.Attestation = doc
	}
	m.Signatures = nil
	doc, err := m.Document()
	if err != nil {
		return fmt.Errorf("sidecar: manifest document: %w", err)
	}
	if !s.cfg.Key.IsZero() {
		if doc, err = identity.SignManifest(doc, s.cfg.Key, s.keyID()); err != nil {
			return fmt.Errorf("sidecar: sign the manifest: %w", err)
		}
	}
	s.cfg.Manifest = &m
	s.manifestDoc = doc
	s.manifestETag = client.ETag(doc)
	return nil
}

// setAgent parses the agent URL and builds the pooled client to it.
func (s *Sidecar) setAgent() error {
	u, err := url.Parse(s.cfg.AgentURL)
	if err != nil {
		return fmt.Errorf("sidecar: agent URL: %w", err)
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host = net.JoinHostPort(u.Hostname(), "443")
		} else {
			host = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	s.agentAddr = host
	s.agent = newUpstream(host, u.Scheme == "https", s.cfg.MaxConnsPerAgent)
	return nil
}

// Manifest returns the manifest the sidecar serves (with its key bound).
func (s *Sidecar) Manifest() *manifest.Manifest { return s.cfg.Manifest }

// ManifestDocument returns the served manifest document.
func (s *Sidecar) ManifestDocument() []byte { return s.manifestDoc }

// Handler returns the sidecar as an http.Handler.
func (s *Sidecar) Handler() http.Handler { return s }

// Run listens on Config.Listen (and Config.EgressListen, when set) and
// serves until ctx is done, then shuts down gracefully (see ServeAll).
func (s *Sidecar) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("sidecar: listen: %w", err)
	}
	var eln net.Listener
	if s.egress != nil {
		if eln, err = net.Listen("tcp", s.cfg.EgressListen); err != nil {
			ln.Close()
			return fmt.Errorf("sidecar: egress listen: %w", err)
		}
	}
	return s.ServeAll(ctx, ln, eln)
}

// Serve serves the ingress on ln until ctx is done (see ServeAll).
func (s *Sidecar) Serve(ctx context.Context, ln net.Listener) error {
	return s.ServeAll(ctx, ln, nil)
}

// ServeAll serves the ingress on ln and, when egress is configured and eln
// is not nil, the egress proxy on eln, until ctx is done or a server
// fails. Then it stops accepting, lets in-flight requests finish for at
// most ShutdownTimeout, flushes and closes the flight recorder, and
// returns nil (or the failure).
func (s *Sidecar) ServeAll(ctx context.Context, ln, eln net.Listener) error {
	servers := []*fasthttp.Server{s.fastServer(s.serveFast, false)}
	listeners := []net.Listener{ln}
	if eln != nil && s.egress != nil {
		servers = append(servers, s.fastServer(s.serveEgress, true))
		listeners = append(listeners, eln)
	}
	attrs := []any{"agent_id", s.cfg.Manifest.AgentID(), "agent_url", s.cfg.AgentURL, "listen", ln.Addr().String(),
		"trust_score", s.cfg.Manifest.TrustScore(), "user_override", enabled(s.override.IsSet()),
		"admin_endpoints", enabled(s.admin.IsSet()), "recorder", s.cfg.Recorder.Dir,
		"caller_auth", s.callerAuthMode(), "public_url", s.cfg.PublicURL}
	if len(listeners) > 1 {
		attrs = append(attrs, "egress_listen", eln.Addr().String())
		if a, ok := eln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() && !s.egressToken.IsSet() {
			s.log.Warn("the egress proxy listens beyond loopback without a token: whoever reaches it can have calls signed as this agent",
				"egress_listen", eln.Addr().String(), "fix", "listen on 127.0.0.1 (or the pod's own network), or set egress.proxy_token / IATP_EGRESS_TOKEN")
		}
	}
	s.log.Info("iatp sidecar serving", attrs...)
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(listeners[i]) }()
	}
	var failed error
	received := 0
	select {
	case failed = <-errc:
		received++
		if failed != nil {
			failed = fmt.Errorf("sidecar: serve: %w", failed)
		}
	case <-ctx.Done():
	}
	s.log.Info("iatp sidecar shutting down", "agent_id", s.cfg.Manifest.AgentID(), "grace", s.cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var late bool
	for _, srv := range servers {
		if err := srv.ShutdownWithContext(sctx); err != nil && errors.Is(err, context.DeadlineExceeded) {
			late = true
		}
	}
	for ; received < len(servers); received++ {
		<-errc
	}
	cerr := s.Close()
	if late {
		s.log.Warn("shutdown grace period over; connections still open were closed", "grace", s.cfg.ShutdownTimeout.String())
	}
	if failed != nil {
		return failed
	}
	return cerr
}

// Close flushes and closes the flight recorder and the agent connections.
// It is idempotent.
func (s *Sidecar) Close() error {
	s.closeOnce.Do(func() {
		s.agent.hc.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var errs []error
		if err := s.node.Close(ctx); err != nil { // flushes and stops its transports
			errs = append(errs, fmt.Errorf("sidecar: close reputation: %w", err))
		}
		if err := s.rec.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sidecar: close flight recorder: %w", err))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Sidecar) callerAuthMode() string {
	switch {
	case s.cfg.RequireAuthenticatedCallers:
		return "required"
	case s.verifier != nil:
		return "verified when signed"
	}
	return "none configured (callers are unknown)"
}

func enabled(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}

// GenerateToken returns a random token that passes the strength rules, for
// demos and first set-up.
func GenerateToken() string { return pipeline.GenerateToken() }
