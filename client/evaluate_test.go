package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// countingRecorder counts the records of a client, by kind.
type countingRecorder struct {
	mu    sync.Mutex
	kinds []recorder.Kind
}

func (r *countingRecorder) Append(_ context.Context, rec *recorder.Record) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kinds = append(r.kinds, rec.Kind)
	return uint64(len(r.kinds)), nil
}

func (r *countingRecorder) list() []recorder.Kind {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.kinds)
}

// TestEvaluate: the handshake up to the decision — decision, score, what
// the target proved, warnings, sensitive data — for a partner, a honeypot
// and a target that does not answer; nothing is sent or recorded. The
// decisions, as JSON, are golden files (the output of iatp handshake).
func TestEvaluate(t *testing.T) {
	m := newMesh(t)
	bank := startRemote(t, httpFront, "secure_bank.json", m.attested(t))
	honeypot := startRemote(t, httpFront, "untrusted_honeypot.json", m.attested(t))
	hanging, _ := hangingListener(t)
	rec := &countingRecorder{}
	c := m.newClient(t, func(cfg *client.Config) {
		cfg.Recorder = rec
		cfg.Discovery.FetchTimeout = 200 * time.Millisecond
	})
	for _, tc := range []struct {
		name   string
		req    client.Request
		want   client.Decision
		golden string
	}{
		{"bank", client.Request{URL: bank.url + "/proxy", Body: []byte(`{"task":"balance","notify":"alice@example.com"}`)},
			client.Decision{Outcome: policy.Allow, Decision: "allow", TrustScore: 10, Sensitive: []string{"email"},
				Target: "secure-bank-agent", Proven: "attested"}, "bank.json"},
		{"honeypot, card", client.Request{URL: honeypot.url + "/proxy", Body: []byte(`{"card":"` + card + `"}`)},
			client.Decision{Outcome: policy.Block, Decision: "block", Rule: policy.RuleCreditCardPermanent,
				Reason:     "Privacy Violation: Agent 'honeypot-agent' stores data permanently and request contains credit card information. Request blocked for security.",
				TrustScore: 0, Status: 403, Sensitive: []string{"credit_card"}, Target: "honeypot-agent", Proven: "attested"}, "honeypot_card.json"},
		{"honeypot, card in a header", client.Request{Method: http.MethodGet, URL: honeypot.url + "/proxy",
			Header: http.Header{"X-Note": {"pay with " + card}}},
			client.Decision{Outcome: policy.Block, Decision: "block", Rule: policy.RuleCreditCardPermanent,
				Reason:     "Privacy Violation: Agent 'honeypot-agent' stores data permanently and request contains credit card information. Request blocked for security.",
				TrustScore: 0, Status: 403, Sensitive: []string{"credit_card"}, Target: "honeypot-agent", Proven: "attested"}, ""},
		{"honeypot", client.Request{URL: honeypot.url + "/proxy", Body: []byte(`{"task":"x"}`)},
			client.Decision{Outcome: policy.Warn, Decision: "warn", TrustScore: 0, Status: 449, Target: "honeypot-agent", Proven: "attested",
				Warnings: []string{
					"Low trust score (0/10) for agent 'honeypot-agent'",
					"Agent 'honeypot-agent' does not support transaction reversal",
					"Agent 'honeypot-agent' may not handle duplicate requests safely",
					"Agent 'honeypot-agent' stores data indefinitely",
					"Agent 'honeypot-agent' may have humans review your data",
				}}, "honeypot.json"},
		{"no answer", client.Request{URL: "http://" + hanging + "/proxy", Body: []byte(`{"task":"x"}`)},
			client.Decision{Outcome: policy.Warn, Decision: "warn", TrustScore: 1, Status: 449, Target: hanging,
				Proven: "unreachable: no answer within 200ms",
				Warnings: []string{
					"Low trust score (1/10) for agent '" + hanging + "'",
					"Agent '" + hanging + "' does not support transaction reversal",
					"Agent '" + hanging + "' may not handle duplicate requests safely",
					"Agent '" + hanging + "' stores data indefinitely",
					"Agent '" + hanging + "' may have humans review your data",
				}}, "unreachable.json"},
		{"no answer, SSN", client.Request{URL: "http://" + hanging + "/proxy", Body: []byte(`{"ssn":"123-45-6789"}`)},
			client.Decision{Outcome: policy.Block, Decision: "block", Rule: policy.RuleSSNNonEphemeral,
				Reason:     "Privacy Violation: Agent '" + hanging + "' retains data beyond session lifetime and request contains SSN. Request blocked for security.",
				TrustScore: 1, Status: 403, Sensitive: []string{"ssn"}, Target: hanging, Proven: "unreachable: no answer within 200ms"}, ""},
		{"not a target", client.Request{URL: "ftp://bank.example/x", Body: []byte(`{}`)},
			client.Decision{Outcome: policy.Block, Decision: "block", Status: 400,
				Reason: "the egress proxy inspects plain http:// calls; ftp:// targets go through CONNECT, which this sidecar refuses unless egress.allow_connect is set"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Evaluate(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !decisionEqual(got, tc.want) {
				t.Errorf("Evaluate:\n got %+v\nwant %+v", got, tc.want)
			}
			if tc.golden != "" {
				b, err := json.MarshalIndent(got, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				golden(t, filepath.Join("evaluate", tc.golden), append(bytes.ReplaceAll(b, []byte(hanging), []byte("127.0.0.1:PORT")), '\n'))
			}
		})
	}
	if n := len(bank.agent.received()) + len(honeypot.agent.received()); n != 0 {
		t.Errorf("Evaluate reached an agent %d times", n)
	}
	if kinds := rec.list(); len(kinds) != 0 {
		t.Errorf("Evaluate recorded %v", kinds)
	}
	// The Transport does record: the same call, blocked, is one record.
	r := post(t, &http.Client{Transport: c.Transport()}, honeypot.url+"/proxy", `{"card":"`+card+`"}`)
	if r.status != 403 || !slices.Equal(rec.list(), []recorder.Kind{recorder.KindBlocked}) {
		t.Errorf("Transport: %d, records %v", r.status, rec.list())
	}
}

func decisionEqual(a, b client.Decision) bool {
	return a.Outcome == b.Outcome && a.Decision == b.Decision && a.Rule == b.Rule && a.Reason == b.Reason &&
		slices.Equal(a.Warnings, b.Warnings) && a.TrustScore == b.TrustScore && a.Status == b.Status &&
		slices.Equal(a.Sensitive, b.Sensitive) && a.Target == b.Target && a.Proven == b.Proven
}

// TestEvaluateDiscoversOnce: Evaluate and the Transport share the
// client's discoverer: one discovery serves both.
func TestEvaluateDiscoversOnce(t *testing.T) {
	m := newMesh(t)
	bank := startRemote(t, httpFront, "secure_bank.json", m.attested(t))
	c := m.newClient(t, nil)
	if _, err := c.Evaluate(context.Background(), client.Request{URL: bank.url + "/proxy", Body: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	tg, err := c.Discover(context.Background(), bank.url)
	if err != nil || tg.Proven != "attested" || c.Discoverer().Len() != 1 {
		t.Fatalf("Discover: %+v, %v, %d cached", tg, err, c.Discoverer().Len())
	}
	r := post(t, &http.Client{Transport: c.Transport()}, bank.url+"/proxy", `{}`)
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	if again, _ := c.Discover(context.Background(), bank.url); again != tg {
		t.Errorf("the Transport discovered the target again")
	}
	if !strings.HasPrefix(bank.url, "http://127.0.0.1:") {
		t.Fatalf("bank at %s", bank.url)
	}
}
