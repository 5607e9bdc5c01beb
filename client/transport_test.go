package client_test

import (
	"bytes"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/sidecar"
)

// outcome is one call of Config.Outcome.
type outcome struct {
	target string
	status int
	failed bool
}

// outcomes collects Config.Outcome calls.
type outcomes struct {
	mu  sync.Mutex
	got []outcome
}

func (o *outcomes) hook(target string, status int, failed bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.got = append(o.got, outcome{target, status, failed})
}

func (o *outcomes) list() []outcome {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.got)
}

// TestTransportHandshake: http.Client{Transport: c.Transport()} is all an
// agent needs: the callee's sidecar authenticates the call as signed by
// the caller's attested key, and tells its agent so.
func TestTransportHandshake(t *testing.T) {
	for _, f := range []front{fastFront, httpFront} {
		t.Run(string(f), func(t *testing.T) {
			m := newMesh(t)
			b := startRemote(t, f, "secure_bank.json", m.attested(t))
			var seen outcomes
			c := m.newClient(t, func(cfg *client.Config) { cfg.Outcome = seen.hook })
			hc := &http.Client{Transport: c.Transport()}

			// The caller cannot speak for the sidecars: its X-IATP-* go nowhere.
			r := post(t, hc, b.url+"/proxy", `{"task":"balance"}`, wire.TraceID, "ct-1",
				wire.CallerID, "admin-agent", wire.CallerAttested, "true", "X-IATP_Caller-ID", "admin-agent")
			if r.status != 200 || r.json["ok"] != true {
				t.Fatalf("A → B: %d %s", r.status, r.body)
			}
			calls := b.agent.received()
			if len(calls) != 1 {
				t.Fatalf("B's agent reached %d times", len(calls))
			}
			if got := calls[0].Values(wire.CallerID); !slices.Equal(got, []string{"coder-agent"}) {
				t.Errorf("B's agent: caller %q", got)
			}
			for name := range calls[0] {
				if strings.HasPrefix(strings.ToLower(name), "x-iatp_") {
					t.Errorf("B's agent got %s", name)
				}
			}
			if got := calls[0].Get(wire.CallerAttested); got != "true" {
				t.Errorf("B's agent: caller attested %q", got)
			}
			if got := calls[0].Get(wire.TraceID); got != "ct-1" {
				t.Errorf("B's agent: trace id %q", got)
			}
			// The answer carries the client's view of B: attested, 10.
			if got := r.header.Get(wire.TrustScore); got != "10" {
				t.Errorf("trust score of B: %q", got)
			}
			if got := r.header.Get(wire.TraceID); got != "ct-1" {
				t.Errorf("answer trace id %q", got)
			}
			if want := []outcome{{"secure-bank-agent", 200, false}}; !slices.Equal(seen.list(), want) {
				t.Errorf("Outcome calls %+v, want %+v", seen.list(), want)
			}
		})
	}
}

// TestTransportUnsignedClient: a client without a key calls as nobody in
// particular; a callee that requires authenticated callers refuses it.
func TestTransportUnsignedClient(t *testing.T) {
	m := newMesh(t)
	open := startRemote(t, httpFront, "secure_bank.json", m.attested(t))
	strict := startRemote(t, httpFront, "secure_bank.json", func(c *sidecar.Config) {
		m.attested(t)(c)
		c.RequireAuthenticatedCallers = true
	})
	c := m.newClient(t, func(cfg *client.Config) { cfg.Key, cfg.Attestation = identity.PrivateKey{}, nil })
	hc := &http.Client{Transport: c.Transport()}
	if r := post(t, hc, open.url+"/proxy", `{}`); r.status != 200 {
		t.Fatalf("unsigned to an open callee: %d %s", r.status, r.body)
	}
	if calls := open.agent.received(); len(calls) != 1 || calls[0].Get(wire.CallerID) != "" {
		t.Errorf("B's agent got caller %q", calls[0].Get(wire.CallerID))
	}
	if r := post(t, hc, strict.url+"/proxy", `{}`); r.status != 401 {
		t.Errorf("unsigned to a strict callee: %d %s", r.status, r.body)
	}
	if n := len(strict.agent.received()); n != 0 {
		t.Errorf("the strict callee's agent reached %d times", n)
	}
}

// TestTransportRefusals: a refused call never leaves the client: the
// Transport answers as a sidecar would, and the callee's agent is never
// reached.
func TestTransportRefusals(t *testing.T) {
	m := newMesh(t)
	honeypot := startRemote(t, httpFront, "untrusted_honeypot.json", m.attested(t))
	bank := startRemote(t, httpFront, "secure_bank.json", m.attested(t))
	var seen outcomes
	c := m.newClient(t, func(cfg *client.Config) {
		cfg.Outcome = seen.hook
		cfg.Targets = []client.TargetRule{rule("secure-bank-agent", "/proxy/refund", []string{"payments:refund"}, nil)}
	})
	hc := &http.Client{Transport: c.Transport()}
	for _, tc := range []struct {
		name, url, body string
		headers         []string
		status          int
		check           func(t *testing.T, r *decoded)
	}{
		{name: "card to a permanent-retention target", url: honeypot.url + "/proxy", body: `{"card":"` + card + `"}`, status: 403,
			check: func(t *testing.T, r *decoded) {
				if r.str("blocked_by") != policy.RuleCreditCardPermanent || r.json["blocked"] != true ||
					!strings.HasPrefix(r.str("error"), "Privacy Violation: Agent 'honeypot-agent' stores data permanently") {
					t.Errorf("%s", r.body)
				}
			}},
		{name: "the override never lifts a block", url: honeypot.url + "/proxy", body: `{"card":"` + card + `"}`,
			headers: []string{wire.Override, testOverride}, status: 403,
			check: func(t *testing.T, r *decoded) {
				if r.str("blocked_by") != policy.RuleCreditCardPermanent {
					t.Errorf("%s", r.body)
				}
			}},
		{name: "card in the query", url: honeypot.url + "/proxy?card=" + card, body: `{}`, status: 403,
			check: func(t *testing.T, r *decoded) {
				if r.str("blocked_by") != policy.RuleCreditCardPermanent {
					t.Errorf("%s", r.body)
				}
			}},
		{name: "warned target", url: honeypot.url + "/proxy", body: `{"task":"x"}`, status: 449,
			check: func(t *testing.T, r *decoded) {
				if !strings.Contains(r.str("warning"), "Low trust score (0/10) for agent 'honeypot-agent'") || r.json["requires_override"] != true {
					t.Errorf("%s", r.body)
				}
				if target, _ := r.json["target"].(map[string]any); target["agent_id"] != "honeypot-agent" || target["proven"] != "attested" {
					t.Errorf("target %v", r.json["target"])
				}
			}},
		{name: "warned target, wrong override", url: honeypot.url + "/proxy", body: `{}`, headers: []string{wire.Override, "not-the-override-token"},
			status: 449, check: func(t *testing.T, r *decoded) {
				if !strings.Contains(r.str("message"), "did not match") {
					t.Errorf("%s", r.body)
				}
			}},
		{name: "X-User-Override: true never works", url: honeypot.url + "/proxy", body: `{}`, headers: []string{wire.Override, "true"}, status: 449},
		{name: "missing scope", url: bank.url + "/proxy/refund", body: `{}`, status: 403,
			check: func(t *testing.T, r *decoded) {
				if r.str("blocked_by") != policy.RuleMissingScope || r.str("error") != "Agent missing required scopes: payments:refund" {
					t.Errorf("%s", r.body)
				}
			}},
		{name: "not a target URL", url: "ftp://bank.example/x", body: `{}`, status: 400},
		{name: "user information in the URL", url: strings.Replace(bank.url, "://", "://u:p@", 1) + "/proxy", body: `{}`, status: 400},
		{name: "a path with ..", url: bank.url + "/proxy/a/%2e%2e/b", body: `{}`, status: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := post(t, hc, tc.url, tc.body, tc.headers...)
			if r.status != tc.status {
				t.Fatalf("%d %s, want %d", r.status, r.body, tc.status)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
			if r.header.Get(wire.TraceID) == "" || r.str("trace_id") != r.header.Get(wire.TraceID) {
				t.Errorf("trace id %q in the header, %q in the body", r.header.Get(wire.TraceID), r.str("trace_id"))
			}
		})
	}
	if n := len(honeypot.agent.received()); n != 0 {
		t.Errorf("the honeypot's agent was reached %d times", n)
	}
	if n := len(bank.agent.received()); n != 0 {
		t.Errorf("the bank's agent was reached %d times", n)
	}
	// Refusals before the call are the client's own decisions, not
	// outcomes of calls to the target.
	for _, o := range seen.list() {
		t.Errorf("Outcome called for a call never made: %+v", o)
	}
}

// TestTransportOverride: a call the client warns about goes through with
// the override token, and only with it.
func TestTransportOverride(t *testing.T) {
	m := newMesh(t)
	// B scores itself 8 and does not warn; this client warns below 9.
	b := startRemote(t, httpFront, "standard_agent.json", m.attested(t))
	warnBelow := 9
	var seen outcomes
	c := m.newClient(t, func(cfg *client.Config) {
		cfg.Policy.WarnBelow = &warnBelow
		cfg.Outcome = seen.hook
	})
	hc := &http.Client{Transport: c.Transport()}
	r := post(t, hc, b.url+"/proxy", `{"task":"x"}`)
	if r.status != 449 || !strings.Contains(r.str("warning"), "Low trust score (8/10) for agent 'standard-agent'") {
		t.Fatalf("without the override: %d %s", r.status, r.body)
	}
	if n := len(b.agent.received()); n != 0 {
		t.Fatalf("B's agent reached %d times before the override", n)
	}
	r = post(t, hc, b.url+"/proxy", `{"task":"x"}`, wire.Override, "  "+testOverride+" ")
	if r.status != 200 || r.json["ok"] != true {
		t.Fatalf("with the override: %d %s", r.status, r.body)
	}
	calls := b.agent.received()
	if len(calls) != 1 || calls[0].Get(wire.CallerID) != "coder-agent" {
		t.Fatalf("B's agent got %v", calls)
	}
	if got := calls[0].Get(wire.Override); got != "" {
		t.Errorf("the override token left the client: %q", got)
	}
	if want := []outcome{{"standard-agent", 200, false}}; !slices.Equal(seen.list(), want) {
		t.Errorf("Outcome calls %+v, want %+v", seen.list(), want)
	}

	// A client without a (strong) override token cannot be overridden.
	weak := m.newClient(t, func(cfg *client.Config) {
		cfg.Policy.WarnBelow = &warnBelow
		cfg.OverrideToken = "password"
	})
	r = post(t, &http.Client{Transport: weak.Transport()}, b.url+"/proxy", `{}`, wire.Override, "password")
	if r.status != 449 || !strings.Contains(r.str("message"), "overrides are disabled") {
		t.Errorf("weak token: %d %s", r.status, r.body)
	}
}

// TestTransportHTTPS: in process, https:// targets are inspected like
// http:// ones: the body is seen before TLS.
func TestTransportHTTPS(t *testing.T) {
	m := newMesh(t)
	bank := startRemote(t, tlsFront, "secure_bank.json", m.attested(t))
	honeypot := startRemote(t, tlsFront, "untrusted_honeypot.json", m.attested(t))
	trusting := func(r *remote) *http.Transport {
		tr := r.tls.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.RootCAs.AddCert(honeypot.tls.Certificate())
		return tr
	}
	base := trusting(bank)
	var seen outcomes
	c := m.newClient(t, func(cfg *client.Config) {
		cfg.Base = base
		cfg.Discovery.HTTPClient = &http.Client{Transport: base, Timeout: 5 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		cfg.Outcome = seen.hook
	})
	hc := &http.Client{Transport: c.Transport()}
	if !strings.HasPrefix(bank.url, "https://") {
		t.Fatalf("bank at %s", bank.url)
	}
	r := post(t, hc, bank.url+"/proxy", `{"task":"balance"}`)
	if r.status != 200 || r.header.Get(wire.TrustScore) != "10" {
		t.Fatalf("https bank: %d %s", r.status, r.body)
	}
	if calls := bank.agent.received(); len(calls) != 1 || calls[0].Get(wire.CallerAttested) != "true" {
		t.Fatalf("B's agent got %v", calls)
	}
	r = post(t, hc, honeypot.url+"/proxy", `{"card":"`+card+`"}`)
	if r.status != 403 || r.str("blocked_by") != policy.RuleCreditCardPermanent {
		t.Fatalf("https honeypot: %d %s", r.status, r.body)
	}
	if n := len(honeypot.agent.received()); n != 0 {
		t.Errorf("the honeypot's agent reached %d times", n)
	}
	if want := []outcome{{"secure-bank-agent", 200, false}}; !slices.Equal(seen.list(), want) {
		t.Errorf("Outcome calls %+v, want %+v", seen.list(), want)
	}
}

// TestTransportOutcomeOfFailures: the Outcome hook learns of calls that
// were made and failed, by the target's id.
func TestTransportOutcomeOfFailures(t *testing.T) {
	m := newMesh(t)
	b := startRemote(t, httpFront, "secure_bank.json", m.attested(t))
	var seen outcomes
	c := m.newClient(t, func(cfg *client.Config) { cfg.Outcome = seen.hook })
	hc := &http.Client{Transport: c.Transport()}
	if r := post(t, hc, b.url+"/proxy", `{}`); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	b.agent.srv.Close() // B's agent goes away: B's sidecar answers 502
	if r := post(t, hc, b.url+"/proxy", `{}`); r.status != 502 {
		t.Fatalf("agent gone: %d %s", r.status, r.body)
	}
	want := []outcome{{"secure-bank-agent", 200, false}, {"secure-bank-agent", 502, true}}
	if !slices.Equal(seen.list(), want) {
		t.Errorf("Outcome calls %+v, want %+v", seen.list(), want)
	}
}

// TestTransportStreamsLargeAnswers: an answer larger than the client
// buffers is relayed as it comes — the caller reads its start before the
// agent has sent its end — whole, and its outcome is known once it has
// been read.
func TestTransportStreamsLargeAnswers(t *testing.T) {
	m := newMesh(t)
	b := startRemote(t, httpFront, "secure_bank.json", m.attested(t))
	var seen outcomes
	c := m.newClient(t, func(cfg *client.Config) { cfg.Outcome = seen.hook })
	req, err := http.NewRequest(http.MethodPost, b.url+"/proxy/big", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: c.Transport()}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if b.agent.finished.Load() {
		t.Fatal("the answer was read whole before it was relayed")
	}
	start := make([]byte, bigAnswer/4)
	if _, err := io.ReadFull(resp.Body, start); err != nil {
		t.Fatal(err)
	}
	close(b.agent.more)
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body := append(start, rest...)
	if err := resp.Body.Close(); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || len(body) != bigAnswer+len(`{"ok":true,"data":""}`) || !bytes.HasSuffix(body, []byte(`x"}`)) {
		t.Fatalf("%d, %d bytes", resp.StatusCode, len(body))
	}
	if want := []outcome{{"secure-bank-agent", 200, false}}; !slices.Equal(seen.list(), want) {
		t.Errorf("Outcome calls %+v, want %+v", seen.list(), want)
	}
}

// TestTransportBodies: calls without a body go through; a body over
// MaxBodyBytes does not leave.
func TestTransportBodies(t *testing.T) {
	m := newMesh(t)
	b := startRemote(t, httpFront, "secure_bank.json", m.attested(t))
	c := m.newClient(t, func(cfg *client.Config) { cfg.MaxBodyBytes = 1 << 10 })
	hc := &http.Client{Transport: c.Transport()}
	req, err := http.NewRequest(http.MethodGet, b.url+"/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := send(t, hc, req); r.status != 200 || r.str("agent_id") != "secure-bank-agent" {
		t.Errorf("GET without a body: %d %s", r.status, r.body)
	}
	if r := post(t, hc, b.url+"/proxy", `{"pad":"`+strings.Repeat("x", 1<<10)+`"}`); r.status != 413 {
		t.Errorf("body over the limit: %d %s", r.status, r.body)
	}
	if r := post(t, hc, b.url+"/proxy", `{"pad":"`+strings.Repeat("x", 1000)+`"}`); r.status != 200 {
		t.Errorf("body under the limit: %d %s", r.status, r.body)
	}
	if n := len(b.agent.received()); n != 1 {
		t.Errorf("B's agent reached %d times, want 1", n)
	}
}

// TestTransportConcurrent: one Transport serves many calls at once (run
// with -race: exchanges are pooled).
func TestTransportConcurrent(t *testing.T) {
	m := newMesh(t)
	bank := startRemote(t, httpFront, "secure_bank.json", m.attested(t))
	honeypot := startRemote(t, httpFront, "untrusted_honeypot.json", m.attested(t))
	var seen outcomes
	c := m.newClient(t, func(cfg *client.Config) { cfg.Outcome = seen.hook })
	hc := &http.Client{Transport: c.Transport()}
	const workers, calls = 8, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				if w%2 == 0 {
					if r := post(t, hc, bank.url+"/proxy", `{"n":`+strconv.Itoa(i)+`}`); r.status != 200 || r.json["ok"] != true {
						t.Errorf("bank: %d %s", r.status, r.body)
					}
				} else {
					if r := post(t, hc, honeypot.url+"/proxy", `{"card":"`+card+`"}`); r.status != 403 || r.str("blocked_by") != policy.RuleCreditCardPermanent {
						t.Errorf("honeypot: %d %s", r.status, r.body)
					}
				}
			}
		})
	}
	wg.Wait()
	if n := len(bank.agent.received()); n != workers/2*calls {
		t.Errorf("the bank's agent reached %d times, want %d", n, workers/2*calls)
	}
	if n := len(honeypot.agent.received()); n != 0 {
		t.Errorf("the honeypot's agent reached %d times", n)
	}
	if n := len(seen.list()); n != workers/2*calls {
		t.Errorf("%d outcomes, want %d", n, workers/2*calls)
	}
}

// TestTransportDefaultPortBehindPublicURL: a callee whose sidecar names
// its public URL without a port (https://bank.example.com, as its docs
// suggest) must accept a caller that addresses it at that URL.
func TestTransportDefaultPortBehindPublicURL(t *testing.T) {
	m := newMesh(t)
	b := startRemote(t, httpFront, "secure_bank.json", func(c *sidecar.Config) {
		m.attested(t)(c)
		c.PublicURL = "http://bank.example"
	})
	rt := redirectAll(strings.TrimPrefix(b.url, "http://"))
	c := m.newClient(t, func(cfg *client.Config) {
		cfg.Base = rt.Transport
		cfg.Discovery.HTTPClient = rt
	})
	if r := post(t, &http.Client{Transport: c.Transport()}, "http://bank.example/proxy", `{}`); r.status != 200 {
		t.Errorf("%d %s", r.status, r.body)
	}
}
