package sidecar

import (
	"encoding/json"
	"github.com/iatp/iatp/internal/wire"
	"reflect"
	"strings"
	"testing"

	"github.com/iatp/iatp/manifest"
)

func TestWellKnownAndHealth(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		r := h.do("GET", "/.well-known/agent-manifest", "")
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("manifest: %d", r.status)
		}
		m, err := manifest.Parse(r.body)
		if err != nil {
			t.Fatal(err)
		}
		want := loadManifest(t, "secure_bank.json")
		if !reflect.DeepEqual(m, want) {
			t.Errorf("served manifest parses to\n%+v\nwant\n%+v", m, want)
		}
		if r.json["agent_id"] != "secure-bank-agent" || r.json["privacy_contract"] == nil {
			t.Errorf("served document lacks the legacy keys: %s", r.body)
		}
		if r := h.do("GET", "/.well-known/agent-attestation", ""); r.status != 404 || r.str("trace_id") == "" {
			t.Errorf("attestation without one configured: %d %s", r.status, r.body)
		}
		if r := h.do("GET", "/health", ""); r.status != 200 || r.str("status") != "healthy" || r.str("agent_id") != "secure-bank-agent" {
			t.Errorf("health: %d %s", r.status, r.body)
		}
		if r := h.do("GET", "/healthz", ""); r.status != 200 {
			t.Errorf("healthz: %d", r.status)
		}
		if r := h.do("GET", "/readyz", ""); r.status != 200 {
			t.Errorf("readyz with the agent up: %d %s", r.status, r.body)
		}
		h.do("POST", "/proxy", `{}`)
		if r := h.do("GET", "/metrics", ""); r.status != 200 || !strings.Contains(string(r.body), `iatp_decisions_total{agent_id="secure-bank-agent",outcome="allow"} 1`) ||
			!strings.Contains(string(r.body), "iatp_agent_latency_seconds") {
			t.Errorf("metrics: %d", r.status)
		}
		if r := h.do("GET", "/nope", ""); r.status != 404 || r.str("trace_id") == "" {
			t.Errorf("unknown path: %d %s", r.status, r.body)
		}
		for _, p := range []string{"/health", "/.well-known/agent-manifest", "/reputation/x", "/trace/x"} {
			if r := h.do("DELETE", p, ""); r.status != 405 || r.str("trace_id") == "" || r.header.Get("Allow") != "GET" {
				t.Errorf("DELETE %s: %d %s", p, r.status, r.body)
			}
		}
		if r := h.do("GET", "/reputation/x/slash", ""); r.status != 405 || r.header.Get("Allow") != "POST" {
			t.Errorf("GET slash: %d %s", r.status, r.body)
		}
		h.agent.srv.Close()
		for range 3 {
			if r := h.do("GET", "/readyz", ""); r.status != 503 {
				t.Errorf("readyz with the agent down: %d %s", r.status, r.body)
			}
		}
		if n := strings.Count(h.logs.String(), "not ready: the agent does not accept connections"); n != 1 {
			t.Errorf("the agent going away was logged %d times, want once", n)
		}
	})
}

func TestTraceRecordsEveryDecision(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "untrusted_honeypot.json", nil)
		ssn := "123-45-6789"
		email := "bob@example.org"
		h.do("POST", "/proxy", `{"card":"`+card+`"}`, wire.TraceID, "t-block")
		h.do("POST", "/proxy", `{"note":"`+email+`"}`, wire.TraceID, "t-warn")
		h.do("POST", "/proxy", `{"note":"`+email+`","n":1}`, wire.TraceID, "t-ok", wire.Override, testOverride)
		h.do("POST", "/proxy", `{"card":"`+card, wire.TraceID, "t-bad")
		h.do("POST", "/proxy", `{"ssn":"`+ssn+`"}`, wire.TraceID, "t-ssn")

		kinds := func(id string) []string {
			r := h.trace(id)
			if r.status != 200 || r.str("trace_id") != id {
				t.Fatalf("trace %s: %d %s", id, r.status, r.body)
			}
			var out []string
			for _, l := range r.json["logs"].([]any) {
				out = append(out, l.(map[string]any)["kind"].(string))
			}
			return out
		}
		for id, want := range map[string][]string{
			"t-block": {"blocked"},
			"t-warn":  {"warning"},
			"t-ok":    {"user_override", "request", "response"},
			"t-bad":   {"error"},
			"t-ssn":   {"blocked"},
		} {
			if got := kinds(id); !reflect.DeepEqual(got, want) {
				t.Errorf("trace %s kinds %v, want %v", id, got, want)
			}
		}
		for _, id := range []string{"t-block", "t-warn", "t-ok", "t-bad", "t-ssn"} {
			body := string(h.trace(id).body)
			for _, secret := range []string{card, ssn, email} {
				if strings.Contains(body, secret) {
					t.Errorf("trace %s holds %s: %s", id, secret, body)
				}
			}
		}
		if !strings.Contains(string(h.trace("t-block").body), "[CREDIT_CARD_REDACTED]") {
			t.Errorf("blocked record lacks the scrubbed payload: %s", h.trace("t-block").body)
		}
		if !strings.Contains(string(h.trace("t-ok").body), "[EMAIL_REDACTED]") {
			t.Errorf("answer record lacks the scrubbed answer: %s", h.trace("t-ok").body)
		}
		for _, secret := range []string{card, ssn, email, testOverride, testAdmin} {
			if strings.Contains(h.logs.String(), secret) {
				t.Errorf("the sidecar's log holds %q", secret)
			}
		}
		// The forwarded body is untouched.
		if got := string(h.agent.received()[0].Body); !strings.Contains(got, email) {
			t.Errorf("forwarded body was altered: %s", got)
		}
		// Traces need the admin token.
		if r := h.do("GET", "/trace/t-ok", ""); r.status != 401 {
			t.Errorf("trace without a token: %d", r.status)
		}
		if r := h.trace("unknown-trace"); r.status != 404 {
			t.Errorf("unknown trace: %d", r.status)
		}
		if r := h.trace("bad%20id"); r.status != 400 {
			t.Errorf("malformed trace id: %d", r.status)
		}
	})
}

func TestRedactForwarded(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) { c.RedactForwarded = true })
		h.do("POST", "/proxy", `{"card":"`+card+`"}`)
		if got := string(h.agent.received()[0].Body); got != `{"card":"[CREDIT_CARD_REDACTED]"}` {
			t.Errorf("forwarded %s", got)
		}
	})
}

func TestReputationEndpoints(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", nil)
		bearer := "Bearer " + testAdmin
		slash := `{"reason":"hallucination","severity":"critical","trace_id":"t-1","details":{"claim":"made up"}}`
		for _, auth := range []string{"", "Bearer wrong-token-123456789", "Basic " + testAdmin, testAdmin} {
			if r := h.do("POST", "/reputation/liar/slash", slash, "Authorization", auth); r.status != 401 {
				t.Errorf("slash with Authorization %q: %d", auth, r.status)
			}
		}
		if r := h.do("GET", "/reputation/liar", ""); r.status != 404 {
			t.Errorf("an unauthorised slash changed something: %d %s", r.status, r.body)
		}
		r := h.do("POST", "/reputation/liar/slash", slash, "Authorization", bearer)
		if r.status != 200 || r.str("status") != "slashed" || r.json["new_score"] != float64(3) || r.str("trust_level") != "unknown" ||
			r.str("reason") != "hallucination" || r.str("severity") != "critical" {
			t.Fatalf("slash: %d %s", r.status, r.body)
		}
		r = h.do("POST", "/reputation/liar/slash", `{"reason":"hallucination","severity":"high"}`, "Authorization", bearer)
		if r.json["new_score"] != float64(2) {
			t.Errorf("second slash: %s", r.body)
		}
		for _, bad := range []string{`[1]`, `"x"`, `{"reason":"felt like it"}`, `{`} {
			if r := h.do("POST", "/reputation/liar/slash", bad, "Authorization", bearer); r.status != 400 {
				t.Errorf("slash body %s: %d %s", bad, r.status, r.body)
			}
		}
		g := h.do("GET", "/reputation/liar", "")
		if g.status != 200 || g.json["score"] != float64(2) || g.json["total_events"] != float64(2) || g.str("trust_level") != "unknown" {
			t.Errorf("reputation: %d %s", g.status, g.body)
		}
		e := h.do("GET", "/reputation/export", "")
		var exp struct {
			ReputationData map[string]json.RawMessage `json:"reputation_data"`
			Timestamp      string                     `json:"timestamp"`
		}
		if err := json.Unmarshal(e.body, &exp); e.status != 200 || err != nil || exp.ReputationData["liar"] == nil || exp.Timestamp == "" {
			t.Errorf("export: %d %s", e.status, e.body)
		}
		imp := `{"reputation_data":{"liar":{"agent_id":"liar","score":1.5},"peer-seen":{"agent_id":"peer-seen","score":9.0}}}`
		if r := h.do("POST", "/reputation/import", imp); r.status != 401 {
			t.Errorf("anonymous import: %d", r.status)
		}
		r = h.do("POST", "/reputation/import", imp, "Authorization", bearer)
		if r.status != 200 || r.str("status") != "imported" {
			t.Fatalf("import: %d %s", r.status, r.body)
		}
		if g := h.do("GET", "/reputation/liar", ""); g.json["score"] != float64(1.5) || g.str("trust_level") != "untrusted" {
			t.Errorf("after import (lower wins): %s", g.body)
		}
		if r := h.do("POST", "/reputation/import", `{"reputation_data":{"x":{"agent_id":"y","score":1}}}`, "Authorization", bearer); r.status != 400 {
			t.Errorf("invalid import: %d %s", r.status, r.body)
		}
		// Slashes are recorded, under the slash request's own trace id.
		h.do("POST", "/reputation/liar/slash", `{"reason":"error"}`, "Authorization", bearer, wire.TraceID, "slash-rec-1")
		if tr := h.trace("slash-rec-1"); tr.status != 200 || !strings.Contains(string(tr.body), `"kind":"reputation"`) ||
			!strings.Contains(string(tr.body), `"agent_id":"liar"`) {
			t.Errorf("slash record: %d %s", tr.status, tr.body)
		}
		// The protected agent's own answers are counted, but never raise
		// its score: only the other side of a call reports outcomes.
		h.do("POST", "/proxy", `{}`)
		if g := h.do("GET", "/reputation/secure-bank-agent", ""); g.json["score"] != float64(5) || g.json["positive_events"] != float64(1) {
			t.Errorf("own agent after one success: %s", g.body)
		}
	})
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	eachFront(t, func(t *testing.T) {
		h := start(t, "secure_bank.json", func(c *Config) { c.AdminToken = "" })
		r := h.do("POST", "/reputation/x/slash", `{"reason":"error"}`, "Authorization", "Bearer anything-at-all-123")
		if r.status != 401 || !strings.Contains(r.str("error"), "Authorization: Bearer") {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
}
