package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/manifest"
)

func loadExample(t testing.TB, name string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.ParseFile(filepath.Join("..", "examples", "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustManifest(t testing.TB, doc string) *manifest.Manifest {
	t.Helper()
	m, err := manifest.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func rep(h int64) Reputation {
	level := manifest.Untrusted
	switch {
	case h >= 800:
		level = manifest.VerifiedPartner
	case h >= 600:
		level = manifest.Trusted
	case h >= 400:
		level = manifest.Standard
	case h >= 200:
		level = manifest.Unknown
	}
	return Reputation{Known: true, Hundredths: h, Level: level}
}

func TestDecideBuiltins(t *testing.T) {
	bank := loadExample(t, "secure_bank.json")
	honeypot := loadExample(t, "untrusted_honeypot.json")
	reviewer := loadExample(t, "reviewer_agent.json")
	standard := loadExample(t, "standard_agent.json")
	temporaryCards := mustManifest(t, `{"agent_id":"tmp","trust_level":"trusted","capabilities":{"reversibility":"full","idempotency":true},"privacy_contract":{"retention":"temporary"}}`)

	engine, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   Input
		want Decision
	}{
		{"bank plain", Input{Target: Target{Manifest: bank}},
			Decision{Outcome: Allow, TrustScore: 10}},
		{"bank card ephemeral", Input{Target: Target{Manifest: bank}, Sensitive: detect.Set(detect.CreditCard)},
			Decision{Outcome: Allow, TrustScore: 10}},
		{"bank ssn ephemeral", Input{Target: Target{Manifest: bank}, Sensitive: detect.Set(detect.SSN)},
			Decision{Outcome: Allow, TrustScore: 10}},
		{"email alone never blocks or warns", Input{Target: Target{Manifest: bank}, Sensitive: detect.Set(detect.Email | detect.Secret)},
			Decision{Outcome: Allow, TrustScore: 10}},
		{"honeypot card", Input{Target: Target{Manifest: honeypot}, Sensitive: detect.Set(detect.CreditCard)},
			Decision{Outcome: Block, Rule: RuleCreditCardPermanent, TrustScore: 0, Quarantine: true,
				Reason: "Privacy Violation: Agent 'honeypot-agent' stores data permanently and request contains credit card information. Request blocked for security."}},
		{"honeypot card and ssn: card rule first", Input{Target: Target{Manifest: honeypot}, Sensitive: detect.Set(detect.CreditCard | detect.SSN)},
			Decision{Outcome: Block, Rule: RuleCreditCardPermanent, TrustScore: 0, Quarantine: true,
				Reason: "Privacy Violation: Agent 'honeypot-agent' stores data permanently and request contains credit card information. Request blocked for security."}},
		{"honeypot ssn", Input{Target: Target{Manifest: honeypot}, Sensitive: detect.Set(detect.SSN)},
			Decision{Outcome: Block, Rule: RuleSSNNonEphemeral, TrustScore: 0, Quarantine: true,
				Reason: "Privacy Violation: Agent 'honeypot-agent' retains data beyond session lifetime and request contains SSN. Request blocked for security."}},
		{"temporary retention may receive a card", Input{Target: Target{Manifest: temporaryCards}, Sensitive: detect.Set(detect.CreditCard)},
			Decision{Outcome: Allow, TrustScore: 10}},
		{"temporary retention may not receive an ssn", Input{Target: Target{Manifest: temporaryCards}, Sensitive: detect.Set(detect.SSN)},
			Decision{Outcome: Block, Rule: RuleSSNNonEphemeral, TrustScore: 10,
				Reason: "Privacy Violation: Agent 'tmp' retains data beyond session lifetime and request contains SSN. Request blocked for security."}},
		{"honeypot plain warns", Input{Target: Target{Manifest: honeypot}},
			Decision{Outcome: Warn, TrustScore: 0, Quarantine: true, Warnings: honeypotWarnings}},
		{"reviewer warns with score 7", Input{Target: Target{Manifest: reviewer}},
			Decision{Outcome: Warn, TrustScore: 7, Warnings: []string{"Agent 'reviewer-agent' does not support transaction reversal"}}},
		{"standard agent allowed", Input{Target: Target{Manifest: standard}},
			Decision{Outcome: Allow, TrustScore: 8}},
		{"untrusted caller", Input{Target: Target{Manifest: bank}, Caller: Caller{AgentID: "evil", Authenticated: true, Reputation: rep(150)}},
			Decision{Outcome: Block, Rule: RuleUntrustedCaller, TrustScore: 10, Reason: "Policy violation: agent 'evil' is untrusted (reputation 1.5)"}},
		{"caller at 2.00 is not untrusted", Input{Target: Target{Manifest: bank}, Caller: Caller{AgentID: "meh", Authenticated: true, Reputation: rep(200)}},
			Decision{Outcome: Allow, TrustScore: 10}},
		{"untrusted target at ingress is not a caller rule", Input{Target: Target{Manifest: bank, Reputation: rep(100)}},
			Decision{Outcome: Allow, TrustScore: 6, Quarantine: true}},
		{"untrusted target at egress", Input{Direction: Egress, Target: Target{Manifest: bank, Reputation: rep(100)}},
			Decision{Outcome: Block, Rule: RuleUntrustedTarget, TrustScore: 6, Quarantine: true, Reason: "Policy violation: agent 'secure-bank-agent' is untrusted (reputation 1)"}},
		{"reputation lowers the score", Input{Target: Target{Manifest: reviewer, Reputation: rep(450)}},
			Decision{Outcome: Warn, TrustScore: 6, Warnings: []string{"Agent 'reviewer-agent' does not support transaction reversal"}}},
		{"reputation below neutral rounds up", Input{Target: Target{Manifest: reviewer, Reputation: rep(299)}},
			Decision{Outcome: Warn, TrustScore: 4, Warnings: []string{"Low trust score (4/10) for agent 'reviewer-agent'", "Agent 'reviewer-agent' does not support transaction reversal"}}},
		{"reputation above neutral never raises", Input{Target: Target{Manifest: reviewer, Reputation: rep(990)}},
			Decision{Outcome: Warn, TrustScore: 7, Warnings: []string{"Agent 'reviewer-agent' does not support transaction reversal"}}},
		{"capped trust level counts", Input{Target: Target{Manifest: reviewer, TrustLevel: manifest.Unknown}},
			Decision{Outcome: Warn, TrustScore: 5, Warnings: []string{"Agent 'reviewer-agent' does not support transaction reversal"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := engine.Decide(context.Background(), &tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decide:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestWarningText(t *testing.T) {
	d := Decision{Warnings: []string{"a", "b"}}
	if got, want := d.WarningText(), "⚠️  WARNING:\n  • a\n  • b"; got != want {
		t.Errorf("WarningText() = %q, want %q", got, want)
	}
	if got := (&Decision{}).WarningText(); got != "" {
		t.Errorf("empty WarningText() = %q", got)
	}
}

func TestConfigRules(t *testing.T) {
	bank := loadExample(t, "secure_bank.json")
	honeypot := loadExample(t, "untrusted_honeypot.json")
	five := 5
	eleven := 11
	tests := []struct {
		name string
		cfg  Config
		in   Input
		want Decision
	}{
		{"missing scope", Config{RequiredScopes: []string{"payments:read", "repo:write", "x:y"}}, Input{Target: Target{Manifest: bank}},
			Decision{Outcome: Block, Rule: RuleMissingScope, TrustScore: 10, Reason: "Agent missing required scopes: repo:write, x:y"}},
		{"scopes present", Config{RequiredScopes: []string{"payments:read"}}, Input{Target: Target{Manifest: bank}},
			Decision{Outcome: Allow, TrustScore: 10}},
		{"missing capability", Config{RequiredCapabilities: []string{"idempotency", "reversibility"}}, Input{Target: Target{Manifest: honeypot}},
			Decision{Outcome: Block, Rule: RuleMissingCapability, TrustScore: 0, Quarantine: true, Reason: "Agent missing required capabilities: idempotency, reversibility"}},
		{"capabilities present", Config{RequiredCapabilities: []string{"idempotency", "encryption_at_rest", "ephemeral_retention"}}, Input{Target: Target{Manifest: bank}},
			Decision{Outcome: Allow, TrustScore: 10}},
		{"card rule disabled", Config{Disable: []string{RuleCreditCardPermanent}}, Input{Target: Target{Manifest: honeypot}, Sensitive: detect.Set(detect.CreditCard)},
			Decision{Outcome: Warn, TrustScore: 0, Quarantine: true, Warnings: honeypotWarnings}},
		{"warn_below 11 warns everyone", Config{WarnBelow: &eleven}, Input{Target: Target{Manifest: bank}},
			Decision{Outcome: Warn, TrustScore: 10, Warnings: []string{"Low trust score (10/10) for agent 'secure-bank-agent'"}}},
		{"warn_below 5 explicit", Config{WarnBelow: &five}, Input{Target: Target{Manifest: bank}},
			Decision{Outcome: Allow, TrustScore: 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Decide(context.Background(), &tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decide:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

var honeypotWarnings = []string{
	"Low trust score (0/10) for agent 'honeypot-agent'",
	"Agent 'honeypot-agent' does not support transaction reversal",
	"Agent 'honeypot-agent' may not handle duplicate requests safely",
	"Agent 'honeypot-agent' stores data indefinitely",
	"Agent 'honeypot-agent' may have humans review your data",
}

func TestNewRejects(t *testing.T) {
	minus := -1
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"warn_below negative", Config{WarnBelow: &minus}, "policy.warn_below: -1 is outside 0–11"},
		{"unknown disable", Config{Disable: []string{"credit_cards"}}, `policy.disable: "credit_cards" is not a built-in rule`},
		{"unknown capability", Config{RequiredCapabilities: []string{"teleport"}}, `policy.required_capabilities: "teleport" is not a capability`},
		{"rule without name", Config{Rules: []Rule{{When: "true", Decision: "block"}}}, "policy.rules[0]: name is required"},
		{"duplicate names", Config{Rules: []Rule{{Name: "a", When: "true", Decision: "block"}, {Name: "a", When: "true", Decision: "warn"}}}, `policy rule "a": the name is used twice`},
		{"builtin name", Config{Rules: []Rule{{Name: RuleMissingScope, When: "true", Decision: "block"}}}, `policy rule "missing_scope": the name is a built-in rule's`},
		{"bad decision", Config{Rules: []Rule{{Name: "a", When: "true", Decision: "deny"}}}, `policy rule "a": decision "deny" is not one of block, warn, allow`},
		{"empty when", Config{Rules: []Rule{{Name: "a", Decision: "block"}}}, `policy rule "a": when is required`},
		{"syntax error", Config{Rules: []Rule{{Name: "bad-syntax", When: "caller.trust_score <", Decision: "block"}}}, `policy rule "bad-syntax" does not compile: ERROR: <input>:1:21: Syntax error`},
		{"undeclared variable", Config{Rules: []Rule{{Name: "undeclared", When: "user.admin", Decision: "block"}}}, `policy rule "undeclared" does not compile: ERROR: <input>:1:1: undeclared reference to 'user'`},
		{"unknown field", Config{Rules: []Rule{{Name: "typo", When: "caller.trust_scor < 8", Decision: "block"}}}, `policy rule "typo": caller has no field "trust_scor" (it has agent_id, trust_level, trust_score, reputation, attested, authenticated)`},
		{"not a bool", Config{Rules: []Rule{{Name: "num", When: "1 + 2", Decision: "block"}}}, `policy rule "num": when must yield a bool, it yields int`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestCELRules(t *testing.T) {
	bank := loadExample(t, "secure_bank.json")
	honeypot := loadExample(t, "untrusted_honeypot.json")
	rules := []Rule{
		{Name: "no-deletes-from-low-trust", When: `has(request.body.task) && request.body.task.startsWith("delete") && caller.trust_score < 8`, Decision: "block", Reason: "destructive task from a caller below 8"},
		{Name: "secrets-stay-home", When: `"secret" in sensitive`, Decision: "block", Reason: "secrets may not leave"},
		{Name: "trusted-honeypot-feed", When: `target.agent_id == "honeypot-agent" && "x-feed" in request.headers && request.headers["x-feed"] == "allowed"`, Decision: "allow", Reason: "operator vetted feed"},
		{Name: "big-orders", When: `has(request.body.amount) && request.body.amount > 1000.0`, Decision: "warn", Reason: "large order"},
		{Name: "needs-task", When: `request.body.mode == "strict"`, Decision: "warn"},
	}
	engine, err := New(Config{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	if !engine.NeedsBody() {
		t.Error("NeedsBody() = false with rules reading request.body")
	}
	headers := map[string]string{"X-Feed": "allowed"}
	req := func(body string, h map[string]string) Request {
		out := HeaderMap{}
		for k, v := range h {
			out[strings.ToLower(k)] = v
		}
		return Request{Method: "POST", Path: "/proxy", Body: jsonBody(body), Headers: out}
	}
	tests := []struct {
		name string
		in   Input
		want Decision
	}{
		{"delete from anonymous caller", Input{Target: Target{Manifest: bank}, Request: req(`{"task":"delete_account","mode":"x"}`, nil)},
			Decision{Outcome: Block, Rule: "no-deletes-from-low-trust", TrustScore: 10, Reason: "Policy violation: destructive task from a caller below 8"}},
		{"delete from attested caller", Input{Target: Target{Manifest: bank}, Caller: Caller{AgentID: "ops", Authenticated: true, Attested: true}, Request: req(`{"task":"delete_account","mode":"x"}`, nil)},
			Decision{Outcome: Allow, TrustScore: 10}},
		{"secret found", Input{Target: Target{Manifest: bank}, Sensitive: detect.Set(detect.Secret), Request: req(`{"mode":"x"}`, nil)},
			Decision{Outcome: Block, Rule: "secrets-stay-home", TrustScore: 10, Reason: "Policy violation: secrets may not leave"}},
		{"built-in block rules run first", Input{Target: Target{Manifest: honeypot}, Sensitive: detect.Set(detect.CreditCard | detect.Secret), Request: req(`{"mode":"x"}`, headers)},
			Decision{Outcome: Block, Rule: RuleCreditCardPermanent, TrustScore: 0, Quarantine: true, Reason: "Privacy Violation: Agent 'honeypot-agent' stores data permanently and request contains credit card information. Request blocked for security."}},
		{"allow ends evaluation without built-in warnings", Input{Target: Target{Manifest: honeypot}, Request: req(`{"mode":"x"}`, headers)},
			Decision{Outcome: Allow, Rule: "trusted-honeypot-feed", Reason: "operator vetted feed", TrustScore: 0, Quarantine: true}},
		{"warn rule comes before built-in warnings", Input{Target: Target{Manifest: honeypot}, Request: req(`{"amount":5000,"mode":"x"}`, nil)},
			Decision{Outcome: Warn, Rule: "big-orders", Reason: "large order", TrustScore: 0, Quarantine: true, Warnings: append([]string{"large order"}, honeypotWarnings...)}},
		{"warn rule alone", Input{Target: Target{Manifest: bank}, Request: req(`{"amount":5000,"mode":"x"}`, nil)},
			Decision{Outcome: Warn, Rule: "big-orders", Reason: "large order", TrustScore: 10, Warnings: []string{"large order"}}},
		{"run-time error blocks and names the rule", Input{Target: Target{Manifest: bank}, Request: req(`{"task":"read"}`, nil)},
			Decision{Outcome: Block, Rule: "needs-task", TrustScore: 10, Reason: "Policy violation: rule 'needs-task' could not be evaluated: no such key: mode"}},
		{"body that is not an object", Input{Target: Target{Manifest: bank}, Request: req(`[1,2]`, nil)},
			Decision{Outcome: Block, Rule: "no-deletes-from-low-trust", TrustScore: 10, Reason: "Policy violation: rule 'no-deletes-from-low-trust' could not be evaluated: unsupported index type 'string' in list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := engine.Decide(context.Background(), &tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decide:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestCELCostLimitBlocks(t *testing.T) {
	bank := loadExample(t, "secure_bank.json")
	e, err := New(Config{Rules: []Rule{{Name: "scan-all", When: `request.body.items.exists(i, request.body.items.exists(j, i + j == -1))`, Decision: "block"}}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString(`{"items":[0`)
	for i := 1; i < 5000; i++ {
		fmt.Fprintf(&b, ",%d", i)
	}
	b.WriteString("]}")
	d, err := e.Decide(context.Background(), &Input{Target: Target{Manifest: bank}, Request: Request{Body: jsonBody(b.String())}})
	if err != nil {
		t.Fatal(err)
	}
	if d.Outcome != Block || d.Rule != "scan-all" || !strings.Contains(d.Reason, "cost limit") {
		t.Errorf("Decide = %+v, want a block by scan-all for exceeding the cost limit", d)
	}
}

func TestNeedsBody(t *testing.T) {
	tests := []struct {
		when string
		want bool
	}{
		{`caller.trust_score < 8`, false},
		{`request.method == "POST" && request.path.startsWith("/proxy")`, false},
		{`request.headers["x"] == "y"`, false},
		{`request.body.task == "x"`, true},
		{`has(request.body)`, true},
		{`request["body"] == null`, true},
		{`size(request) > 0`, true},
	}
	for _, tt := range tests {
		t.Run(tt.when, func(t *testing.T) {
			e, err := New(Config{Rules: []Rule{{Name: "r", When: tt.when, Decision: "warn"}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := e.NeedsBody(); got != tt.want {
				t.Errorf("NeedsBody() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCallerTrust(t *testing.T) {
	tests := []struct {
		name      string
		c         Caller
		wantLevel manifest.TrustLevel
		wantScore int
	}{
		{"anonymous", Caller{AgentID: "unknown"}, manifest.Unknown, 2},
		{"authenticated", Caller{Authenticated: true}, manifest.Standard, 4},
		{"pinned", Caller{Authenticated: true, TrustLevel: manifest.Trusted}, manifest.Trusted, 6},
		{"attested", Caller{Authenticated: true, Attested: true}, manifest.VerifiedPartner, 8},
		{"attested with low reputation", Caller{Authenticated: true, Attested: true, Reputation: rep(350)}, manifest.Unknown, 0},
		{"attested with good reputation", Caller{Authenticated: true, Attested: true, Reputation: rep(900)}, manifest.VerifiedPartner, 8},
		{"attested slightly below neutral", Caller{Authenticated: true, Attested: true, Reputation: rep(450)}, manifest.Standard, 3},
		// A reputation at or above neutral is no reputation at all: one
		// success summary (5.10) must not cost an attested caller 4 points.
		{"attested at neutral", Caller{Authenticated: true, Attested: true, Reputation: rep(500)}, manifest.VerifiedPartner, 8},
		{"attested just above neutral", Caller{Authenticated: true, Attested: true, Reputation: rep(510)}, manifest.VerifiedPartner, 8},
		{"attested in the trusted band", Caller{Authenticated: true, Attested: true, Reputation: rep(650)}, manifest.VerifiedPartner, 8},
		{"pinned just above neutral", Caller{Authenticated: true, TrustLevel: manifest.Trusted, Reputation: rep(510)}, manifest.Trusted, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			level, score := CallerTrust(tt.c)
			if level != tt.wantLevel || score != tt.wantScore {
				t.Errorf("CallerTrust = %s %d, want %s %d", level, score, tt.wantLevel, tt.wantScore)
			}
		})
	}
}

// TestCallerTrustMonotone walks every reputation from 0 to 10 for every
// kind of caller: a better reputation never gives a lower score.
func TestCallerTrustMonotone(t *testing.T) {
	for _, c := range []Caller{
		{AgentID: "unknown"}, {Authenticated: true}, {Authenticated: true, TrustLevel: manifest.Trusted},
		{Authenticated: true, Attested: true},
	} {
		prev := -1
		for h := int64(0); h <= 1000; h++ {
			c.Reputation = rep(h)
			_, score := CallerTrust(c)
			if score < prev {
				t.Fatalf("%+v: score %d at reputation %d, %d just below", c, score, h, prev)
			}
			prev = score
		}
		c.Reputation = Reputation{}
		if _, none := CallerTrust(c); none != prev {
			t.Errorf("%+v: %d without a reputation, %d at 10.00", c, none, prev)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }

// jsonBody parses a test body the way the pipeline's parse hands it over:
// numbers kept as their text.
func jsonBody(s string) any {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		panic(err)
	}
	return v
}
