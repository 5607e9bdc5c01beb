package reputation

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

var t0 = time.Date(2026, 1, 25, 10, 0, 0, 0, time.UTC)

func newFakeClock() *fakeClock { return &fakeClock{t: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	keyCacheMu sync.Mutex
	keyCache   = map[string]identity.PrivateKey{}
)

// keyOf returns a deterministic key for an agent name.
func keyOf(t testing.TB, name string) identity.PrivateKey {
	t.Helper()
	keyCacheMu.Lock()
	defer keyCacheMu.Unlock()
	if k, ok := keyCache[name]; ok {
		return k
	}
	seed := make([]byte, 32)
	copy(seed, name)
	k, err := identity.PrivateKeyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	keyCache[name] = k
	return k
}

func keysOf(t testing.TB, names ...string) map[string]ed25519.PublicKey {
	m := map[string]ed25519.PublicKey{}
	for _, n := range names {
		m[n] = keyOf(t, n).PublicKey()
	}
	return m
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// openNode opens a node named id in dir, trusting the given reporters.
func openNode(t testing.TB, dir, id string, clock func() time.Time, reporters []string, tweak ...func(*NodeConfig)) *Node {
	t.Helper()
	cfg := NodeConfig{Dir: dir, AgentID: id, Key: keyOf(t, id), Reporters: keysOf(t, reporters...), Clock: clock, Logger: quiet}
	for _, f := range tweak {
		f(&cfg)
	}
	n, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n
}

// forge signs an event as reporter (whatever the rules say).
func forge(t testing.TB, reporter string, b EventBody) SignedEvent {
	t.Helper()
	b.Reporter = reporter
	ev, err := signEvent(b, nil, keyOf(t, reporter))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func score(t testing.TB, n *Node, id string) Points {
	t.Helper()
	p, ok := n.Score(id)
	if !ok {
		return NeutralScore
	}
	return p
}

func TestReportFoldsAndPersists(t *testing.T) {
	dir := t.TempDir()
	clk := newFakeClock()
	n := openNode(t, dir, "node-a", clk.Now, nil)
	ctx := context.Background()
	res, err := n.Report(ctx, Report{Subject: "liar", Type: "Hallucination", Severity: "critical", TraceID: "t-1",
		Details: json.RawMessage(`{"claim":"2+2=5","card":"4111 1111 1111 1111"}`), DetectedBy: "fact-checker"})
	if err != nil {
		t.Fatal(err)
	}
	if res.PreviousScore != 500 || res.Score != 300 || res.TrustLevel != LevelUnknown || res.Event.Delta != -200 {
		t.Fatalf("result %+v", res)
	}
	if string(res.Event.Details) == "" || json.Valid(res.Event.Details) == false {
		t.Fatalf("details %s", res.Event.Details)
	}
	if got := string(res.Event.Details); contains(got, "4111") {
		t.Fatalf("details not scrubbed: %s", got)
	}
	clk.Add(time.Second)
	if _, err := n.Report(ctx, Report{Subject: "liar", Type: "timeout"}); err != nil {
		t.Fatal(err)
	}
	if p := score(t, n, "liar"); p != 250 {
		t.Fatalf("score %s, want 2.50", p)
	}
	snap, ok := n.Get("liar")
	if !ok || snap.TrustLevel != LevelUnknown || len(snap.RecentEvents) != 2 || snap.NegativeEvents != 2 {
		t.Fatalf("snapshot %+v", snap)
	}
	if snap.RecentEvents[0].DetectedBy != "fact-checker" || snap.RecentEvents[1].DetectedBy != "node-a" {
		t.Fatalf("detected_by: %+v", snap.RecentEvents)
	}
	if _, err := n.Report(ctx, Report{Subject: "liar", Type: "success"}); !errors.Is(err, ErrUnknownReason) {
		t.Fatalf("a reported success: %v", err)
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n2 := openNode(t, dir, "node-a", clk.Now, nil)
	if p := score(t, n2, "liar"); p != 250 {
		t.Fatalf("after restart: %s, want 2.50", p)
	}
	if snap2, _ := n2.Get("liar"); len(snap2.RecentEvents) != 2 {
		t.Fatalf("after restart: %+v", snap2)
	}
}

func contains(s, sub string) bool {
	return len(sub) > 0 && len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestApplyRefuses(t *testing.T) {
	clk := newFakeClock()
	n := openNode(t, t.TempDir(), "node-a", clk.Now, []string{"peer"})
	ctx := context.Background()
	good := forge(t, "peer", EventBody{Subject: "x", Type: TypeHallucination, Severity: SeverityHigh, Time: clk.Now()})
	if err := n.Apply(ctx, good); err != nil {
		t.Fatal(err)
	}
	tampered := good
	tampered.Body.Severity = SeverityLow
	unsigned := forge(t, "peer", EventBody{Subject: "x", Type: TypeError, Time: clk.Now()})
	unsigned.Signature = nil
	stranger := forge(t, "stranger", EventBody{Subject: "x", Type: TypeError, Time: clk.Now()})
	impostor := forge(t, "stranger", EventBody{Subject: "x", Type: TypeError, Time: clk.Now()})
	impostor.Body.Reporter = "peer" // claims to be peer, signed by stranger
	wrongID := forge(t, "peer", EventBody{Subject: "x", Type: TypeFailure, Time: clk.Now()})
	wrongID.ID = good.ID
	future := forge(t, "peer", EventBody{Subject: "x", Type: TypeError, Time: clk.Now().Add(time.Hour)})
	stale := forge(t, "peer", EventBody{Subject: "x", Type: TypeError, Time: clk.Now().Add(-48 * time.Hour)})
	badDetails := forge(t, "peer", EventBody{Subject: "x", Type: TypeError, Time: clk.Now()})
	badDetails.Details = json.RawMessage(`{"a":1}`)
	for _, tc := range []struct {
		name string
		ev   SignedEvent
		want error
	}{
		{"replayed", good, ErrDuplicate},
		{"tampered", tampered, ErrBadSignature},
		{"unsigned", unsigned, ErrUnsigned},
		{"unknown key", stranger, ErrUnknownKey},
		{"impostor", impostor, ErrBadSignature},
		{"id of another event", wrongID, ErrBadSignature},
		{"future", future, ErrFuture},
		{"stale", stale, ErrStale},
		{"details without hash", badDetails, ErrInvalidEvent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := n.Apply(ctx, tc.ev); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if p := score(t, n, "x"); p != 400 {
		t.Fatalf("score %s, want 4.00: only the good event counts", p)
	}
	// A key learned at run time makes the stranger's events acceptable.
	if err := n.AddReporterKey("stranger", keyOf(t, "stranger").PublicKey()); err != nil {
		t.Fatal(err)
	}
	if err := n.Apply(ctx, stranger); err != nil {
		t.Fatal(err)
	}
}

// TestMaliciousReporterIsCapped: one reporter sending 1,000 critical
// reports about a good agent lowers it by the loss cap per window, no more.
func TestMaliciousReporterIsCapped(t *testing.T) {
	clk := newFakeClock()
	n := openNode(t, t.TempDir(), "node-a", clk.Now, []string{"mallory", "honest"})
	ctx := context.Background()
	// The good agent earned a little first.
	var evs []SignedEvent
	evs = append(evs, forge(t, "honest", EventBody{Subject: "good", Type: TypeSummary, Time: clk.Now(), Counts: Counts{Success: 10}}))
	for i := range 1000 {
		evs = append(evs, forge(t, "mallory", EventBody{Subject: "good", Type: TypeHallucination, Severity: SeverityCritical,
			Time: clk.Now().Add(time.Duration(i) * time.Millisecond), TraceID: fmt.Sprintf("t-%d", i)}))
	}
	errs := n.ApplyBatch(ctx, "mallory", evs)
	refused := 0
	for _, err := range errs {
		if err != nil {
			if !errors.Is(err, ErrCellFull) {
				t.Fatalf("unexpected error %v", err)
			}
			refused++
		}
	}
	if refused != 1000-DefaultMaxEventsPerCell {
		t.Errorf("%d refused, want %d beyond the per-cell bound", refused, 1000-DefaultMaxEventsPerCell)
	}
	if p := score(t, n, "good"); p != 600-DefaultLossCap {
		t.Fatalf("good at %s, want %s (6.00 minus the cap)", p, 600-DefaultLossCap)
	}
	if s := n.Stats(); s.Events > DefaultMaxEventsPerCell+1 {
		t.Fatalf("%d events retained", s.Events)
	}
	// The next window, mallory can take another cap, and no more.
	clk.Add(time.Hour)
	evs = evs[:0]
	for i := range 50 {
		evs = append(evs, forge(t, "mallory", EventBody{Subject: "good", Type: TypeHallucination, Severity: SeverityCritical,
			Time: clk.Now().Add(time.Duration(i) * time.Millisecond)}))
	}
	n.ApplyBatch(ctx, "mallory", evs)
	if p := score(t, n, "good"); p != max(0, 600-2*DefaultLossCap) {
		t.Fatalf("good at %s after a second window, want %s", p, max(0, 600-2*DefaultLossCap))
	}
}

func TestWeightFollowsStanding(t *testing.T) {
	clk := newFakeClock()
	n := openNode(t, t.TempDir(), "node-a", clk.Now, []string{"v1", "v2", "v3", "bad"})
	ctx := context.Background()
	// Three reporters drive "bad" to untrusted (below 2.00) in one window.
	for _, v := range []string{"v1", "v2"} {
		for i := range 2 {
			if err := n.Apply(ctx, forge(t, v, EventBody{Subject: "bad", Type: TypeHallucination, Severity: SeverityCritical,
				Time: clk.Now().Add(time.Duration(i) * time.Second)})); err != nil {
				t.Fatal(err)
			}
		}
	}
	if p := score(t, n, "bad"); p != 0 {
		t.Fatalf("bad at %s", p)
	}
	// In the next window, bad's reports weigh nothing.
	clk.Add(time.Hour)
	if err := n.Apply(ctx, forge(t, "bad", EventBody{Subject: "victim", Type: TypeHallucination, Severity: SeverityCritical, Time: clk.Now()})); err != nil {
		t.Fatal(err)
	}
	if p := score(t, n, "victim"); p != NeutralScore {
		t.Fatalf("victim at %s: an untrusted reporter moved it", p)
	}
	// A report made in the same window as bad's fall counts: its standing
	// at the start of that window was neutral. Folded late, it still does.
	if err := n.Apply(ctx, forge(t, "bad", EventBody{Subject: "other", Type: TypeFailure, Time: t0.Add(30 * time.Minute)})); err != nil {
		t.Fatal(err)
	}
	if p := score(t, n, "other"); p != 450 {
		t.Fatalf("other at %s, want 4.50", p)
	}
	// A reporter at unknown (2.00–3.99) weighs half.
	for i := range 2 {
		if err := n.Apply(ctx, forge(t, "v3", EventBody{Subject: "v2", Type: TypeHallucination, Severity: SeverityHigh,
			Time: t0.Add(time.Duration(i) * time.Second)})); err != nil {
			t.Fatal(err)
		}
	}
	if p := score(t, n, "v2"); p != 300 {
		t.Fatalf("v2 at %s", p)
	}
	if err := n.Apply(ctx, forge(t, "v2", EventBody{Subject: "victim", Type: TypeHallucination, Severity: SeverityLow, Time: clk.Now()})); err != nil {
		t.Fatal(err)
	}
	if p := score(t, n, "victim"); p != 487 {
		t.Fatalf("victim at %s, want 4.87 (half of −0.25, rounded away from zero)", p)
	}
}

func TestSelfReportsNeverRaise(t *testing.T) {
	clk := newFakeClock()
	n := openNode(t, t.TempDir(), "me", clk.Now, []string{"peer"})
	ctx := context.Background()
	for range 20 {
		n.Observe("me", OutcomeSuccess)
	}
	n.Observe("me", OutcomeFailure)
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := n.Score("me"); ok {
		t.Fatal("own outcomes made an event")
	}
	if snap, ok := n.Get("me"); !ok || snap.Score != NeutralScore || snap.PositiveEvents != 20 || snap.NegativeEvents != 1 {
		t.Fatalf("own agent before any event: %+v, %v", snap, ok)
	}
	// A (forged) summary the node signed about itself does not raise it.
	if err := n.Apply(ctx, forge(t, "me", EventBody{Subject: "me", Type: TypeSummary, Time: clk.Now(), Counts: Counts{Success: 50}})); err != nil {
		t.Fatal(err)
	}
	if p := score(t, n, "me"); p != NeutralScore {
		t.Fatalf("self-raised to %s", p)
	}
	if c := n.OwnOutcomes(); c.Success != 20 || c.Failure != 1 {
		t.Fatalf("own outcomes %+v", c)
	}
	snap, _ := n.Get("me")
	if snap.PositiveEvents != 70 || snap.NegativeEvents != 1 {
		t.Fatalf("counts %+v", snap.AgentScore)
	}
	// The peer calling "me" is what counts, up to the gain cap.
	if err := n.Apply(ctx, forge(t, "peer", EventBody{Subject: "me", Type: TypeSummary, Time: clk.Now(), Counts: Counts{Success: 50}})); err != nil {
		t.Fatal(err)
	}
	if p := score(t, n, "me"); p != NeutralScore+DefaultGainCap {
		t.Fatalf("me at %s, want 6.00", p)
	}
}

func TestObserveSummarizes(t *testing.T) {
	clk := newFakeClock()
	n := openNode(t, t.TempDir(), "caller", clk.Now, nil, func(c *NodeConfig) { c.MaxObserved = 3 })
	ctx := context.Background()
	for range 4 {
		n.Observe("callee", OutcomeSuccess)
	}
	n.Observe("callee", OutcomeTimeout)
	for i := range 10 {
		n.Observe(fmt.Sprintf("other-%d", i), OutcomeError)
	}
	if err := n.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if p := score(t, n, "callee"); p != 490 {
		t.Fatalf("callee at %s, want 4.90 (4 × 0.10 − 0.50)", p)
	}
	if s := n.Stats(); s.ObservedDropped != 8 || s.Agents != 3 {
		t.Fatalf("stats %+v: want 8 dropped beyond 3 subjects", s)
	}
	snap, _ := n.Get("callee")
	if len(snap.RecentEvents) != 1 || snap.RecentEvents[0].Type != TypeSummary || snap.TotalEvents != 5 {
		t.Fatalf("snapshot %+v", snap)
	}
}

func TestImportIsAtomicAndBounded(t *testing.T) {
	clk := newFakeClock()
	dir := t.TempDir()
	n := openNode(t, dir, "node-a", clk.Now, nil, func(c *NodeConfig) { c.MaxAgents = 3; c.MaxColdAgents = 1 })
	ctx := context.Background()
	got, err := n.Import(ctx, "peer-eu", []byte(`{"reputation_data":{"spammer":{"agent_id":"spammer","score":1.5},
		"saint":{"score":10},"zero":{"score":0}},"timestamp":"2026-01-25T09:59:00"}`))
	if err != nil || got != 2 {
		t.Fatalf("import: %d, %v", got, err)
	}
	if p := score(t, n, "spammer"); p != 150 {
		t.Fatalf("spammer %s", p)
	}
	if p := score(t, n, "zero"); p != 100 {
		t.Fatalf("zero at %s: one import lowers by at most the loss cap", p)
	}
	if _, ok := n.Score("saint"); ok {
		t.Fatal("an import raised an agent")
	}
	before := n.Export()
	for _, bad := range []string{
		`{"reputation_data":{"a":{"score":1},"b":{"score":"x"}}}`,
		`{"reputation_data":{"a":{"score":1}}} trailing`,
		`{"reputation_data":{"a":{"agent_id":"b","score":1}}}`,
		// Valid, but needs 4 more agents where there is room for 2: the
		// store is full of penalised agents and the cold set holds one.
		`{"reputation_data":{"n1":{"score":1},"n2":{"score":1},"n3":{"score":1},"n4":{"score":1}}}`,
	} {
		if k, err := n.Import(ctx, "peer-eu", []byte(bad)); err == nil || k != 0 {
			t.Fatalf("import %s: %d, %v", bad, k, err)
		}
		after := n.Export()
		a, _ := json.Marshal(before.ReputationData)
		b, _ := json.Marshal(after.ReputationData)
		if string(a) != string(b) {
			t.Fatalf("failed import %s changed the node:\n%s\n%s", bad, a, b)
		}
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n2 := openNode(t, dir, "node-a", clk.Now, nil, func(c *NodeConfig) { c.MaxAgents = 3; c.MaxColdAgents = 1 })
	if s := n2.Stats(); s.Agents+s.ColdAgents != 2 {
		t.Fatalf("after restart %+v: a refused import left something on disk", s)
	}
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func mustKey(seed []byte) identity.PrivateKey {
	k, err := identity.PrivateKeyFromSeed(seed)
	if err != nil {
		panic(err)
	}
	return k
}
