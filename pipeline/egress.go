package pipeline

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// EgressRoute is the egress route: the local agent asks for an absolute
// http:// URL (as an HTTP proxy client does), which becomes x.Upstream
// and x.Origin; the caller is the sidecar's own agent.
type EgressRoute struct {
	// Self is this sidecar's agent, the caller of every egress request.
	Self policy.Caller
	// Token, if set, must be presented as Proxy-Authorization: Bearer: only
	// the local agent may have its requests signed.
	Token Token
	// AllowHTTPS accepts https:// targets: in process (the Go client) the
	// body is seen before TLS; an HTTP proxy sees https only as CONNECT.
	AllowHTTPS bool
}

// Name returns "egress_route".
func (EgressRoute) Name() string { return "egress_route" }

// Run checks the target URL.
func (e EgressRoute) Run(_ context.Context, x *Exchange) *Refusal {
	if r := e.authorize(x); r != nil {
		return r
	}
	u, err := url.Parse(x.TargetURI)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return Refuse(http.StatusBadRequest, Path, "the egress proxy needs an absolute URL (http://agent.example:8001/proxy): point HTTP_PROXY at it, or use the Go client")
	}
	if u.Scheme != "http" && (u.Scheme != "https" || !e.AllowHTTPS) {
		return Refuse(http.StatusBadRequest, Path, "the egress proxy inspects plain http:// calls; "+clip(u.Scheme)+":// targets go through CONNECT, which this sidecar refuses unless egress.allow_connect is set")
	}
	if u.User != nil {
		return Refuse(http.StatusBadRequest, Path, "the target URL must not carry user information")
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if reason := wire.CheckSubpath(path); reason != "" {
		return Refuse(http.StatusBadRequest, Path, strings.Replace(reason, "the path after /proxy", "the target path", 1))
	}
	x.Path, x.RawQuery = path, u.RawQuery
	x.Origin = u.Scheme + "://" + hostPort(u)
	// The request goes to, and its signature covers, the URL as the agent
	// wrote it (no default port added): the callee rebuilds it from its
	// Host header or its public URL.
	x.Upstream = u.Scheme + "://" + strings.ToLower(u.Host) + path
	if u.RawQuery != "" {
		x.Upstream += "?" + u.RawQuery
	}
	x.TargetID = x.Origin
	return nil
}

// authorize makes this agent the caller, once the proxy token (if any)
// was presented.
func (e EgressRoute) authorize(x *Exchange) *Refusal {
	x.Caller = e.Self
	if e.Token != nil && e.Token.IsSet() {
		v, ok := strings.CutPrefix(x.Header.Get("Proxy-Authorization"), "Bearer ")
		if !ok || !e.Token.Matches(v) {
			r := Refuse(http.StatusProxyAuthRequired, Unauthenticated, "this egress proxy signs requests as its agent: send Proxy-Authorization: Bearer <egress token>")
			r.Kind, r.Decision = recorder.KindBlocked, "block"
			return r
		}
	}
	return nil
}

// hostPort returns u's host with its port, 80 or 443 by default.
func hostPort(u *url.URL) string {
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "https":
		port = "443"
	default:
		port = "80"
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// Sign signs the upstream request as this sidecar's agent (PROTOCOL §9):
// RFC 9421 over @method, @target-uri, content-digest and x-agent-trace-id,
// with the agent's v2 attestation in X-IATP-Attestation. The lines go to
// x.Added for the sender.
type Sign struct {
	Signer *identity.RequestSigner
	Clock  func() time.Time
}

// Name returns "sign".
func (Sign) Name() string { return "sign" }

// Run signs x.
func (s Sign) Run(_ context.Context, x *Exchange) *Refusal {
	if s.Signer == nil {
		return nil
	}
	m := identity.Message{Method: x.Method, TargetURI: x.Upstream, Body: x.Body,
		Header: func(name string) []string {
			if strings.EqualFold(name, wire.TraceID) {
				return []string{x.TraceID}
			}
			return x.Header.exact(name)
		}}
	h, err := s.Signer.Sign(m)
	if err != nil {
		r := Refuse(http.StatusInternalServerError, Internal, "cannot sign the request as this agent")
		r.Cause = err
		return r
	}
	h.Set(func(name, value string) { x.Added = append(x.Added, Field{name, value}) })
	return nil
}

// ConnectRoute is the route of a CONNECT to an https:// target that the
// operator lets through (egress.allow_connect): the handshake runs on the
// target's origin, but the body travels inside TLS and cannot be inspected.
type ConnectRoute struct {
	Self policy.Caller
	// Token: see EgressRoute.
	Token Token
}

// Name returns "connect_route".
func (ConnectRoute) Name() string { return "connect_route" }

// Run checks the CONNECT authority.
func (c ConnectRoute) Run(ctx context.Context, x *Exchange) *Refusal {
	if r := (EgressRoute{Self: c.Self, Token: c.Token}).authorize(x); r != nil {
		return r
	}
	host, port, err := net.SplitHostPort(x.TargetURI)
	if err != nil || host == "" || port == "" {
		return Refuse(http.StatusBadRequest, Path, "CONNECT needs host:port")
	}
	x.Origin = "https://" + net.JoinHostPort(strings.ToLower(host), port)
	x.Upstream = net.JoinHostPort(host, port)
	x.Path, x.TargetID = "", x.Origin
	return nil
}

// Tunnel is the terminal check of a CONNECT: it opens the connection to the
// target; the front answers 200 and splices it with the caller's.
type Tunnel struct {
	// Dial opens the connection; nil means net.Dialer with DialTimeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialTimeout bounds the dial.
	DialTimeout time.Duration
}

// Name returns "tunnel".
func (Tunnel) Name() string { return "tunnel" }

// Run dials x.Upstream.
func (t Tunnel) Run(ctx context.Context, x *Exchange) *Refusal {
	dial := t.Dial
	if dial == nil {
		dial = (&net.Dialer{Timeout: t.DialTimeout}).DialContext
	}
	conn, err := dial(ctx, "tcp", x.Upstream)
	if err != nil {
		return UpstreamRefusal(x, Failure{Described: "cannot connect to the target: " + ScrubbedText(err.Error()), Timeout: t.DialTimeout})
	}
	x.Answer = &Answer{Status: http.StatusOK, Tunnel: conn, Length: -1,
		Header: Fields{{wire.TraceID, x.TraceID}, {"Proxy-Status", `iatp; details="tunnel after the handshake; the body is not inspected"`}}}
	return nil
}

// ConnectChecks returns the checks of a CONNECT the operator allows: the
// handshake on what can be seen (the target and the request's headers),
// then a tunnel. The record says the body was not inspected.
func ConnectChecks(c EgressConfig, tunnel Tunnel) []Check {
	return []Check{
		Headers{NewTraceID: c.NewTraceID},
		ConnectRoute{Self: c.Route.Self, Token: c.Route.Token},
		Detect{},
		c.Discover,
		Decide{Engine: c.Engine, Direction: policy.Egress},
		c.Override,
		RecordTunnel{},
		tunnel,
	}
}

// RecordTunnel records a CONNECT that goes ahead, saying that only the
// handshake was done.
type RecordTunnel struct{}

// Name returns "record".
func (RecordTunnel) Name() string { return "record" }

// Run records x.
func (RecordTunnel) Run(ctx context.Context, x *Exchange) *Refusal {
	reasons := append([]string{"CONNECT tunnel: only the handshake was done; the body travels inside TLS and is not inspected"}, x.Decision.Warnings...)
	if err := x.Record(ctx, recorder.Record{Kind: recorder.KindRequest, Decision: x.Decision.Outcome.String(), Reasons: reasons,
		Details: requestDetails(x, "")}); err != nil {
		r := Refuse(http.StatusInternalServerError, RecordFailed, "the flight recorder cannot record this request, so it was not forwarded")
		r.Cause, r.Unrecorded = err, true
		return r
	}
	return nil
}
