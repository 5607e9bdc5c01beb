package reputation

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// randomEvents makes count events by reporters about subjects (reporters
// are subjects too, so weights and self-reports matter), spread over
// several windows.
func randomEvents(t testing.TB, rng *rand.Rand, reporters, subjects []string, count int, span time.Duration) []SignedEvent {
	t.Helper()
	types := []string{TypeHallucination, TypeFailure, TypeTimeout, TypeError, TypeSummary, TypeSummary, TypeSummary, TypeImport}
	sevs := []string{SeverityCritical, SeverityHigh, SeverityMedium, SeverityLow}
	out := make([]SignedEvent, 0, count)
	for i := 0; i < count; i++ {
		b := EventBody{
			Subject: subjects[rng.IntN(len(subjects))],
			Type:    types[rng.IntN(len(types))],
			Time:    t0.Add(time.Duration(rng.Int64N(int64(span)))).Truncate(time.Microsecond),
		}
		switch b.Type {
		case TypeHallucination:
			b.Severity = sevs[rng.IntN(len(sevs))]
		case TypeSummary:
			b.Counts = Counts{Success: uint32(rng.IntN(30)), Failure: uint32(rng.IntN(2)), Timeout: uint32(rng.IntN(2))}
			if b.Counts.zero() {
				b.Counts.Success = 1
			}
		case TypeImport:
			b.Delta = -Points(1 + rng.IntN(300))
		}
		out = append(out, forge(t, reporters[rng.IntN(len(reporters))], b))
	}
	return out
}

// schedule returns evs shuffled, with duplicates, cut into batches, and a
// share of them held back to the end (delayed).
func schedule(rng *rand.Rand, evs []SignedEvent) [][]SignedEvent {
	var now, later []SignedEvent
	for _, ev := range evs {
		copies := 1 + rng.IntN(3)*rng.IntN(2)
		for range copies {
			if rng.IntN(5) == 0 {
				later = append(later, ev)
			} else {
				now = append(now, ev)
			}
		}
	}
	rng.Shuffle(len(now), func(i, j int) { now[i], now[j] = now[j], now[i] })
	rng.Shuffle(len(later), func(i, j int) { later[i], later[j] = later[j], later[i] })
	all := append(now, later...)
	var batches [][]SignedEvent
	for len(all) > 0 {
		k := min(len(all), 1+rng.IntN(120))
		batches = append(batches, all[:k])
		all = all[k:]
	}
	return batches
}

type memberView struct {
	Score, Raw                Points
	Total, Positive, Negative int64
	Events                    int
}

func view(n *Node) map[string]memberView {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := map[string]memberView{}
	for id, m := range n.members {
		out[id] = memberView{m.st.Score, m.st.Raw, m.st.Total, m.st.Positive, m.st.Negative, len(m.events)}
	}
	return out
}

// TestConvergence is a property test: nodes that receive the same events in
// different orders, duplicated, in different batches and some delayed,
// hold identical scores — and the same as a node that received them in
// order.
func TestConvergence(t *testing.T) {
	reporters := []string{"r0", "r1", "r2", "r3"}
	subjects := append(slices.Clone(reporters), "a", "b", "c")
	seeds := 8
	if testing.Short() {
		seeds = 2
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(seed), 7))
			evs := randomEvents(t, rng, reporters, subjects, 250, 4*time.Hour)
			clock := func() time.Time { return t0.Add(4*time.Hour + time.Minute) }
			cellBound := func(c *NodeConfig) { c.MaxEventsPerCell = 6; c.noSync = true }
			ref := openNode(t, t.TempDir(), "ref", clock, reporters, cellBound)
			sorted := slices.Clone(evs)
			slices.SortFunc(sorted, func(a, b SignedEvent) int {
				return evKey{a.Body.Time.UnixMicro(), [32]byte(mustHex(a.ID))}.cmp(evKey{b.Body.Time.UnixMicro(), [32]byte(mustHex(b.ID))})
			})
			for _, err := range ref.ApplyBatch(context.Background(), "", sorted) {
				if err != nil && !isBenign(err) {
					t.Fatal(err)
				}
			}
			want := view(ref)
			for k := range 3 {
				n := openNode(t, t.TempDir(), fmt.Sprint("node-", k), clock, reporters, cellBound)
				for _, batch := range schedule(rng, evs) {
					for _, err := range n.ApplyBatch(context.Background(), "peer", batch) {
						if err != nil && !isBenign(err) {
							t.Fatal(err)
						}
					}
				}
				got := view(n)
				for id, w := range want {
					if got[id] != w {
						t.Errorf("node %d, agent %s: %+v, in order %+v", k, id, got[id], w)
					}
				}
				if len(got) != len(want) {
					t.Errorf("node %d holds %d agents, want %d", k, len(got), len(want))
				}
				if d1, d2 := digestMap(n), digestMap(ref); fmt.Sprint(d1) != fmt.Sprint(d2) {
					t.Errorf("node %d digest differs", k)
				}
			}
		})
	}
}

func isBenign(err error) bool {
	return errorsIs(err, ErrDuplicate) || errorsIs(err, ErrCellFull)
}

func digestMap(n *Node) map[int64]DigestEntry {
	out := map[int64]DigestEntry{}
	for _, d := range n.Digest() {
		out[d.Window] = d
	}
	return out
}

// TestCompactionKeepsScores: folding from a checkpoint gives what folding
// everything gives, and survives a restart.
func TestCompactionKeepsScores(t *testing.T) {
	reporters := []string{"r0", "r1", "r2"}
	subjects := append(slices.Clone(reporters), "a")
	rng := rand.New(rand.NewPCG(1, 2))
	evs := randomEvents(t, rng, reporters, subjects, 400, 3*time.Hour)
	slices.SortFunc(evs, func(a, b SignedEvent) int { return a.Body.Time.Compare(b.Body.Time) })
	clock := func() time.Time { return t0.Add(3*time.Hour + time.Minute) }
	ref := openNode(t, t.TempDir(), "ref", clock, reporters)
	ref.ApplyBatch(context.Background(), "", evs)
	dir := t.TempDir()
	small := func(c *NodeConfig) { c.MaxEventsPerAgent = 16; c.MaxEvents = 40 }
	n := openNode(t, dir, "small", clock, reporters, small)
	for i := 0; i < len(evs); i += 7 {
		n.ApplyBatch(context.Background(), "", evs[i:min(i+7, len(evs))])
	}
	if s := n.Stats(); s.Events > 40 || s.Compacted == 0 {
		t.Fatalf("stats %+v: want at most 40 events retained", s)
	}
	check := func(n *Node) {
		t.Helper()
		for id := range subjects {
			a, b := score(t, ref, subjects[id]), score(t, n, subjects[id])
			if a != b {
				t.Errorf("%s: compacted %s, full %s", subjects[id], b, a)
			}
		}
	}
	check(n)
	// Replays of compacted events are still duplicates.
	for _, err := range n.ApplyBatch(context.Background(), "", evs[:50]) {
		if err != nil && !errorsIs(err, ErrDuplicate) {
			t.Fatalf("replay of a compacted event: %v", err)
		}
	}
	check(n)
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	check(openNode(t, dir, "small", clock, reporters, small))
}

// TestApplyBatchCanceled cancels batches while the writer applies them:
// ApplyBatch must not read outcomes the writer is still setting (go test
// -race), and every event it reports applied is held afterwards.
func TestApplyBatchCanceled(t *testing.T) {
	n := openNode(t, t.TempDir(), "node", newFakeClock().Now, []string{"r1", "r2"})
	rng := rand.New(rand.NewPCG(1, 2))
	evs := randomEvents(t, rng, []string{"r1", "r2"}, []string{"a", "b", "c"}, 2000, time.Hour)
	var applied []string
	for i := 0; i+100 <= len(evs); i += 100 {
		ctx, cancel := context.WithCancel(context.Background())
		delay := time.Duration(rng.IntN(300)) * time.Microsecond
		go func() { time.Sleep(delay); cancel() }()
		for k, err := range n.ApplyBatch(ctx, "peer", evs[i:i+100]) {
			if err == nil {
				applied = append(applied, evs[i+k].ID)
			} else if !errors.Is(err, context.Canceled) && !errors.Is(err, ErrDuplicate) {
				t.Fatalf("event %d: %v", i+k, err)
			}
		}
		cancel()
	}
	held, err := n.Events(applied)
	if err != nil || len(held) != len(applied) {
		t.Fatalf("%d events reported applied, %d held (%v)", len(applied), len(held), err)
	}
}
