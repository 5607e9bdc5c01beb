package client_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/policy"
)

// TestOrigin: one target, one origin, however its URL is written.
func TestOrigin(t *testing.T) {
	for _, tc := range []struct {
		url, want string // want "" means an error
	}{
		{"http://bank.example", "http://bank.example:80"},
		{"http://bank.example:80/proxy", "http://bank.example:80"},
		{"http://bank.example:", "http://bank.example:80"},
		{"https://bank.example/proxy?x=1#f", "https://bank.example:443"},
		{"https://bank.example:443", "https://bank.example:443"},
		{"https://bank.example:8443", "https://bank.example:8443"},
		{"http://bank.example:443", "http://bank.example:443"},
		{"HTTP://Bank.EXAMPLE:8001/Proxy", "http://bank.example:8001"},
		{"HttpS://BANK.example", "https://bank.example:443"},
		{"http://127.0.0.1:8001", "http://127.0.0.1:8001"},
		{"http://[::1]:8001/proxy", "http://[::1]:8001"},
		{"http://[::1]", "http://[::1]:80"},
		{"https://[2001:DB8::1]", "https://[2001:db8::1]:443"},
		{"http://user:secret@bank.example/", "http://bank.example:80"},
		{"", ""},
		{"bank.example", ""},
		{"bank.example:8001", ""},
		{"//bank.example/proxy", ""},
		{"/proxy", ""},
		{"ftp://bank.example", ""},
		{"ws://bank.example", ""},
		{"file:///etc/passwd", ""},
		{"mailto:bank@example.com", ""},
		{"http://", ""},
		{"http:///proxy", ""},
		{"http://[::1", ""},
		{"http://bank example", ""},
		{"http://bank.example:port", ""},
	} {
		got, err := client.Origin(tc.url)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("Origin(%q) = %q, want an error", tc.url, got)
		case tc.want == "" && !strings.HasPrefix(err.Error(), "client: target URL"):
			t.Errorf("Origin(%q): error %q", tc.url, err)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("Origin(%q) = %q, %v; want %q", tc.url, got, err, tc.want)
		}
	}
}

func rule(match, prefix string, scopes, caps []string) client.TargetRule {
	r := client.TargetRule{Match: match, PathPrefix: prefix}
	r.Scopes, r.Capabilities = scopes, caps
	return r
}

// TestRequirements: the requirements of a call are the union of the rules
// that match its target (agent id, origin, host:port or *) and path.
func TestRequirements(t *testing.T) {
	const origin, id = "http://bank.example:8001", "secure-bank-agent"
	for _, tc := range []struct {
		name   string
		rules  []client.TargetRule
		origin string
		path   string
		want   policy.Requirements
	}{
		{"no rules", nil, origin, "/proxy", policy.Requirements{}},
		{"by agent id", []client.TargetRule{rule(id, "", []string{"payments:read"}, nil)}, origin, "/proxy",
			policy.Requirements{Scopes: []string{"payments:read"}}},
		{"by origin", []client.TargetRule{rule(origin, "", nil, []string{"idempotency"})}, origin, "/proxy",
			policy.Requirements{Capabilities: []string{"idempotency"}}},
		{"by host:port", []client.TargetRule{rule("bank.example:8001", "", []string{"s"}, nil)}, origin, "/proxy",
			policy.Requirements{Scopes: []string{"s"}}},
		{"by host:port, https", []client.TargetRule{rule("bank.example:8443", "", []string{"s"}, nil)}, "https://bank.example:8443", "/",
			policy.Requirements{Scopes: []string{"s"}}},
		{"every target", []client.TargetRule{rule("*", "", []string{"s"}, nil)}, "http://other.example:80", "/",
			policy.Requirements{Scopes: []string{"s"}}},
		{"another agent", []client.TargetRule{rule("coder-agent", "", []string{"s"}, nil)}, origin, "/proxy", policy.Requirements{}},
		{"another origin", []client.TargetRule{rule("http://bank.example:8002", "", []string{"s"}, nil)}, origin, "/proxy", policy.Requirements{}},
		{"another scheme", []client.TargetRule{rule("https://bank.example:8001", "", []string{"s"}, nil)}, origin, "/proxy", policy.Requirements{}},
		{"origin without its port", []client.TargetRule{rule("http://bank.example", "", []string{"s"}, nil)}, origin, "/proxy", policy.Requirements{}},
		{"host without its port", []client.TargetRule{rule("bank.example", "", []string{"s"}, nil)}, origin, "/proxy", policy.Requirements{}},
		{"agent id is case-sensitive", []client.TargetRule{rule("Secure-Bank-Agent", "", []string{"s"}, nil)}, origin, "/proxy", policy.Requirements{}},
		{"path prefix matches", []client.TargetRule{rule(id, "/proxy/transfer", []string{"payments:write"}, nil)}, origin, "/proxy/transfer/42",
			policy.Requirements{Scopes: []string{"payments:write"}}},
		{"path prefix does not match", []client.TargetRule{rule(id, "/proxy/transfer", []string{"payments:write"}, nil)}, origin, "/proxy/balance",
			policy.Requirements{}},
		{"path prefix with another target", []client.TargetRule{rule("coder-agent", "/proxy", []string{"s"}, nil)}, origin, "/proxy", policy.Requirements{}},
		{"union in rule order", []client.TargetRule{
			rule("*", "", []string{"a"}, []string{"idempotency"}),
			rule("coder-agent", "", []string{"never"}, nil),
			rule(id, "/proxy", []string{"b"}, []string{"reversibility"}),
			rule(origin, "", []string{"a"}, nil),
		}, origin, "/proxy/x", policy.Requirements{Scopes: []string{"a", "b", "a"}, Capabilities: []string{"idempotency", "reversibility"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := client.Requirements(tc.rules, tc.origin, id, tc.path)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Requirements = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestRequirementsDoNotAlias: the union is the caller's own; appending to
// it does not write into a rule.
func TestRequirementsDoNotAlias(t *testing.T) {
	scopes := make([]string, 1, 4)
	scopes[0] = "a"
	rules := []client.TargetRule{rule("*", "", scopes, nil), rule("*", "", []string{"b"}, nil)}
	got := client.Requirements(rules, "http://x.example:80", "x", "/")
	got.Scopes[0] = "changed"
	if rules[0].Scopes[0] != "a" {
		t.Errorf("the rule's scopes were changed through the result: %q", rules[0].Scopes)
	}
}

func TestCheckRules(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []client.TargetRule
		err   string // "" means valid
	}{
		{"none", nil, ""},
		{"valid", []client.TargetRule{rule("*", "", []string{"x"}, []string{"idempotency", "encryption_at_rest"})}, ""},
		{"every capability", []client.TargetRule{rule("a", "", nil, policy.Capabilities)}, ""},
		{"empty match", []client.TargetRule{rule("*", "", nil, nil), rule("", "/x", nil, nil)},
			"targets[1]: match is required (an agent id, an origin, host:port or *)"},
		{"blank match", []client.TargetRule{rule(" \t", "", nil, nil)},
			"targets[0]: match is required (an agent id, an origin, host:port or *)"},
		{"unknown capability", []client.TargetRule{rule("a", "", nil, []string{"idempotency"}), rule("b", "", nil, []string{"teleportation"})},
			`targets[1]: required_capabilities: "teleportation" is not a capability (one of ` + strings.Join(policy.Capabilities, ", ") + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := client.CheckRules(tc.rules)
			if got := errString(err); got != tc.err {
				t.Errorf("CheckRules: %q, want %q", got, tc.err)
			}
		})
	}
}

// TestNewChecksRules: New refuses what CheckRules refuses.
func TestNewChecksRules(t *testing.T) {
	_, err := client.New(client.Config{AgentID: "a", Targets: []client.TargetRule{rule("", "", nil, nil)}})
	if err == nil || !strings.Contains(err.Error(), "targets[0]: match is required") {
		t.Errorf("New: %v", err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
