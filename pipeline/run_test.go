package pipeline

import (
	"context"
	"crypto/ed25519"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// TestIngressOrder pins the order of the ingress checks: the protocol
// makes it observable (PROTOCOL §3, §5, §7). Changing it is a protocol
// change, and this list changes with it.
func TestIngressOrder(t *testing.T) {
	p := New(Config{Recorder: newLog(t)}, IngressChecks(IngressConfig{})...)
	want := []string{"headers", "route", "body", "identify", "rate_limit", "parse", "detect", "policy", "override", "record", "forward"}
	if got := p.Names(); !slices.Equal(got, want) {
		t.Errorf("ingress checks\n got %q\nwant %q", got, want)
	}
}

// observer counts Observe calls per trace id.
type observer struct {
	mu    sync.Mutex
	calls map[string][]Reason
}

func (o *observer) Observe(x *Exchange, r *Refusal) {
	o.mu.Lock()
	defer o.mu.Unlock()
	reason := Forwarded
	if r != nil {
		reason = r.Reason
	}
	o.calls[x.TraceID] = append(o.calls[x.TraceID], reason)
}

// ingress is a real ingress pipeline in front of a Sender, with operator
// rules that block or warn on the task, a caller key, and a limiter that
// refuses one address.
type ingress struct {
	p      *Pipeline
	log    *recorder.Log
	obs    *observer
	signer *signer
	sent   atomic.Int32
}

func newIngress(t *testing.T) *ingress {
	t.Helper()
	in := &ingress{log: newLog(t), obs: &observer{calls: map[string][]Reason{}}, signer: newSigner(t, "caller-a")}
	v, err := identity.NewCallerVerifier(identity.CallerVerifierConfig{
		TrustedAgents: map[string]ed25519.PublicKey{"caller-a": in.signer.key.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	failing := failingRecorder{in.log, func(r *recorder.Record) bool { return r.TraceID == "no-disk" && r.Kind == recorder.KindRequest }}
	checks := IngressChecks(IngressConfig{
		AgentURL:     "http://agent.test",
		Manifest:     loadManifest(t, "secure_bank.json"),
		MaxBodyBytes: 1024,
		Identify:     Identify{Verifier: v, Clock: time.Now},
		RateLimit:    RateLimit{Limiter: limitOne("ip:10.9.9.9"), PerMinute: 60, Clock: time.Now},
		Parse:        Parse{MaxDepth: 8, MaxRecordPayload: 4096, Value: true},
		Engine: newEngine(t,
			policy.Rule{Name: "no-deletes", When: `has(request.body.task) && request.body.task == "delete"`, Decision: "block", Reason: "no deletes"},
			policy.Rule{Name: "careful", When: `has(request.body.task) && request.body.task == "careful"`, Decision: "warn", Reason: "careful"}),
		Override: Override{Token: testToken{overrideSecret}, Clock: time.Now},
		Forward: Forward{MaxRecord: 1024, MaxJSONDepth: 8, Sender: sendFunc(func(_ context.Context, x *Exchange) (*Answer, *Refusal) {
			in.sent.Add(1)
			if x.Sub == "/down" {
				return nil, &Refusal{Status: 502, Reason: Upstream, Msg: "Backend agent error: down"}
			}
			return &Answer{Status: 200, Header: Fields{{"Content-Type", "application/json"}}, Body: []byte(`{"ok":true}`), Length: -1}, nil
		})},
		NewTraceID: NewTraceID,
	})
	in.p = New(Config{Recorder: failing, AgentID: "secure-bank-agent", Observer: in.obs}, checks...)
	return in
}

// limitOne refuses its key and lets every other through.
type limitOne string

func (l limitOne) Allow(key string, _ time.Time) (bool, int) { return key != string(l), 7 }

// TestRefusalAtEachPosition refuses an exchange at each check in turn: the
// answer has the check's status, the refusal is recorded exactly once with
// the right kind, nothing is sent after a refusal, and the observer hears
// of the exchange once.
func TestRefusalAtEachPosition(t *testing.T) {
	tests := []struct {
		check  string
		edit   func(t *testing.T, in *ingress, x *Exchange) *Exchange
		status int
		kinds  string // the trace's records, in order
		sent   int32
	}{
		{"headers", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange {
			x.Header = append(x.Header, Field{"X-Forwarded-For", "a"}, Field{"x_forwarded_for", "b"})
			return x
		}, 400, "error", 0},
		{"route", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange { x.Method = "GET"; return x }, 405, "error", 0},
		{"route, path", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange { x.Path = "/proxy/..;/x"; return x }, 400, "error", 0},
		{"body", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange { x.BodyErr = ErrBodyTooLarge; return x }, 413, "error", 0},
		{"identify", func(t *testing.T, in *ingress, _ *Exchange) *Exchange {
			x := in.signer.signed(t)
			x.Body = []byte(`{"task":"tampered"}`)
			return x
		}, 401, "blocked", 0},
		{"rate_limit", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange { x.Peer = "10.9.9.9"; return x }, 429, "blocked", 0},
		{"parse", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange { x.Body = []byte(`{"task":`); return x }, 400, "error", 0},
		{"policy", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange { x.Body = []byte(`{"task":"delete"}`); return x }, 403, "blocked", 0},
		{"override", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange { x.Body = []byte(`{"task":"careful"}`); return x }, 449, "warning", 0},
		{"record", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange {
			x.Header = Fields{{wire.TraceID, "no-disk"}}
			return x
		}, 500, "", 0},
		{"forward", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange { x.Path = "/proxy/down"; return x }, 502, "request,error", 1},
		{"none: forwarded", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange { return x }, 200, "request,response", 1},
		{"none: overridden", func(_ *testing.T, _ *ingress, x *Exchange) *Exchange {
			x.Body = []byte(`{"task":"careful"}`)
			x.Header = append(x.Header, Field{wire.Override, overrideSecret})
			return x
		}, 200, "user_override,request,response", 1},
		{"none: signed", func(t *testing.T, in *ingress, _ *Exchange) *Exchange { return in.signer.signed(t) }, 200, "request,response", 1},
	}
	for _, tt := range tests {
		t.Run(tt.check, func(t *testing.T) {
			in := newIngress(t)
			x := tt.edit(t, in, baseExchange())
			a := in.p.Serve(context.Background(), x)
			id := a.Header.Get(wire.TraceID)
			if a.Status != tt.status || id == "" || id != x.TraceID {
				t.Fatalf("status %d trace id %q: %s", a.Status, id, a.Body)
			}
			recs := records(t, in.log, id)
			if kinds(recs) != tt.kinds {
				t.Errorf("records %q, want %q", kinds(recs), tt.kinds)
			}
			if tt.status >= 400 && len(recs) > 0 {
				last := recs[len(recs)-1]
				if last.Status != tt.status || last.AgentID != "secure-bank-agent" {
					t.Errorf("refusal record: status %d agent %q", last.Status, last.AgentID)
				}
				if !strings.Contains(string(last.Details), `"outcome":"`+string(x.Outcome)+`"`) && tt.check != "forward" {
					t.Errorf("details %s lack the outcome %s", last.Details, x.Outcome)
				}
			}
			if n := in.sent.Load(); n != tt.sent {
				t.Errorf("sent %d times, want %d", n, tt.sent)
			}
			if calls := in.obs.calls[id]; len(calls) != 1 || calls[0] != x.Outcome {
				t.Errorf("observer calls %v, outcome %s", calls, x.Outcome)
			}
			if len(in.obs.calls) != 1 {
				t.Errorf("observer heard of %d exchanges", len(in.obs.calls))
			}
		})
	}
}

// TestPanickingCheck checks a panic in a check is recorded as a 500,
// observed, and then goes on up to the front's handler.
func TestPanickingCheck(t *testing.T) {
	l := newLog(t)
	obs := &observer{calls: map[string][]Reason{}}
	p := New(Config{Recorder: l, Observer: obs}, Headers{NewTraceID: NewTraceID},
		CheckFunc("boom", func(context.Context, *Exchange) *Refusal { panic("bug " + card) }))
	x := baseExchange()
	func() {
		defer func() {
			if v := recover(); v != "bug "+card {
				t.Errorf("recovered %v, want the check's panic", v)
			}
		}()
		p.Serve(context.Background(), x)
		t.Error("Serve returned")
	}()
	recs := records(t, l, "trace-1")
	if kinds(recs) != "error" || recs[0].Status != 500 ||
		!slices.Equal(recs[0].Reasons, []string{"internal error; the sidecar's log has the details under this trace id"}) {
		t.Errorf("records %+v", recs)
	}
	if s := leak(jsonOf(t, recs), card); s != "" {
		t.Errorf("the record quotes the panic: %s", jsonOf(t, recs))
	}
	if c := obs.calls["trace-1"]; !slices.Equal(c, []Reason{Internal}) {
		t.Errorf("observer %v", c)
	}
}

// TestStages checks each check's duration lands at its index, and checks
// that did not run stay at zero.
func TestStages(t *testing.T) {
	nap := func(name string, refuse bool) Check {
		return CheckFunc(name, func(context.Context, *Exchange) *Refusal {
			time.Sleep(2 * time.Millisecond)
			if refuse {
				return Refuse(400, BadBody, "no")
			}
			return nil
		})
	}
	l := newLog(t)
	p := newPipe(l, nap("a", false), CheckFunc("fast", func(context.Context, *Exchange) *Refusal { return nil }), nap("c", true), nap("d", false))
	x := baseExchange()
	// The exchange ran a longer pipeline before, as a pooled one may have:
	// its stages are reused, and must start from zero.
	newPipe(l, nap("1", false), nap("2", false), nap("3", false), nap("4", false), nap("5", false)).Serve(context.Background(), x)
	x.Stages = x.Stages[:0]
	p.Serve(context.Background(), x)
	if len(x.Stages) != 4 {
		t.Fatalf("stages %v", x.Stages)
	}
	if x.Stages[0] < 2*time.Millisecond || x.Stages[2] < 2*time.Millisecond || x.Stages[1] >= 2*time.Millisecond || x.Stages[3] != 0 {
		t.Errorf("stages %v", x.Stages)
	}
}

// TestPipelineWithoutTerminalCheck answers 204 with a trace id.
func TestPipelineWithoutTerminalCheck(t *testing.T) {
	obs := &observer{calls: map[string][]Reason{}}
	p := New(Config{Recorder: newLog(t), Observer: obs})
	x := &Exchange{}
	a := p.Serve(context.Background(), x)
	if a.Status != 204 || a.Header.Get(wire.TraceID) == "" || x.Outcome != Forwarded {
		t.Errorf("answer %+v outcome %s", a, x.Outcome)
	}
	if len(obs.calls) != 1 {
		t.Errorf("observer %v", obs.calls)
	}
}

// TestRefuseRecords checks Refuse, for what a front cannot read, records
// like a refusal of a check.
func TestRefuseRecords(t *testing.T) {
	l := newLog(t)
	p := newPipe(l)
	x := &Exchange{Method: "POST", Path: "/proxy", TraceID: "t-413"}
	a := p.Refuse(context.Background(), x, TooLargeRefusal(10))
	if a.Status != 413 || a.Header.Get(wire.TraceID) != "t-413" {
		t.Errorf("answer %+v", a)
	}
	if recs := records(t, l, "t-413"); kinds(recs) != "error" || recs[0].Status != 413 {
		t.Errorf("records %+v", recs)
	}
}

// TestFinishStreams checks an exchange with a streamed answer is released
// once, after both the front (Finish) and the stream (Close) are done with
// it, whichever ends first; run with the race detector.
func TestFinishStreams(t *testing.T) {
	l := newLog(t)
	for i := range 200 {
		var frontDone, streamDone atomic.Bool
		var released atomic.Int32
		var early atomic.Bool
		src := newStream([]byte("data: " + strings.Repeat("x", 64)))
		p := newPipe(l, Forward{MaxRecord: 64, Sender: sendFunc(func(context.Context, *Exchange) (*Answer, *Refusal) {
			return &Answer{Status: 200, Stream: src, Length: -1, Release: func() {
				if !frontDone.Load() || !streamDone.Load() {
					early.Store(true)
				}
				released.Add(1)
			}}, nil
		})})
		x := Acquire()
		x.Method, x.Path, x.TraceID = "POST", "/proxy", "fin-"+strings.Repeat("a", i%3+1)
		a := p.Serve(context.Background(), x)
		if a.Stream == nil {
			t.Fatal("no stream")
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			buf := make([]byte, 7)
			for {
				if _, err := a.Stream.Read(buf); err != nil {
					break
				}
			}
			streamDone.Store(true)
			_ = a.Stream.Close()
		})
		wg.Go(func() {
			frontDone.Store(true)
			Finish(x)
		})
		wg.Wait()
		if n := released.Load(); n != 1 || early.Load() {
			t.Fatalf("iteration %d: released %d times (early %v)", i, n, early.Load())
		}
		if src.closed != 1 {
			t.Fatalf("iteration %d: agent stream closed %d times", i, src.closed)
		}
	}
}

// TestFinishWithoutStream releases at once.
func TestFinishWithoutStream(t *testing.T) {
	released := 0
	p := newPipe(newLog(t), Forward{MaxRecord: 64, Sender: sendFunc(func(context.Context, *Exchange) (*Answer, *Refusal) {
		return &Answer{Status: 200, Body: []byte("{}"), Release: func() { released++ }}, nil
	})})
	x := Acquire()
	x.Method, x.Path = "POST", "/proxy"
	p.Serve(context.Background(), x)
	Finish(x)
	if released != 1 {
		t.Errorf("released %d times", released)
	}
}
