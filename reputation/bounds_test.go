package reputation

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestEvictionNeverLaundersAPenalty floods a small node with fresh agents:
// a slashed agent is evicted cold and keeps its score, in memory and
// across a restart, and comes back with it when it is reported again.
func TestEvictionNeverLaundersAPenalty(t *testing.T) {
	clk := newFakeClock()
	dir := t.TempDir()
	bound := func(c *NodeConfig) { c.MaxAgents = 4; c.MaxColdAgents = 2 }
	n := openNode(t, dir, "node-a", clk.Now, []string{"peer"}, bound)
	ctx := context.Background()
	if _, err := n.Report(ctx, Report{Subject: "bad", Type: TypeHallucination, Severity: SeverityCritical}); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		clk.Add(time.Second)
		if err := n.Apply(ctx, forge(t, "peer", EventBody{Subject: fmt.Sprintf("fresh-%d", i), Type: TypeSummary, Time: clk.Now(), Counts: Counts{Success: 1}})); err != nil {
			t.Fatal(err)
		}
		if s := n.Stats(); s.Agents > 4 || s.ColdAgents > 2 {
			t.Fatalf("bound exceeded: %+v", s)
		}
	}
	if s := n.Stats(); s.Evicted == 0 || s.ColdAgents != 1 {
		t.Fatalf("stats %+v: want bad evicted cold", s)
	}
	if p, ok := n.Score("bad"); !ok || p != 300 {
		t.Fatalf("evicted bad at %s, %v: the penalty was laundered", p, ok)
	}
	if _, ok := n.Score("fresh-0"); ok {
		t.Fatal("a positive agent was kept beyond the bound")
	}
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n = openNode(t, dir, "node-a", clk.Now, []string{"peer"}, bound)
	if p, ok := n.Score("bad"); !ok || p != 300 {
		t.Fatalf("after restart bad at %s, %v", p, ok)
	}
	clk.Add(time.Second)
	if _, err := n.Report(ctx, Report{Subject: "bad", Type: TypeError}); err != nil {
		t.Fatal(err)
	}
	if p := score(t, n, "bad"); p != 250 {
		t.Fatalf("bad back at %s, want 2.50", p)
	}
	// When memory and the cold set are full of penalised agents, a new
	// agent is refused rather than a penalty forgotten.
	for i := range 10 {
		clk.Add(time.Second)
		_, err := n.Report(ctx, Report{Subject: fmt.Sprintf("slashed-%d", i), Type: TypeError})
		if err != nil {
			if !errors.Is(err, ErrStoreFull) || i < 5 {
				t.Fatalf("slash %d: %v", i, err)
			}
			return
		}
	}
	t.Fatal("never full")
}

// TestEventBudgetHoldsUnderFlood: many reporters' events about many agents
// never keep more than MaxEvents in memory.
func TestEventBudgetHoldsUnderFlood(t *testing.T) {
	clk := newFakeClock()
	n := openNode(t, t.TempDir(), "node-a", clk.Now, []string{"p0", "p1", "p2"}, func(c *NodeConfig) {
		c.MaxEvents = 100
		c.MaxEventsPerAgent = 30
	})
	ctx := context.Background()
	for i := range 600 {
		ev := forge(t, fmt.Sprint("p", i%3), EventBody{Subject: fmt.Sprint("s", i%7), Type: TypeSummary,
			Time: clk.Now().Add(time.Duration(i) * time.Millisecond), Counts: Counts{Success: 1, Failure: uint32(i % 2)}})
		if err := n.Apply(ctx, ev); err != nil {
			t.Fatal(err)
		}
		if s := n.Stats(); s.Events > 100 {
			t.Fatalf("after %d events: %+v", i, s)
		}
	}
}

// TestAgedEventsCompactAndStayDuplicates: maintenance compacts events older
// than MaxEventAge; a replay inside the age is a duplicate, outside stale.
func TestAgedEventsCompactAndStayDuplicates(t *testing.T) {
	clk := newFakeClock()
	n := openNode(t, t.TempDir(), "node-a", clk.Now, []string{"peer"}, func(c *NodeConfig) { c.MaxEventAge = 2 * time.Hour })
	ctx := context.Background()
	ev := forge(t, "peer", EventBody{Subject: "x", Type: TypeError, Time: clk.Now()})
	if err := n.Apply(ctx, ev); err != nil {
		t.Fatal(err)
	}
	clk.Add(3*time.Hour + time.Minute) // the event's whole window is past the age
	n.maintain()
	if s := n.Stats(); s.Events != 0 || s.Compacted != 1 {
		t.Fatalf("stats %+v", s)
	}
	if err := n.Apply(ctx, ev); !errors.Is(err, ErrStale) {
		t.Fatalf("replay after the age: %v", err)
	}
	if p := score(t, n, "x"); p != 450 {
		t.Fatalf("x at %s", p)
	}
}

// TestKeyChangeIsExplained: a node whose key changed cannot verify its own
// checkpoints and says why, until the old key is listed.
func TestKeyChangeIsExplained(t *testing.T) {
	clk := newFakeClock()
	dir := t.TempDir()
	n := openNode(t, dir, "node-a", clk.Now, nil, func(c *NodeConfig) { c.MaxEventsPerAgent = 2 })
	ctx := context.Background()
	for i := range 4 {
		clk.Add(time.Second)
		if _, err := n.Report(ctx, Report{Subject: "x", Type: TypeError, TraceID: fmt.Sprint("t-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	n.Close(ctx)
	newKey := keyOf(t, "node-a-rotated")
	_, err := Open(ctx, NodeConfig{Dir: dir, AgentID: "node-a", Key: newKey, Clock: clk.Now, Logger: quiet})
	if !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "key changed") {
		t.Fatalf("open with a new key: %v", err)
	}
	n2, err := Open(ctx, NodeConfig{Dir: dir, AgentID: "node-a", Key: newKey, Clock: clk.Now, Logger: quiet,
		Reporters: keysOf(t, "node-a")})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close(ctx)
	if p := score(t, n2, "x"); p != 300 {
		t.Fatalf("x at %s", p)
	}
}
