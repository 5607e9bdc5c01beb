package reputation

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
)

// benchStore returns a store holding agents "agent-0"… with a full ring of
// events each.
func benchStore(b *testing.B, agents int, cfg Config) *Store {
	b.Helper()
	s := newTestStore(b, cfg)
	for i := range agents {
		for range RecentEvents {
			record(b, s, fmt.Sprintf("agent-%d", i), TypeSuccess, "")
		}
	}
	return s
}

// BenchmarkRecord is the sidecar's per-call path: a success for a known
// agent whose ring is full.
func BenchmarkRecord(b *testing.B) {
	for _, gen := range []struct {
		name string
		id   func() string
	}{{"seq-ids", seqIDs()}, {"uuid-ids", uuid.NewString}} {
		b.Run(gen.name, func(b *testing.B) {
			s := benchStore(b, 1, Config{NewID: gen.id})
			ctx := context.Background()
			ev := Event{AgentID: "agent-0", Type: TypeSuccess}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Record(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRecordParallel records successes for 1,000 agents from all
// procs at once: the store's one lock under contention.
func BenchmarkRecordParallel(b *testing.B) {
	s := benchStore(b, 1000, Config{})
	ctx := context.Background()
	var n atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ev := Event{AgentID: fmt.Sprintf("agent-%d", n.Add(1)%1000), Type: TypeSuccess}
		for pb.Next() {
			if _, err := s.Record(ctx, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRecordNewAgents floods a full store with new ids: each Record
// evicts one agent.
func BenchmarkRecordNewAgents(b *testing.B) {
	s := newTestStore(b, Config{MaxAgents: 10_000})
	ctx := context.Background()
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = fmt.Sprintf("new-%d", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Record(ctx, Event{AgentID: ids[i&(len(ids)-1)], Type: TypeSuccess}); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkScore is the per-request policy lookup.
func BenchmarkScore(b *testing.B) {
	s := benchStore(b, 100, Config{})
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Score("agent-42"); !ok {
			b.Fatal("not found")
		}
	}
}

// BenchmarkGet is GET /reputation/{id}: a snapshot with 100 events.
func BenchmarkGet(b *testing.B) {
	s := benchStore(b, 1, Config{})
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := s.Get("agent-0"); !ok {
			b.Fatal("not found")
		}
	}
}

// BenchmarkImport imports a 1,000-agent Python-style snapshot into a store
// that already holds those agents at lower scores (validation and merge, no
// change).
func BenchmarkImport(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"reputation_data":{`)
	for i := range 1000 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `"agent-%d":{"agent_id":"agent-%d","score":4.8999999999999995,"initial_score":5.0,"total_events":2,`+
			`"positive_events":0,"negative_events":2,"last_updated":"2026-01-25T10:00:00.123456","recent_events":[%s]}`,
			i, i, pythonEvent)
	}
	sb.WriteString(`},"timestamp":"2026-01-25T10:00:00.123456"}`)
	body := []byte(sb.String())
	s := newTestStore(b, Config{})
	ctx := context.Background()
	if n, err := s.Import(ctx, "peer", body); err != nil || n != 1000 {
		b.Fatalf("first import: %d, %v", n, err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Import(ctx, "peer", body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParsePoints reads the Python package's drifting floats.
func BenchmarkParsePoints(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if p, err := ParsePoints("5.9999999999999964"); err != nil || p != 600 {
			b.Fatal(p, err)
		}
	}
}

// BenchmarkAgentMemory reports the heap a store keeps per agent: "B/agent"
// with one event (a flood of new ids) and with a full ring of events that
// carry a UUID and a trace id but no details.
func BenchmarkAgentMemory(b *testing.B) {
	for _, events := range []int{1, RecentEvents} {
		b.Run(fmt.Sprintf("events=%d", events), func(b *testing.B) {
			const agents = 2000
			ctx := context.Background()
			var perAgent float64
			for b.Loop() {
				b.StopTimer()
				s := newTestStore(b, Config{NewID: uuid.NewString})
				evs := make([]Event, agents)
				for i := range evs {
					evs[i] = Event{AgentID: fmt.Sprintf("agent-%d", i), Type: TypeSuccess, TraceID: uuid.NewString()}
				}
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				b.StartTimer()
				for range events {
					for i := range evs {
						if _, err := s.Record(ctx, evs[i]); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				perAgent = float64(after.HeapAlloc-before.HeapAlloc) / agents
				runtime.KeepAlive(s)
				runtime.KeepAlive(evs)
				b.StartTimer()
			}
			b.ReportMetric(perAgent, "B/agent")
		})
	}
}
