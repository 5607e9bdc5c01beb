package pipeline

import (
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
)

// IngressConfig is what the ingress checks need.
type IngressConfig struct {
	// AgentURL is the protected agent (see NewRoute).
	AgentURL string
	// Manifest is the protected agent's manifest, scored as written.
	Manifest *manifest.Manifest
	// MaxBodyBytes is the body limit (413 beyond).
	MaxBodyBytes int64
	// Identify authenticates callers.
	Identify Identify
	// RateLimit limits callers; a nil Limiter turns it off.
	RateLimit RateLimit
	// Parse parses the body.
	Parse Parse
	// Engine is the policy engine.
	Engine *policy.Engine
	// Override applies warnings and overrides.
	Override Override
	// Forward sends to the agent and records its answer.
	Forward Forward
	// NewTraceID makes trace ids.
	NewTraceID func() string
}

// IngressChecks returns the ingress checks in their order, which the protocol
// makes observable (PROTOCOL §3, §5, §7). Why each sits where it does:
//
//	headers    first: a repeated owned header or a bad trace id is refused
//	           before the trace id is used anywhere (400)
//	route      POST /proxy only, and a path safe to append to the agent
//	           URL (405, 400)
//	body       a body the front could not read (413, 400)
//	identify   who is calling, before anything is spent on them (401)
//	rate_limit per caller, so it follows identify (429)
//	parse      the one parse of the body: validate, detect, scrub (400)
//	detect     the rest of the request: path, query, headers, trailers
//	policy     block rules and operator rules see every finding (403)
//	override   warnings (449) unless overridden, then quarantine
//	record     the request is on disk before it is forwarded (500)
//	forward    the agent's answer, recorded before it is relayed (502, 504)
func IngressChecks(c IngressConfig) []Check {
	return []Check{
		Headers{NewTraceID: c.NewTraceID},
		NewRoute(c.AgentURL),
		ReadBody{MaxBytes: c.MaxBodyBytes},
		c.Identify,
		c.RateLimit,
		c.Parse,
		Detect{},
		Decide{Engine: c.Engine, Direction: policy.Ingress, Manifest: c.Manifest},
		c.Override,
		RecordRequest{},
		c.Forward,
	}
}

// EgressConfig is what the egress checks need.
type EgressConfig struct {
	// Route names this sidecar's agent, the caller of every request.
	Route EgressRoute
	// MaxBodyBytes is the body limit (413 beyond).
	MaxBodyBytes int64
	// Parse parses the body (with AllowText: agents call others with any
	// body).
	Parse Parse
	// Discover finds, verifies and scores the target (client.Discoverer's
	// check): it sets x.Target, x.TargetID, x.Proven and x.Require.
	Discover Check
	// Engine is the egress policy engine.
	Engine *policy.Engine
	// Override applies warnings and overrides.
	Override Override
	// Sign signs the request as this agent.
	Sign Sign
	// Forward sends to the target and records its answer.
	Forward Forward
	// NewTraceID makes trace ids.
	NewTraceID func() string
}

// EgressChecks returns the egress checks in their order: the handshake of
// PROTOCOL §0 — discover, validate, then execute or warn — before a byte
// leaves this agent. Why each sits where it does:
//
//	headers       the same header rules as ingress (400)
//	egress_route  an absolute http:// target, this agent as the caller (400)
//	body          a body the front could not read (413, 400)
//	parse         the one parse of the body; any body goes, all is scanned
//	detect        path, query, headers
//	discover      the target's manifest and proofs, capped, with its reputation
//	policy        the same rules as ingress, evaluating the target (403)
//	override      warnings (449) unless overridden
//	sign          RFC 9421 as this agent, with its attestation (500)
//	record        the request is on disk before it leaves (500)
//	forward       the target's answer, recorded before it is relayed (502, 504)
func EgressChecks(c EgressConfig) []Check {
	return []Check{
		Headers{NewTraceID: c.NewTraceID},
		c.Route,
		ReadBody{MaxBytes: c.MaxBodyBytes},
		c.Parse,
		Detect{},
		c.Discover,
		Decide{Engine: c.Engine, Direction: policy.Egress},
		c.Override,
		c.Sign,
		RecordRequest{},
		c.Forward,
	}
}

// PipeConfig is what the checks of a message on a typed pipe need. The
// pipe supplies the checks that know its Go types and its buffers; the
// rest are the sidecar's own.
type PipeConfig struct {
	// Received marks messages that came over a socket from another
	// process: their trace id is checked like the trace-id header
	// (Headers) before it is used.
	Received bool
	// NewTraceID makes a trace id when a received one is refused.
	NewTraceID func() string
	// Size refuses a message over the pipe's size limit.
	Size Check
	// Parse parses the JSON encoding of the message.
	Parse Parse
	// Decode, if not nil, turns a received message into its target's Go
	// type, refusing another type.
	Decode Check
	// Verify, if not nil, runs the verifiers over a stage's output.
	Verify Check
	// Engine is the policy engine; nil leaves the policy out, which the
	// pipe allows only under its explicitly unsafe option.
	Engine *policy.Engine
	// Override applies the policy's warnings: a pipe has no human to
	// confirm them.
	Override Check
	// Deliver hands the message to its target's bounded buffer.
	Deliver Check
}

// PipeChecks returns the checks of one message between two agents on a
// typed pipe: the same checks as a request, over the message's JSON
// encoding, with delivery instead of forwarding. Why each sits where it
// does:
//
//	headers   received messages only: the sender's trace id, checked
//	          before it is used anywhere (400)
//	size      the pipe's size limit, before any work (413)
//	parse     the one parse of the message: validate, detect, scrub (400)
//	decode    received messages only: the bytes just parsed become the
//	          target's Go type, or the message is refused (400)
//	verify    verifiers judge the source's output; a flagged message is
//	          refused and its source slashed (403)
//	policy    the sidecar's engine for both ends of the message (403)
//	override  warnings refuse the message unless the pipe accepts them (449)
//	record    the message is on disk before it is delivered (500)
//	deliver   into the target's bounded buffer, within the send timeout (504)
func PipeChecks(c PipeConfig) []Check {
	var checks []Check
	if c.Received {
		checks = append(checks, Headers{NewTraceID: c.NewTraceID})
	}
	checks = append(checks, c.Size, c.Parse)
	if c.Decode != nil {
		checks = append(checks, c.Decode)
	}
	if c.Verify != nil {
		checks = append(checks, c.Verify)
	}
	if c.Engine != nil {
		checks = append(checks, Decide{Engine: c.Engine, Direction: policy.Both}, c.Override)
	}
	return append(checks, RecordRequest{}, c.Deliver)
}
