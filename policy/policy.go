package policy

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/manifest"
)

// Outcome is the kind of a decision.
type Outcome uint8

// Outcomes, in increasing severity: block beats warn beats allow.
const (
	Allow Outcome = iota
	Warn
	Block
)

// String returns "allow", "warn" or "block".
func (o Outcome) String() string {
	switch o {
	case Allow:
		return "allow"
	case Warn:
		return "warn"
	case Block:
		return "block"
	}
	return "invalid"
}

// Built-in block rule names, as they appear in "blocked_by".
const (
	RuleCreditCardPermanent = "credit_card_permanent"
	RuleSSNNonEphemeral     = "ssn_non_ephemeral"
	RuleUntrustedCaller     = "untrusted_caller"
	RuleUntrustedTarget     = "untrusted_target"
	RuleMissingScope        = "missing_scope"
	RuleMissingCapability   = "missing_capability"
)

// BuiltinRules lists the built-in block rules, in evaluation order.
var BuiltinRules = []string{
	RuleCreditCardPermanent, RuleSSNNonEphemeral, RuleUntrustedCaller,
	RuleUntrustedTarget, RuleMissingScope, RuleMissingCapability,
}

// Capabilities lists the names accepted in Config.RequiredCapabilities.
var Capabilities = []string{
	"idempotency", "reversibility", "ephemeral_retention", "no_human_review",
	"no_training", "encryption_at_rest", "encryption_in_transit",
}

// DefaultWarnBelow is the score under which a request is warned about.
const DefaultWarnBelow = 5

// Config is the operator's policy.
type Config struct {
	// WarnBelow is the trust score under which a request gets the low-trust
	// warning. If nil, DefaultWarnBelow (5) is used.
	WarnBelow *int `yaml:"warn_below" json:"warn_below,omitempty"`
	// Disable switches off built-in block rules by name (see BuiltinRules).
	Disable []string `yaml:"disable" json:"disable,omitempty"`
	// RequiredScopes must all be in the target's manifest, or the request
	// is blocked by missing_scope.
	RequiredScopes []string `yaml:"required_scopes" json:"required_scopes,omitempty"`
	// RequiredCapabilities must all hold for the target (see Capabilities),
	// or the request is blocked by missing_capability.
	RequiredCapabilities []string `yaml:"required_capabilities" json:"required_capabilities,omitempty"`
	// Rules are the operator's CEL rules, evaluated in order after the
	// built-in block rules; the first that matches decides.
	Rules []Rule `yaml:"rules" json:"rules,omitempty"`
}

// Rule is an operator rule written in CEL.
type Rule struct {
	// Name identifies the rule in decisions, records and errors.
	Name string `yaml:"name" json:"name"`
	// When is a CEL expression over caller, target, request, sensitive
	// and, on a typed pipe, message that yields a bool.
	When string `yaml:"when" json:"when"`
	// Decision is block, warn or allow.
	Decision string `yaml:"decision" json:"decision"`
	// Reason explains the decision to the caller.
	Reason string `yaml:"reason" json:"reason"`
}

// Reputation is what the mesh holds about an agent (PROTOCOL §10).
type Reputation struct {
	// Known is false when no reputation is held; the rest is then ignored.
	Known bool
	// Hundredths is the score × 100 (0–1000; 500 is neutral).
	Hundredths int64
	// Level is the trust level the score maps to.
	Level manifest.TrustLevel
}

// Score returns the reputation as a number between 0 and 10.
func (r Reputation) Score() float64 { return float64(r.Hundredths) / 100 }

// String formats the score the way JSON does: "5", "4.75".
func (r Reputation) String() string { return strconv.FormatFloat(r.Score(), 'f', -1, 64) }

// Penalty is the score points a reputation below neutral costs:
// ceil(5.0 − reputation), 0 when unknown or at least neutral.
func (r Reputation) Penalty() int {
	if !r.Known || r.Hundredths >= 500 {
		return 0
	}
	return int((500 - r.Hundredths + 99) / 100)
}

// Caller is the agent making the request, as authenticated by the sidecar.
type Caller struct {
	// AgentID is the authenticated agent id, or "unknown".
	AgentID string
	// Authenticated is true when the request's signature was verified.
	Authenticated bool
	// Attested is true when the caller's key came from a valid attestation.
	Attested bool
	// TrustLevel is the level the caller has proven (see CallerTrust).
	TrustLevel manifest.TrustLevel
	// Reputation is the caller's reputation, if held.
	Reputation Reputation
}

// Target is the agent receiving the request: at ingress the sidecar's own
// agent, at egress the remote agent.
type Target struct {
	// Manifest is the target's manifest (required).
	Manifest *manifest.Manifest
	// TrustLevel is the level that counts: the claim for a sidecar's own
	// agent, the claim capped by proof for a remote one. Empty means the
	// manifest's claim.
	TrustLevel manifest.TrustLevel
	// Reputation is the target's reputation, if held.
	Reputation Reputation
}

// Request is the call being decided.
type Request struct {
	Method string
	Path   string
	// Headers gives the request's headers, names in lower case (one value
	// each). It is asked only when an operator rule reads request; nil
	// means no headers.
	Headers HeaderMapper
	// Body is the parsed JSON body (objects, arrays, strings, booleans,
	// nil and numbers as detect.Number), as the detector's single parse
	// built it (detect.ParseJSON); nil when no operator rule reads the body.
	Body any
}

// HeaderMapper gives a request's headers as operator rules see them.
type HeaderMapper interface {
	HeaderMap() map[string]string
}

// HeaderMap is a HeaderMapper of a fixed map.
type HeaderMap map[string]string

// HeaderMap returns m.
func (m HeaderMap) HeaderMap() map[string]string { return m }

// Direction says which side of the call the sidecar decides for.
type Direction uint8

// Directions.
const (
	// Ingress: the sidecar protects the target; caller rules apply.
	Ingress Direction = iota
	// Egress: the sidecar protects the caller; target rules apply.
	Egress
	// Both: a message between two agents on a typed pipe, where the pipe
	// protects both ends: caller and target rules apply.
	Both
)

// Input is everything a decision depends on.
type Input struct {
	Direction Direction
	Caller    Caller
	Target    Target
	Request   Request
	// Sensitive is the set of kinds the detector found in the request.
	Sensitive detect.Set
	// Require adds requirements of this request to the engine's own (at
	// egress, those configured for the target or the path).
	Require Requirements
	// Message describes the message being decided on a typed pipe; nil
	// for an HTTP request.
	Message *Message
}

// Requirements are scopes and capabilities a target must have.
type Requirements struct {
	// Scopes must all be in the target's manifest (missing_scope).
	Scopes []string `yaml:"required_scopes" json:"required_scopes,omitempty"`
	// Capabilities must all hold for the target (missing_capability); see
	// Capabilities for the names.
	Capabilities []string `yaml:"required_capabilities" json:"required_capabilities,omitempty"`
}

// Check reports the first capability name that is not one of Capabilities.
func (r Requirements) Check() error {
	for _, c := range r.Capabilities {
		if !slices.Contains(Capabilities, c) {
			return fmt.Errorf("required_capabilities: %q is not a capability (one of %s)", c, strings.Join(Capabilities, ", "))
		}
	}
	return nil
}

// Decision is the engine's verdict on one request.
type Decision struct {
	Outcome Outcome
	// Rule names the rule that blocked (blocked_by), or the operator rule
	// that decided; empty when the built-in warnings or nothing decided.
	Rule string
	// Reason is the block message, or the operator rule's reason.
	Reason string
	// Warnings are the warning bullets, in protocol order, when Outcome is Warn.
	Warnings []string
	// TrustScore is the target's effective 0–10 score.
	TrustScore int
	// Quarantine is true when a request that goes ahead must be quarantined.
	Quarantine bool
}

// WarningText renders the warnings as the protocol's 449 "warning" text.
func (d *Decision) WarningText() string {
	if len(d.Warnings) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("⚠️  WARNING:")
	for _, w := range d.Warnings {
		b.WriteString("\n  • ")
		b.WriteString(w)
	}
	return b.String()
}

// Engine decides requests. It is safe for concurrent use.
type Engine struct {
	warnBelow    int
	disabled     map[string]bool
	scopes       []string
	capabilities []string
	rules        []*compiledRule
	needsBody    bool
}

// New validates cfg and compiles its rules. An invalid rule stops start-up
// with the rule's name and the compiler's message.
func New(cfg Config) (*Engine, error) {
	e := &Engine{warnBelow: DefaultWarnBelow, disabled: map[string]bool{}}
	if cfg.WarnBelow != nil {
		if *cfg.WarnBelow < 0 || *cfg.WarnBelow > 11 {
			return nil, fmt.Errorf("policy.warn_below: %d is outside 0–11", *cfg.WarnBelow)
		}
		e.warnBelow = *cfg.WarnBelow
	}
	for _, name := range cfg.Disable {
		if !slices.Contains(BuiltinRules, name) {
			return nil, fmt.Errorf("policy.disable: %q is not a built-in rule (one of %s)", name, strings.Join(BuiltinRules, ", "))
		}
		e.disabled[name] = true
	}
	for _, c := range cfg.RequiredCapabilities {
		if !slices.Contains(Capabilities, c) {
			return nil, fmt.Errorf("policy.required_capabilities: %q is not a capability (one of %s)", c, strings.Join(Capabilities, ", "))
		}
	}
	e.scopes = slices.Clone(cfg.RequiredScopes)
	e.capabilities = slices.Clone(cfg.RequiredCapabilities)
	rules, needsBody, err := compileRules(cfg.Rules)
	if err != nil {
		return nil, err
	}
	e.rules, e.needsBody = rules, needsBody
	return e, nil
}

// NeedsBody reports whether any operator rule reads request.body, so the
// caller knows the body must be kept for Decide.
func (e *Engine) NeedsBody() bool { return e.needsBody }

// Decide returns the decision for in. An error means the input was unusable
// (no target manifest); operator rules that fail at run time do not return
// an error but block, naming the rule (fail closed).
func (e *Engine) Decide(ctx context.Context, in *Input) (Decision, error) {
	m := in.Target.Manifest
	if m == nil {
		return Decision{Outcome: Block}, fmt.Errorf("policy: input has no target manifest")
	}
	level := in.Target.TrustLevel
	if level == "" {
		level = m.TrustLevel
	}
	score := max(0, m.ScoreAs(level)-in.Target.Reputation.Penalty())
	d := Decision{TrustScore: score}
	d.Quarantine = score < 3 || level == manifest.Untrusted ||
		(m.Reversibility.Level == manifest.ReversibilityNone && m.Privacy.RetentionPolicy.Indefinite()) ||
		(in.Target.Reputation.Known && in.Target.Reputation.Level == manifest.Untrusted)

	if rule, reason := e.blockRule(in); rule != "" {
		d.Outcome, d.Rule, d.Reason = Block, rule, reason
		return d, nil
	}
	var ruleWarning string
	for _, r := range e.rules {
		matched, err := r.eval(ctx, in, score, level)
		if err != nil {
			d.Outcome, d.Rule = Block, r.Name
			d.Reason = fmt.Sprintf("Policy violation: rule '%s' could not be evaluated: %v", r.Name, err)
			return d, nil
		}
		if !matched {
			continue
		}
		switch r.decision {
		case Block:
			d.Outcome, d.Rule = Block, r.Name
			d.Reason = "Policy violation: " + r.reason()
			return d, nil
		case Allow:
			d.Outcome, d.Rule, d.Reason = Allow, r.Name, r.Reason
			return d, nil
		case Warn:
			d.Rule, d.Reason = r.Name, r.Reason
			ruleWarning = r.reason()
		}
		break
	}
	if ruleWarning != "" {
		d.Warnings = append(d.Warnings, ruleWarning)
	}
	d.Warnings = append(d.Warnings, e.warnings(m, score)...)
	if len(d.Warnings) > 0 {
		d.Outcome = Warn
	}
	return d, nil
}

// blockRule returns the first built-in block rule that holds, with its message.
func (e *Engine) blockRule(in *Input) (rule, message string) {
	m := in.Target.Manifest
	id := m.AgentID()
	ret := m.Privacy.RetentionPolicy
	if !e.disabled[RuleCreditCardPermanent] && in.Sensitive.Has(detect.CreditCard) && ret.Indefinite() {
		return RuleCreditCardPermanent, fmt.Sprintf("Privacy Violation: Agent '%s' stores data permanently and request contains credit card information. Request blocked for security.", id)
	}
	if !e.disabled[RuleSSNNonEphemeral] && in.Sensitive.Has(detect.SSN) && ret != manifest.RetentionEphemeral {
		return RuleSSNNonEphemeral, fmt.Sprintf("Privacy Violation: Agent '%s' retains data beyond session lifetime and request contains SSN. Request blocked for security.", id)
	}
	switch in.Direction {
	case Ingress:
		if r := in.Caller.Reputation; !e.disabled[RuleUntrustedCaller] && r.Known && r.Level == manifest.Untrusted {
			return RuleUntrustedCaller, fmt.Sprintf("Policy violation: agent '%s' is untrusted (reputation %s)", in.Caller.AgentID, r)
		}
	case Egress:
		if r := in.Target.Reputation; !e.disabled[RuleUntrustedTarget] && r.Known && r.Level == manifest.Untrusted {
			return RuleUntrustedTarget, fmt.Sprintf("Policy violation: agent '%s' is untrusted (reputation %s)", id, r)
		}
	case Both:
		if r := in.Caller.Reputation; !e.disabled[RuleUntrustedCaller] && r.Known && r.Level == manifest.Untrusted {
			return RuleUntrustedCaller, fmt.Sprintf("Policy violation: agent '%s' is untrusted (reputation %s)", in.Caller.AgentID, r)
		}
		if r := in.Target.Reputation; !e.disabled[RuleUntrustedTarget] && r.Known && r.Level == manifest.Untrusted {
			return RuleUntrustedTarget, fmt.Sprintf("Policy violation: agent '%s' is untrusted (reputation %s)", id, r)
		}
	}
	if !e.disabled[RuleMissingScope] {
		var missing []string
		for _, list := range [2][]string{e.scopes, in.Require.Scopes} {
			for _, s := range list {
				if !slices.Contains(m.Scopes, s) && !slices.Contains(missing, s) {
					missing = append(missing, s)
				}
			}
		}
		if len(missing) > 0 {
			return RuleMissingScope, "Agent missing required scopes: " + strings.Join(missing, ", ")
		}
	}
	if !e.disabled[RuleMissingCapability] {
		var missing []string
		for _, list := range [2][]string{e.capabilities, in.Require.Capabilities} {
			for _, c := range list {
				if !hasCapability(m, c) && !slices.Contains(missing, c) {
					missing = append(missing, c)
				}
			}
		}
		if len(missing) > 0 {
			return RuleMissingCapability, "Agent missing required capabilities: " + strings.Join(missing, ", ")
		}
	}
	return "", ""
}

func hasCapability(m *manifest.Manifest, name string) bool {
	switch name {
	case "idempotency":
		return m.Capabilities.Idempotency
	case "reversibility":
		return m.Reversibility.Level.Reversible()
	case "ephemeral_retention":
		return m.Privacy.RetentionPolicy == manifest.RetentionEphemeral
	case "no_human_review":
		return !m.Privacy.HumanInLoop
	case "no_training":
		return !m.Privacy.TrainingConsent
	case "encryption_at_rest":
		return m.Privacy.EncryptionAtRest != nil && *m.Privacy.EncryptionAtRest
	case "encryption_in_transit":
		return m.Privacy.EncryptionInTransit != nil && *m.Privacy.EncryptionInTransit
	}
	return false
}

// warnings returns the built-in warning bullets in protocol order.
func (e *Engine) warnings(m *manifest.Manifest, score int) []string {
	id := m.AgentID()
	var w []string
	if score < e.warnBelow {
		w = append(w, fmt.Sprintf("Low trust score (%d/10) for agent '%s'", score, id))
	}
	if m.Reversibility.Level == manifest.ReversibilityNone {
		w = append(w, fmt.Sprintf("Agent '%s' does not support transaction reversal", id))
	}
	if !m.Capabilities.Idempotency {
		w = append(w, fmt.Sprintf("Agent '%s' may not handle duplicate requests safely", id))
	}
	if m.Privacy.RetentionPolicy.Indefinite() {
		w = append(w, fmt.Sprintf("Agent '%s' stores data indefinitely", id))
	}
	if m.Privacy.HumanInLoop {
		w = append(w, fmt.Sprintf("Agent '%s' may have humans review your data", id))
	}
	if m.Privacy.TrainingConsent {
		w = append(w, fmt.Sprintf("Agent '%s' may train on your data", id))
	}
	return w
}

// CallerTrust returns the trust level and 0–10 score a caller has proven,
// for operator rules: attested callers count as verified_partner (8),
// callers with a pinned key as trusted (6), authenticated callers without
// either as standard (4), anonymous callers as unknown (2) — the lower bound
// of each level's reputation band. A reputation below neutral lowers both:
// the level to the reputation's own when that is lower, and the score by
// each point lost, rounded up, as scores are (PROTOCOL §2). A reputation
// at or above neutral changes nothing, so a caller's trust never drops as
// its reputation rises (a held 5.10 counts as no reputation at all).
func CallerTrust(c Caller) (manifest.TrustLevel, int) {
	level := manifest.Unknown
	switch {
	case c.Attested:
		level = manifest.VerifiedPartner
	case c.Authenticated && c.TrustLevel != "":
		level = c.TrustLevel
	case c.Authenticated:
		level = manifest.Standard
	}
	if r := c.Reputation; r.Penalty() > 0 && r.Level.Valid() && !r.Level.AtLeast(level) {
		level = r.Level
	}
	band := int(manifest.BandFloor(level) / 100)
	return level, max(0, band-c.Reputation.Penalty())
}
