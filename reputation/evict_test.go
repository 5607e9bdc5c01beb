package reputation

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// ids returns the sorted agent ids held by s.
func ids(s *Store) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sortedIDs(s.agents)
}

func TestEviction(t *testing.T) {
	tests := []struct {
		name    string
		setup   [][3]string // agent, reason, severity, in order, on a store of 3
		want    []string    // agents held after "new" succeeds
		wantErr string
	}{
		{
			name:  "least recently updated goes",
			setup: [][3]string{{"a", "success", ""}, {"b", "success", ""}, {"c", "success", ""}},
			want:  []string{"b", "c", "new"},
		},
		{
			name:  "an update makes an agent recent",
			setup: [][3]string{{"a", "success", ""}, {"b", "success", ""}, {"c", "success", ""}, {"a", "success", ""}},
			want:  []string{"a", "c", "new"},
		},
		{
			name:  "a slashed agent is never evicted",
			setup: [][3]string{{"a", "hallucination", "low"}, {"b", "success", ""}, {"c", "success", ""}},
			want:  []string{"a", "c", "new"},
		},
		{
			name: "a recovered agent with a negative event is never evicted",
			setup: [][3]string{{"a", "failure", ""}, {"a", "success", ""}, {"a", "success", ""}, {"a", "success", ""},
				{"a", "success", ""}, {"a", "success", ""}, {"a", "success", ""}, {"b", "success", ""}, {"c", "success", ""}},
			want: []string{"a", "c", "new"},
		},
		{
			name:    "nothing evictable refuses the newcomer",
			setup:   [][3]string{{"a", "failure", ""}, {"b", "timeout", ""}, {"c", "error", ""}},
			want:    []string{"a", "b", "c"},
			wantErr: "reputation: store full: 3 agents, none evictable",
		},
		{
			name:  "not full evicts nothing",
			setup: [][3]string{{"a", "success", ""}, {"b", "success", ""}},
			want:  []string{"a", "b", "new"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, Config{MaxAgents: 3})
			for _, e := range tt.setup {
				record(t, s, e[0], e[1], e[2])
			}
			_, err := s.Record(context.Background(), Event{AgentID: "new", Type: TypeSuccess})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Record(new): %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr || !errors.Is(err, ErrStoreFull)):
				t.Fatalf("Record(new) error = %v, want %q", err, tt.wantErr)
			}
			if got := ids(s); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("agents = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGetDoesNotRefreshEviction(t *testing.T) {
	s := newTestStore(t, Config{MaxAgents: 2})
	record(t, s, "a", TypeSuccess, "")
	record(t, s, "b", TypeSuccess, "")
	s.Get("a")
	s.Score("a")
	record(t, s, "c", TypeSuccess, "")
	if got := fmt.Sprint(ids(s)); got != "[b c]" {
		t.Fatalf("agents = %s, want [b c]: reads must not count as updates", got)
	}
}

// TestFloodCannotWashOutSlash floods a small store with fresh ids, as an
// attacker spraying caller ids would: the store stays at its bound and the
// slashed agents keep their scores.
func TestFloodCannotWashOutSlash(t *testing.T) {
	const maxAgents, slashed, flood = 100, 10, 50_000
	s := newTestStore(t, Config{MaxAgents: maxAgents})
	for i := range slashed {
		record(t, s, fmt.Sprintf("bad-%d", i), TypeHallucination, SeverityCritical)
	}
	for i := range flood {
		record(t, s, fmt.Sprintf("flood-%d", i), TypeSuccess, "")
		if i%1000 == 0 && s.Len() > maxAgents {
			t.Fatalf("after %d new ids the store holds %d agents, bound %d", i+1, s.Len(), maxAgents)
		}
	}
	if s.Len() != maxAgents {
		t.Fatalf("store holds %d agents, want %d", s.Len(), maxAgents)
	}
	for i := range slashed {
		if p, ok := s.Score(fmt.Sprintf("bad-%d", i)); !ok || p != 300 {
			t.Fatalf("bad-%d: %s, %v; want its slash (3.00) kept", i, p, ok)
		}
	}
	// A flood of negative events fills the store with agents that cannot go;
	// then newcomers are refused and the slashed agents still stand.
	refused := 0
	for i := range flood {
		_, err := s.Record(context.Background(), Event{AgentID: fmt.Sprintf("neg-%d", i), Type: TypeFailure})
		switch {
		case errors.Is(err, ErrStoreFull):
			refused++
		case err != nil:
			t.Fatal(err)
		}
	}
	if want := flood - (maxAgents - slashed); refused != want || s.Len() != maxAgents {
		t.Fatalf("refused %d, holds %d; want %d refused, %d held", refused, s.Len(), want, maxAgents)
	}
	for i := range slashed {
		if p, ok := s.Score(fmt.Sprintf("bad-%d", i)); !ok || p != 300 {
			t.Fatalf("bad-%d: %s, %v; want its slash kept", i, p, ok)
		}
	}
	s.mu.RLock()
	n := s.evictable.len()
	s.mu.RUnlock()
	if n != 0 {
		t.Fatalf("eviction list holds %d agents, want 0", n)
	}
}

// TestConcurrent runs Record, Get, Score, Export and Import together; run it
// with -race.
func TestConcurrent(t *testing.T) {
	const maxAgents = 50
	s := newTestStore(t, Config{MaxAgents: maxAgents})
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 500 {
				id := fmt.Sprintf("a-%d", (w*500+i)%80)
				reason := []string{TypeSuccess, TypeFailure, TypeHallucination}[i%3]
				_, err := s.Record(ctx, Event{AgentID: id, Type: reason})
				if err != nil && !errors.Is(err, ErrStoreFull) {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 500 {
			if snap, ok := s.Get(fmt.Sprintf("a-%d", i%80)); ok && len(snap.RecentEvents) > RecentEvents {
				t.Errorf("snapshot with %d events", len(snap.RecentEvents))
			}
			s.Score(fmt.Sprintf("a-%d", i%80))
		}
	})
	wg.Go(func() {
		for range 20 {
			if n := len(s.Export().ReputationData); n > maxAgents {
				t.Errorf("export of %d agents, bound %d", n, maxAgents)
			}
		}
	})
	wg.Go(func() {
		for i := range 50 {
			body := fmt.Sprintf(`{"reputation_data":{"a-%d":{"score":4.5}}}`, i%80)
			if _, err := s.Import(ctx, "peer", []byte(body)); err != nil && !errors.Is(err, ErrStoreFull) {
				t.Error(err)
				return
			}
		}
	})
	wg.Wait()
	if s.Len() > maxAgents {
		t.Fatalf("store holds %d agents, bound %d", s.Len(), maxAgents)
	}
	checkInvariants(t, s)
}

// checkInvariants verifies the store's internal bookkeeping.
func checkInvariants(t *testing.T, s *Store) {
	t.Helper()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.agents) > s.maxAgents {
		t.Fatalf("%d agents, bound %d", len(s.agents), s.maxAgents)
	}
	listed := 0
	for a := s.evictable.front(); a != nil && a != &s.evictable.root; a = a.next {
		listed++
		if !a.evictable() || s.agents[a.id] != a {
			t.Fatalf("agent %q on the eviction list wrongly", a.id)
		}
	}
	if listed != s.evictable.len() {
		t.Fatalf("eviction list has %d agents, counts %d", listed, s.evictable.len())
	}
	for id, a := range s.agents {
		if a.evictable() != (a.prev != nil) {
			t.Fatalf("agent %q evictable=%v but listed=%v", id, a.evictable(), a.prev != nil)
		}
		if a.score < MinScore || a.score > MaxScore || len(a.events) > RecentEvents {
			t.Fatalf("agent %q out of bounds: %s, %d events", id, a.score, len(a.events))
		}
	}
}
