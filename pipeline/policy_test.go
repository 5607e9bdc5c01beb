package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

func TestDecide(t *testing.T) {
	honeypot := loadManifest(t, "untrusted_honeypot.json")
	bank := loadManifest(t, "secure_bank.json")
	cardMsg := "Privacy Violation: Agent 'honeypot-agent' stores data permanently and request contains credit card information. Request blocked for security."
	tests := []struct {
		name     string
		manifest *manifest.Manifest
		rules    []policy.Rule
		found    detect.Set
		value    any
		status   int
		rule     string
		msg      string
		outcome  policy.Outcome
		warnings int
	}{
		{name: "card to a permanent store", manifest: honeypot, found: detect.Set(detect.CreditCard),
			status: 403, rule: "credit_card_permanent", msg: cardMsg},
		{name: "card beside an email", manifest: honeypot, found: detect.Set(detect.CreditCard) | detect.Set(detect.Email),
			status: 403, rule: "credit_card_permanent", msg: cardMsg},
		{name: "ssn to a permanent store", manifest: honeypot, found: detect.Set(detect.SSN), status: 403, rule: "ssn_non_ephemeral",
			msg: "Privacy Violation: Agent 'honeypot-agent' retains data beyond session lifetime and request contains SSN. Request blocked for security."},
		{name: "nothing sensitive: warnings left for Override", manifest: honeypot, outcome: policy.Warn, warnings: 5},
		{name: "email alone never blocks", manifest: honeypot, found: detect.Set(detect.Email), outcome: policy.Warn, warnings: 5},
		{name: "card to an ephemeral store", manifest: bank, found: detect.Set(detect.CreditCard), outcome: policy.Allow},
		{name: "operator block rule", manifest: bank, value: map[string]any{"task": "delete"},
			rules:  []policy.Rule{{Name: "no-deletes", When: `request.body.task == "delete"`, Decision: "block", Reason: "no deletes"}},
			status: 403, rule: "no-deletes", msg: "Policy violation: no deletes"},
		{name: "operator warn rule", manifest: bank, value: map[string]any{"n": json.Number("1e400")},
			rules:   []policy.Rule{{Name: "big-n", When: `request.body.n > 5`, Decision: "warn", Reason: "n is big"}},
			outcome: policy.Warn, warnings: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := baseExchange()
			x.Found, x.Value = tt.found, tt.value
			r := Decide{Engine: newEngine(t, tt.rules...), Direction: policy.Ingress, Manifest: tt.manifest}.Run(context.Background(), x)
			if x.TargetID != tt.manifest.AgentID() || x.Target.Manifest != tt.manifest {
				t.Errorf("target %q", x.TargetID)
			}
			if tt.status == 0 {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
				if x.Decision.Outcome != tt.outcome || len(x.Decision.Warnings) != tt.warnings {
					t.Errorf("decision %+v, want %v with %d warnings", x.Decision, tt.outcome, tt.warnings)
				}
				return
			}
			if r == nil || r.Status != tt.status || r.Reason != Blocked || r.Msg != tt.msg || r.Kind != recorder.KindBlocked || r.Decision != "block" {
				t.Fatalf("refusal %+v; want %d %q", r, tt.status, tt.msg)
			}
			if r.Fields["blocked"] != true || r.Fields["blocked_by"] != tt.rule {
				t.Errorf("fields %v, want blocked_by %s", r.Fields, tt.rule)
			}
			if len(r.Reasons) != 2 || r.Reasons[0] != tt.rule {
				t.Errorf("reasons %q", r.Reasons)
			}
		})
	}
	t.Run("no target", func(t *testing.T) {
		x := baseExchange()
		r := Decide{Engine: newEngine(t), Direction: policy.Egress}.Run(context.Background(), x)
		if r == nil || r.Status != 500 || r.Reason != PolicyError || r.Msg != "policy evaluation failed" || r.Cause == nil {
			t.Errorf("refusal %+v", r)
		}
	})
}

func TestOverride(t *testing.T) {
	honeypot := loadManifest(t, "untrusted_honeypot.json")
	reviewer := loadManifest(t, "reviewer_agent.json")
	tests := []struct {
		name        string
		manifest    *manifest.Manifest
		token       string // the sidecar's token
		presented   string // X-User-Override; "" means none
		header      string // the header's name; "" means wire.Override
		status      int
		msg         string
		overridden  bool
		quarantined bool
	}{
		{name: "no token presented", manifest: honeypot, token: overrideSecret, status: 449,
			msg: "This request requires user confirmation. To proceed, retry with the header 'X-User-Override: <override token>'"},
		{name: "wrong token", manifest: honeypot, token: overrideSecret, presented: overrideSecret + "x", status: 449,
			msg: "The X-User-Override header did not match this sidecar's override token."},
		{name: "true is not a token", manifest: honeypot, token: overrideSecret, presented: "true", status: 449,
			msg: "did not match"},
		{name: "overrides disabled", manifest: honeypot, presented: overrideSecret, status: 449,
			msg: "overrides are disabled on this sidecar"},
		{name: "right token, quarantined", manifest: honeypot, token: overrideSecret, presented: " " + overrideSecret + " ",
			overridden: true, quarantined: true},
		{name: "right token, underscore spelling", manifest: honeypot, token: overrideSecret, presented: overrideSecret, header: "X_User_Override",
			overridden: true, quarantined: true},
		{name: "right token, not quarantined", manifest: reviewer, token: overrideSecret, presented: overrideSecret, overridden: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLog(t)
			p := newPipe(l)
			x := baseExchange()
			x.TraceID = "trace-1"
			if tt.presented != "" {
				name := tt.header
				if name == "" {
					name = wire.Override
				}
				x.Header = append(x.Header, Field{name, tt.presented})
			}
			if r := run(p, Decide{Engine: newEngine(t), Manifest: tt.manifest}, x); r != nil || x.Decision.Outcome != policy.Warn {
				t.Fatalf("decision %+v %v", x.Decision, r)
			}
			var sessions []string
			o := Override{Token: testToken{tt.token}, Clock: func() time.Time { return epoch },
				Quarantine: func(traceID, warning string, now time.Time) string {
					sessions = append(sessions, traceID+"|"+warning+"|"+now.String())
					return "session-1"
				}}
			r := run(p, o, x)
			recs := records(t, l, "trace-1")
			if tt.status != 0 {
				if r == nil || r.Status != tt.status || r.Reason != Warned || r.Msg != "Request requires user confirmation" ||
					!strings.Contains(r.Fields["message"].(string), tt.msg) || r.Kind != recorder.KindWarning || r.Decision != "warn" {
					t.Fatalf("refusal %+v; want %d with %q", r, tt.status, tt.msg)
				}
				if r.Fields["requires_override"] != true || r.Fields["trust_score"] != x.Decision.TrustScore ||
					r.Fields["warning"] != x.Decision.WarningText() || !strings.HasPrefix(x.Decision.WarningText(), "⚠️  WARNING:\n  • ") {
					t.Errorf("fields %v", r.Fields)
				}
				if len(recs) != 0 || len(sessions) != 0 || x.Overridden {
					t.Errorf("a warned request was recorded as overridden (%d records, %d sessions)", len(recs), len(sessions))
				}
				return
			}
			if r != nil {
				t.Fatalf("refused: %v", r)
			}
			if x.Overridden != tt.overridden || x.Quarantined != tt.quarantined {
				t.Errorf("overridden %v quarantined %v", x.Overridden, x.Quarantined)
			}
			if kinds(recs) != "user_override" || recs[0].Decision != "warn" || len(recs[0].Reasons) != len(x.Decision.Warnings) {
				t.Fatalf("records %+v", recs)
			}
			if tt.quarantined {
				want := "trace-1|" + x.Decision.WarningText() + "|" + epoch.String()
				if len(sessions) != 1 || sessions[0] != want || string(recs[0].Details) != `{"quarantine_session":"session-1"}` {
					t.Errorf("sessions %q details %s", sessions, recs[0].Details)
				}
			} else if len(sessions) != 0 || recs[0].Details != nil {
				t.Errorf("a call that is not quarantined got a session: %q %s", sessions, recs[0].Details)
			}
		})
	}
	t.Run("allowed: nothing to override", func(t *testing.T) {
		l := newLog(t)
		x := baseExchange()
		x.TraceID = "trace-1"
		x.Decision = policy.Decision{Outcome: policy.Allow, Quarantine: true}
		if r := run(newPipe(l), Override{Token: testToken{overrideSecret}}, x); r != nil || x.Overridden || !x.Quarantined {
			t.Errorf("refusal %v overridden %v quarantined %v", r, x.Overridden, x.Quarantined)
		}
		if recs := records(t, l, "trace-1"); len(recs) != 0 {
			t.Errorf("records %+v", recs)
		}
	})
}

// failingRecorder wraps a real log and fails the records fail selects: the
// pipeline's Recorder interface, to reach a failure a real disk gives
// rarely.
type failingRecorder struct {
	*recorder.Log
	fail func(r *recorder.Record) bool
}

func (f failingRecorder) Append(ctx context.Context, r *recorder.Record) (uint64, error) {
	if f.fail(r) {
		return 0, errors.New("disk full")
	}
	return f.Log.Append(ctx, r)
}

func TestRecordRequest(t *testing.T) {
	t.Run("recorded", func(t *testing.T) {
		for _, outcome := range []policy.Outcome{policy.Allow, policy.Warn} {
			l := newLog(t)
			x := baseExchange()
			x.TraceID = "trace-1"
			x.Payload = []byte(`{"c":"[CREDIT_CARD_REDACTED]"}`)
			x.RecordedPath, x.RecordedQuery = "/proxy/a", "q=1"
			x.Found, x.Where = detect.Set(detect.CreditCard), []string{"body"}
			x.Decision = policy.Decision{Outcome: outcome, Warnings: []string{"w1"}}
			x.Caller = policy.Caller{AgentID: "caller-a", Authenticated: true}
			if r := run(newPipe(l), RecordRequest{}, x); r != nil {
				t.Fatal(r)
			}
			recs := records(t, l, "trace-1")
			if kinds(recs) != "request" {
				t.Fatalf("records %+v", recs)
			}
			rec := recs[0]
			want := map[policy.Outcome]string{policy.Allow: "allow", policy.Warn: "warn"}[outcome]
			if rec.Decision != want || string(rec.Payload) != string(x.Payload) || rec.AgentID != "test-agent" ||
				rec.CallerID != "caller-a" || !rec.Authenticated {
				t.Errorf("record %+v", rec)
			}
			if string(rec.Details) != `{"method":"POST","path":"/proxy/a","query":"q=1","sensitive":["credit_card"],"found_in":["body"]}` {
				t.Errorf("details %s", rec.Details)
			}
		}
	})
	t.Run("closed recorder", func(t *testing.T) {
		l := newLog(t)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		var failed []recorder.Kind
		p := New(Config{Recorder: l, OnRecordError: func(r *recorder.Record, err error) { failed = append(failed, r.Kind) }})
		x := baseExchange()
		x.TraceID = "trace-1"
		r := run(p, RecordRequest{}, x)
		if r == nil || r.Status != 500 || r.Reason != RecordFailed || !r.Unrecorded || !errors.Is(r, recorder.ErrClosed) ||
			r.Msg != "the flight recorder cannot record this request, so it was not forwarded" {
			t.Fatalf("refusal %+v", r)
		}
		if len(failed) != 1 || failed[0] != recorder.KindRequest {
			t.Errorf("OnRecordError saw %v", failed)
		}
	})
	t.Run("failure stops the pipeline before forward", func(t *testing.T) {
		l := newLog(t)
		fr := failingRecorder{l, func(r *recorder.Record) bool { return r.Kind == recorder.KindRequest }}
		sent := 0
		p := newPipe(fr, Headers{NewTraceID: NewTraceID}, RecordRequest{}, Forward{Sender: sendFunc(func(context.Context, *Exchange) (*Answer, *Refusal) {
			sent++
			return &Answer{Status: 200}, nil
		})})
		a := p.Serve(context.Background(), baseExchange())
		if a.Status != 500 || sent != 0 {
			t.Errorf("status %d, sent %d times", a.Status, sent)
		}
		if recs := records(t, l, "trace-1"); len(recs) != 0 {
			t.Errorf("records %+v", recs)
		}
	})
}
