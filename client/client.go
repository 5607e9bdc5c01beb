package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// TargetRule adds requirements for the calls to some targets (PROTOCOL §3
// missing_scope, missing_capability).
type TargetRule struct {
	// Match selects targets: an agent id, an origin ("http://host:port"),
	// a "host:port", or "*" for every target.
	Match string `yaml:"match" json:"match"`
	// PathPrefix, if set, limits the rule to calls whose path starts with it.
	PathPrefix string `yaml:"path_prefix" json:"path_prefix,omitempty"`
	// Requirements are the scopes and capabilities the target must have.
	policy.Requirements `yaml:",inline"`
}

// matches reports whether the rule applies to a call to agentID at origin
// with path.
func (r TargetRule) matches(origin, agentID, path string) bool {
	if r.PathPrefix != "" && !strings.HasPrefix(path, r.PathPrefix) {
		return false
	}
	hostPort := strings.TrimPrefix(strings.TrimPrefix(origin, "http://"), "https://")
	return r.Match == "*" || r.Match == agentID || r.Match == origin || r.Match == hostPort
}

// Requirements returns the union of the requirements of rules that apply.
func Requirements(rules []TargetRule, origin, agentID, path string) policy.Requirements {
	var req policy.Requirements
	for _, r := range rules {
		if r.matches(origin, agentID, path) {
			req.Scopes = append(req.Scopes, r.Scopes...)
			req.Capabilities = append(req.Capabilities, r.Capabilities...)
		}
	}
	return req
}

// CheckRules validates target rules.
func CheckRules(rules []TargetRule) error {
	for i, r := range rules {
		if strings.TrimSpace(r.Match) == "" {
			return fmt.Errorf("targets[%d]: match is required (an agent id, an origin, host:port or *)", i)
		}
		if err := r.Requirements.Check(); err != nil {
			return fmt.Errorf("targets[%d]: %w", i, err)
		}
	}
	return nil
}

// DiscoverCheck is the pipeline check that discovers an egress exchange's
// target: it sets x.Target (the claim capped by proof, with the target's
// reputation), x.TargetID, x.Proven and x.Require.
type DiscoverCheck struct {
	Discoverer *Discoverer
	// Reputation returns what the mesh holds about an agent; nil: nothing.
	Reputation func(agentID string) policy.Reputation
	// Rules add requirements per target or path.
	Rules []TargetRule
}

// Name returns "discover".
func (DiscoverCheck) Name() string { return "discover" }

// Run discovers x's target.
func (c DiscoverCheck) Run(ctx context.Context, x *pipeline.Exchange) *pipeline.Refusal {
	t, err := c.Discoverer.Discover(ctx, x.Origin)
	if err != nil {
		return pipeline.Refuse(http.StatusBadRequest, pipeline.Path, err.Error())
	}
	var rep policy.Reputation
	if c.Reputation != nil {
		rep = c.Reputation(t.Manifest.AgentID())
	}
	x.Target = t.PolicyTarget(rep)
	x.TargetID = t.Manifest.AgentID()
	x.Proven = t.Proven
	x.Require = Requirements(c.Rules, t.Origin, x.TargetID, x.Path)
	return nil
}

// Config configures a Client: who this agent is, what it trusts, and its
// egress policy.
type Config struct {
	// AgentID is this agent, the keyid of its request signatures.
	AgentID string
	// Key is this agent's private key. The zero value sends unsigned
	// requests, which callees with require_authenticated_callers refuse.
	Key identity.PrivateKey
	// Attestation is this agent's v2 attestation (its JSON), sent with
	// every request so callees need no configuration for it.
	Attestation []byte
	// Discovery configures discovery and what proofs are trusted.
	Discovery DiscoveryConfig
	// Policy is the egress policy: built-in rules evaluate the target.
	Policy policy.Config
	// Targets add requirements per target or path.
	Targets []TargetRule
	// OverrideToken is the human-held secret that lets a warned call go
	// ahead (X-User-Override), as at a sidecar. Empty disables overrides.
	OverrideToken string
	// Reputation returns what the mesh holds about an agent; nil: nothing.
	Reputation func(agentID string) policy.Reputation
	// Outcome, if not nil, learns the result of each call made (for
	// reputation reports about the targets).
	Outcome func(targetID string, status int, failed bool)
	// Recorder records every decision; nil discards the records.
	Recorder pipeline.Recorder
	// Base sends the requests; nil means a clone of http.DefaultTransport
	// that ignores proxy settings (this is the proxy).
	Base http.RoundTripper
	// Timeout bounds a call up to the answer's header. 0 means 30 s.
	Timeout time.Duration
	// MaxBodyBytes bounds request bodies (413 beyond). 0 means 10 MiB.
	MaxBodyBytes int64
	// Clock is the time source; nil means time.Now.
	Clock func() time.Time
}

// Client runs the handshake in process. Create it with New; it is safe for
// concurrent use.
type Client struct {
	cfg      Config
	disc     *Discoverer
	engine   *policy.Engine
	egress   *pipeline.Pipeline
	evaluate *pipeline.Pipeline
	self     policy.Caller
}

// New checks cfg and returns a Client.
func New(cfg Config) (*Client, error) {
	if cfg.AgentID == "" {
		return nil, errors.New("client: AgentID is required")
	}
	if !manifest.ValidAgentID(cfg.AgentID) {
		return nil, fmt.Errorf("client: AgentID %q is not a valid agent id", cfg.AgentID)
	}
	if err := CheckRules(cfg.Targets); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 10 << 20
	}
	if cfg.Discovery.Clock == nil {
		cfg.Discovery.Clock = cfg.Clock
	}
	if cfg.Base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		cfg.Base = t
	}
	c := &Client{cfg: cfg}
	var err error
	if c.disc, err = NewDiscoverer(cfg.Discovery); err != nil {
		return nil, err
	}
	if c.engine, err = policy.New(cfg.Policy); err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c.self = policy.Caller{AgentID: cfg.AgentID, Authenticated: !cfg.Key.IsZero(), Attested: len(cfg.Attestation) > 0,
		TrustLevel: manifest.Standard}
	rec := cfg.Recorder
	if rec == nil {
		rec = discard{}
	}
	token, _ := pipeline.NewSecret(cfg.OverrideToken) // weak or empty: overrides stay off
	var signer *identity.RequestSigner
	if !cfg.Key.IsZero() {
		signer = &identity.RequestSigner{AgentID: cfg.AgentID, Key: cfg.Key, Attestation: cfg.Attestation, Clock: cfg.Clock}
	}
	disc := DiscoverCheck{Discoverer: c.disc, Reputation: cfg.Reputation, Rules: cfg.Targets}
	checks := pipeline.EgressChecks(pipeline.EgressConfig{
		Route:        pipeline.EgressRoute{Self: c.self, AllowHTTPS: true},
		MaxBodyBytes: cfg.MaxBodyBytes,
		Parse:        pipeline.Parse{MaxDepth: 256, Value: c.engine.NeedsBody(), MaxRecordPayload: 64 << 10, AllowText: true},
		Discover:     disc,
		Engine:       c.engine,
		Override:     pipeline.Override{Token: token, Clock: cfg.Clock},
		Sign:         pipeline.Sign{Signer: signer, Clock: cfg.Clock},
		Forward: pipeline.Forward{Sender: httpSender{c}, MaxRecord: 64 << 10, MaxJSONDepth: 256, Clock: cfg.Clock,
			Outcome: c.outcome},
		NewTraceID: pipeline.NewTraceID,
	})
	pcfg := pipeline.Config{Recorder: rec, AgentID: cfg.AgentID, Clock: cfg.Clock}
	c.egress = pipeline.New(pcfg, checks...)
	// Evaluate runs the handshake up to the decision, and records nothing.
	c.evaluate = pipeline.New(pipeline.Config{Recorder: discard{}, AgentID: cfg.AgentID, Clock: cfg.Clock},
		pipeline.Headers{NewTraceID: pipeline.NewTraceID}, pipeline.EgressRoute{Self: c.self, AllowHTTPS: true},
		pipeline.Parse{MaxDepth: 256, Value: c.engine.NeedsBody(), MaxRecordPayload: 64 << 10, AllowText: true},
		pipeline.Detect{}, disc, pipeline.Decide{Engine: c.engine, Direction: policy.Egress})
	return c, nil
}

func (c *Client) outcome(x *pipeline.Exchange, status int, r *pipeline.Refusal) {
	if c.cfg.Outcome == nil || r != nil && r.Reason == pipeline.Canceled {
		return
	}
	c.cfg.Outcome(x.TargetID, status, r != nil || status >= 500)
}

// Discover returns what is known of the target at url (see
// Discoverer.Discover).
func (c *Client) Discover(ctx context.Context, url string) (*Target, error) {
	return c.disc.Discover(ctx, url)
}

// Discoverer returns the client's discoverer.
func (c *Client) Discoverer() *Discoverer { return c.disc }

// Request is a call to evaluate.
type Request struct {
	Method string
	// URL is the absolute URL of the call.
	URL    string
	Header http.Header
	Body   []byte
}

// Decision is the handshake's verdict on a call, with its reasons.
type Decision struct {
	// Outcome is allow, warn or block.
	Outcome policy.Outcome `json:"-"`
	// Decision is Outcome in words.
	Decision string `json:"decision"`
	// Rule names the rule that blocked, or the operator rule that decided.
	Rule string `json:"rule,omitempty"`
	// Reason is the block message, or the operator rule's reason.
	Reason string `json:"reason,omitempty"`
	// Warnings are the warning bullets.
	Warnings []string `json:"warnings,omitempty"`
	// TrustScore is the target's effective score (0–10).
	TrustScore int `json:"trust_score"`
	// Status is the HTTP status the call would be answered with when it is
	// not allowed (400, 403, 449).
	Status int `json:"status,omitempty"`
	// Sensitive lists the kinds of sensitive data found in the call.
	Sensitive []string `json:"sensitive,omitempty"`
	// Target is the target's agent id; Proven what it proved.
	Target string `json:"target"`
	Proven string `json:"proven"`
}

// Evaluate runs the handshake on req up to the decision — discover,
// validate — without sending it or recording it.
func (c *Client) Evaluate(ctx context.Context, req Request) (Decision, error) {
	x := pipeline.Acquire()
	defer pipeline.Finish(x)
	x.Kind, x.Method, x.TargetURI, x.Body = pipeline.Egress, req.Method, req.URL, req.Body
	if x.Method == "" {
		x.Method = http.MethodPost
	}
	x.Header = fieldsOf(req.Header)
	x.ContentType = req.Header.Get("Content-Type")
	a := c.evaluate.Serve(ctx, x)
	d := Decision{Outcome: x.Decision.Outcome, Rule: x.Decision.Rule, Reason: x.Decision.Reason, Warnings: x.Decision.Warnings,
		TrustScore: x.Decision.TrustScore, Target: x.TargetID, Proven: x.Proven}
	if x.Found != 0 {
		d.Sensitive = x.Found.Names()
	}
	switch x.Outcome {
	case pipeline.Forwarded:
	case pipeline.Blocked:
		d.Status = a.Status
	default:
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(a.Body, &e)
		d.Status = a.Status
		d.Outcome, d.Reason = policy.Block, e.Error
	}
	if d.Outcome == policy.Warn {
		d.Status = 449
	}
	d.Decision = d.Outcome.String()
	return d, nil
}

// fieldsOf lists a net/http header's lines.
func fieldsOf(h http.Header) pipeline.Fields {
	out := make(pipeline.Fields, 0, len(h))
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, pipeline.Field{Name: k, Value: v})
		}
	}
	return out
}

// discard is the recorder of a client without one.
type discard struct{}

func (discard) Append(context.Context, *recorder.Record) (uint64, error) { return 0, nil }
