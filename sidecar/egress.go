package sidecar

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/valyala/fasthttp"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// Defaults of EgressConfig.
const (
	DefaultEgressListen = "127.0.0.1:8002"
	// maxUpstreams bounds the targets the egress proxy keeps connections to.
	maxUpstreams = 256
)

// EgressConfig configures the egress proxy: the handshake a sidecar runs
// before its agent's calls leave (PROTOCOL §0, §2, §3, §9).
type EgressConfig struct {
	// Policy is the egress policy; its built-in rules evaluate the target.
	// Its zero value applies the built-in rules and warnings.
	Policy policy.Config
	// Targets add requirements (scopes, capabilities) per target or path.
	Targets []client.TargetRule
	// RequireSignedManifests makes targets without a manifest signature by
	// a pinned or attested key count as unknown.
	RequireSignedManifests bool
	// AllowConnect lets CONNECT (https://) targets through after the
	// handshake; the body cannot be inspected then. Off by default.
	AllowConnect bool
	// ProxyToken, if set, must be sent by the agent as Proxy-Authorization:
	// Bearer: the proxy signs as this agent, so only it may use the proxy.
	ProxyToken string
	// DiscoveryTTL, NegativeTTL, FetchTimeout and MaxTargets tune discovery
	// (see client.DiscoveryConfig); zero values mean its defaults.
	DiscoveryTTL time.Duration
	NegativeTTL  time.Duration
	FetchTimeout time.Duration
	MaxTargets   int
	// Timeout bounds a call up to the target's answer; 0 means AgentTimeout.
	Timeout time.Duration
	// DiscoveryClient, if set, fetches targets' manifests (for https://
	// targets behind a private CA, say); nil means client's default.
	DiscoveryClient *http.Client
}

// newEgress builds the egress pipeline and its discoverer.
func (s *Sidecar) newEgress() error {
	cfg, e := s.cfg, s.cfg.Egress
	if err := client.CheckRules(e.Targets); err != nil {
		return fmt.Errorf("sidecar: egress: %w", err)
	}
	engine, err := policy.New(e.Policy)
	if err != nil {
		return fmt.Errorf("sidecar: egress policy: %w", err)
	}
	s.discoverer, err = client.NewDiscoverer(client.DiscoveryConfig{
		PinnedKeys: cfg.TrustedAgents, ControlPlaneKeys: cfg.ControlPlaneKeys, RequireSigned: e.RequireSignedManifests,
		TTL: e.DiscoveryTTL, NegativeTTL: e.NegativeTTL, FetchTimeout: e.FetchTimeout, MaxTargets: e.MaxTargets,
		MaxAttestationAge: cfg.MaxAttestationAge, HTTPClient: e.DiscoveryClient, Clock: cfg.Clock,
	})
	if err != nil {
		return fmt.Errorf("sidecar: egress: %w", err)
	}
	if s.upstreams, err = lru.NewWithEvict[string, *upstream](maxUpstreams, func(_ string, u *upstream) {
		u.hc.CloseIdleConnections()
	}); err != nil {
		return fmt.Errorf("sidecar: egress: %w", err)
	}
	if s.egressToken, err = pipeline.NewSecret(e.ProxyToken); err != nil && e.ProxyToken != "" {
		return fmt.Errorf("sidecar: egress.proxy_token: %w", err)
	}
	self := policy.Caller{AgentID: cfg.Manifest.AgentID(), Authenticated: !cfg.Key.IsZero(),
		Attested: s.attestationDoc != nil, TrustLevel: cfg.Manifest.TrustLevel}
	var signer *identity.RequestSigner
	if !cfg.Key.IsZero() {
		signer = &identity.RequestSigner{AgentID: cfg.Manifest.AgentID(), Key: cfg.Key, Attestation: s.attestationDoc, Clock: cfg.Clock}
	}
	ec := pipeline.EgressConfig{
		Route:        pipeline.EgressRoute{Self: self, Token: s.egressToken},
		MaxBodyBytes: cfg.MaxBodyBytes,
		Parse: pipeline.Parse{MaxDepth: cfg.MaxJSONDepth, Value: engine.NeedsBody(), MaxRecordPayload: cfg.MaxRecordPayload,
			AllowText: true},
		Discover: client.DiscoverCheck{Discoverer: s.discoverer, Reputation: s.reputationOf, Rules: e.Targets},
		Engine:   engine,
		Override: pipeline.Override{Token: s.override, Clock: cfg.Clock},
		Sign:     pipeline.Sign{Signer: signer, Clock: cfg.Clock},
		Forward: pipeline.Forward{Sender: egressSender{s}, MaxRecord: cfg.MaxResponseRecord, MaxJSONDepth: cfg.MaxJSONDepth,
			Outcome: s.egressOutcome, Clock: cfg.Clock},
		NewTraceID: pipeline.NewTraceID,
	}
	pc := pipeline.Config{
		Recorder: s.rec, AgentID: cfg.Manifest.AgentID(), Observer: s, Clock: cfg.Clock, Tracer: s.tracer(),
		OnRecordError: func(r *recorder.Record, err error) {
			s.metrics.recorded.Inc()
			s.log.Error("flight recorder: cannot record", "kind", r.Kind, "trace_id", r.TraceID, "err", err)
		},
	}
	s.egress = pipeline.New(pc, pipeline.EgressChecks(ec)...)
	s.metrics.setStages(true, s.egress.Names())
	if e.AllowConnect {
		s.connect = pipeline.New(pc, pipeline.ConnectChecks(ec, pipeline.Tunnel{DialTimeout: 10 * time.Second})...)
	}
	return nil
}

// Discoverer returns the egress proxy's discoverer (nil without egress).
func (s *Sidecar) Discoverer() *client.Discoverer { return s.discoverer }

// egressSender sends allowed calls to their targets.
type egressSender struct{ s *Sidecar }

// Send sends x to its target, signed (x.Added).
func (e egressSender) Send(ctx context.Context, x *pipeline.Exchange) (*pipeline.Answer, *pipeline.Refusal) {
	s := e.s
	u, err := url.Parse(x.Origin)
	if err != nil {
		return nil, pipeline.UpstreamRefusal(x, pipeline.Failure{Described: "bad target origin", Timeout: s.egressTimeout()})
	}
	up, ok := s.upstreams.Get(u.Host)
	if !ok {
		fresh := newUpstream(u.Host, false, s.cfg.MaxConnsPerAgent)
		if prev, had, _ := s.upstreams.PeekOrAdd(u.Host, fresh); had {
			up = prev
		} else {
			up = fresh
		}
	}
	req := upstreamRequest(x)
	defer fasthttp.ReleaseRequest(req)
	timeout := answerTimeout(x, s.egressTimeout(), s.cfg.StreamTimeout)
	ans, err := exchangeWith(ctx, up, req, timeout)
	if err != nil {
		return nil, s.agentFailed(x, err, timeout, "")
	}
	return ans, nil
}

func (s *Sidecar) egressTimeout() time.Duration {
	if s.cfg.Egress.Timeout > 0 {
		return s.cfg.Egress.Timeout
	}
	return s.cfg.AgentTimeout
}

// egressOutcome counts the result of a call to another agent.
func (s *Sidecar) egressOutcome(x *pipeline.Exchange, status int, r *pipeline.Refusal) {
	switch {
	case r == nil:
		s.metrics.egress.WithLabelValues(string(rune('0'+status/100)) + "xx").Inc()
	default:
		s.metrics.egress.WithLabelValues(string(r.Reason)).Inc()
	}
	s.observe(x, x.TargetID, status, r) // the caller reports what it saw of the target
}

// serveEgress is the egress proxy on fasthttp: an HTTP forward proxy for
// plain http:// targets.
func (s *Sidecar) serveEgress(ctx *fasthttp.RequestCtx) {
	defer s.recoverFast(ctx)
	x := pipeline.Acquire()
	s.decodeEgressFast(ctx, x)
	var a *pipeline.Answer
	switch {
	case x.Method != http.MethodConnect:
		rctx, stop := watchCaller(ctx)
		a = s.egress.Serve(rctx, x)
		stop()
	case s.connect == nil:
		a = s.egress.Refuse(context.Background(), x, s.connectRefusal())
	default:
		a = s.connect.Serve(context.Background(), x)
		if t := a.Tunnel; t != nil {
			a.Tunnel = nil
			ctx.Hijack(func(c net.Conn) { s.splice(c, t) })
		}
	}
	writeFast(ctx, a)
	pipeline.Finish(x)
}

// decodeEgressFast fills x from a request to the egress proxy.
func (s *Sidecar) decodeEgressFast(ctx *fasthttp.RequestCtx, x *pipeline.Exchange) {
	req := &ctx.Request
	x.Kind = pipeline.Egress
	x.Method = method(req.Header.Method())
	x.TargetURI = string(req.Header.RequestURI())
	x.Header = copyFields(req.Header.All())
	x.Body = req.Body()
	x.ContentType = string(req.Header.ContentType())
	x.Peer = ctx.RemoteIP().String()
}

// splice relays bytes both ways between a caller and a tunnel's target
// until either side closes, for at most StreamTimeout.
func (s *Sidecar) splice(caller net.Conn, target io.ReadWriteCloser) {
	deadline := time.Now().Add(s.cfg.StreamTimeout)
	_ = caller.SetDeadline(deadline)
	if c, ok := target.(net.Conn); ok {
		_ = c.SetDeadline(deadline)
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(target, caller); done <- struct{}{} }()
	go func() { _, _ = io.Copy(caller, target); done <- struct{}{} }()
	<-done
	caller.Close()
	target.Close()
	<-done
}

// EgressHandler returns the egress proxy as an http.Handler, for those who
// mount it in a server of their own: the same pipeline as ServeAll's.
func (s *Sidecar) EgressHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer s.recoverHTTP(w, r)
		if s.egress == nil {
			writeError(w, requestTraceID(r), errorf(http.StatusNotFound, "egress is not configured on this sidecar"))
			return
		}
		x := pipeline.Acquire()
		x.Kind = pipeline.Egress
		x.Method = r.Method
		x.TargetURI = r.RequestURI
		x.Header = httpFields(r.Header, 0)
		x.ContentType = r.Header.Get("Content-Type")
		readHTTPBody(r, s.cfg.MaxBodyBytes, x)
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			x.Peer = host
		}
		var a *pipeline.Answer
		switch {
		case r.Method != http.MethodConnect:
			a = s.egress.Serve(r.Context(), x)
		case s.connect == nil:
			a = s.egress.Refuse(r.Context(), x, s.connectRefusal())
		default:
			x.TargetURI = r.Host // CONNECT host:port
			a = s.connect.Serve(r.Context(), x)
			if t := a.Tunnel; t != nil {
				a.Tunnel = nil
				hj, ok := w.(http.Hijacker)
				if !ok {
					t.Close()
					writeAnswer(w, errorf(http.StatusInternalServerError, "this server cannot hijack connections for CONNECT").Answer(x.TraceID))
					pipeline.Finish(x)
					return
				}
				conn, buf, err := hj.Hijack()
				if err != nil {
					t.Close()
					pipeline.Finish(x)
					return
				}
				_, _ = buf.WriteString("HTTP/1.1 200 Connection established\r\n")
				for _, f := range a.Header {
					_, _ = buf.WriteString(f.Name + ": " + f.Value + "\r\n")
				}
				_, _ = buf.WriteString("\r\n")
				_ = buf.Flush()
				pipeline.Finish(x)
				s.splice(conn, t)
				return
			}
		}
		writeAnswer(w, a)
		pipeline.Finish(x)
	})
}

// connectRefusal refuses a CONNECT (unless egress.allow_connect): an
// https:// target's body cannot be inspected by a proxy.
func (s *Sidecar) connectRefusal() *pipeline.Refusal {
	r := pipeline.Refuse(http.StatusForbidden, pipeline.Blocked,
		"CONNECT (https://) targets are refused: the sidecar cannot inspect what goes through a TLS tunnel; call http:// targets through the egress proxy (their sidecars speak plain HTTP on a trusted network, or mTLS between sidecars), or use the Go client in process")
	r.Kind, r.Decision, r.Fields = recorder.KindBlocked, "block", map[string]any{"blocked": true, "blocked_by": "connect"}
	return r
}
