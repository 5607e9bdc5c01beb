package sidecar

import "testing"

// TestCardSpellings sends a card number written every way people (and
// attackers) write it to the honeypot, which keeps data forever: each is
// blocked, on both fronts, and nothing reaches the agent.
func TestCardSpellings(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "untrusted_honeypot.json", func(c *Config) { c.RateLimitPerMinute = -1 })
		for _, tc := range []struct{ name, path, body string }{
			{"JSON number", "/proxy", `{"n":4532015112830366}`},
			{"exponent", "/proxy", `{"n":4.532015112830366e15}`},
			{"fraction", "/proxy", `{"n":4532015112830366.0}`},
			{"escaped digits", "/proxy", `{"c":"\u0034532015112830366"}`},
			{"full-width digits", "/proxy", `{"c":"４５３２０１５１１２８３０３６６"}`},
			{"dots", "/proxy", `{"c":"4532.0151.1283.0366"}`},
			{"underscores", "/proxy", `{"c":"4532_0151_1283_0366"}`},
			{"slashes", "/proxy", `{"c":"4532/0151/1283/0366"}`},
			{"no-break spaces", "/proxy", "{\"c\":\"4532\u00a00151\u00a01283\u00a00366\"}"},
			{"en dashes", "/proxy", `{"c":"4532–0151–1283–0366"}`},
			{"odd grouping", "/proxy", `{"c":"45 320151 12830 366"}`},
			{"key", "/proxy", `{"4532015112830366":true}`},
			{"amex", "/proxy", `{"c":"3782 822463 10005"}`},
			{"in the path", "/proxy/4532015112830366", `{}`},
			{"in the query", "/proxy?c=4532%200151%201283%200366", `{}`},
		} {
			r := h.do("POST", tc.path, tc.body)
			if r.status != 403 || r.str("blocked_by") != "credit_card_permanent" {
				t.Errorf("%s: %d %s", tc.name, r.status, r.body)
			}
		}
		if n := len(h.agent.received()); n != 0 {
			t.Errorf("the honeypot's agent was reached %d times", n)
		}
		// Not cards: a timestamp, a UUID, a number that fails Luhn, a
		// fraction with the digits of a card.
		for _, body := range []string{`{"t":1733212800123}`, `{"id":"45320151-1283-0366-4532-015112830366"}`,
			`{"n":"1234-5678-9012-3456"}`, `{"n":4532015112830366.5}`} {
			if r := h.do("POST", "/proxy", body); r.str("blocked_by") == "credit_card_permanent" {
				t.Errorf("%s blocked as a card", body)
			}
		}
		// SSNs for a non-ephemeral agent.
		for _, ssn := range []string{"123-45-6789", "123 45 6789", "123–45–6789"} {
			if r := h.do("POST", "/proxy", `{"s":"`+ssn+`"}`); r.status != 403 || r.str("blocked_by") != "ssn_non_ephemeral" {
				t.Errorf("SSN %q: %d %s", ssn, r.status, r.body)
			}
		}
	})
}
