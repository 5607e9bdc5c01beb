package reputation

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/iatp/iatp/identity"
)

// BenchmarkNodeScore is the per-request lookup, from all procs at once.
func BenchmarkNodeScore(b *testing.B) {
	clk := newFakeClock()
	n := openNode(b, b.TempDir(), "node-a", clk.Now, []string{"peer"})
	var evs []SignedEvent
	for i := range 1000 {
		evs = append(evs, forge(b, "peer", EventBody{Subject: fmt.Sprint("agent-", i), Type: TypeError, Time: clk.Now()}))
	}
	n.ApplyBatch(context.Background(), "", evs)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		ids := []string{"agent-42", "agent-7", "unknown-agent", "agent-999"}
		for pb.Next() {
			n.Score(ids[i&3])
			i++
		}
	})
}

// BenchmarkNodeObserve is the per-request outcome count of the egress.
func BenchmarkNodeObserve(b *testing.B) {
	clk := newFakeClock()
	n := openNode(b, b.TempDir(), "node-a", clk.Now, nil, func(c *NodeConfig) { c.SummaryInterval = time.Hour })
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			n.Observe("callee", Outcome(i&1))
			i++
		}
	})
}

// BenchmarkNodeApply measures events applied per second on one node:
// verified, folded and committed (fsync) in batches of 256, as a transport
// delivers them.
func BenchmarkNodeApply(b *testing.B) {
	clk := newFakeClock()
	reporters := []string{"p0", "p1", "p2", "p3"}
	n := openNode(b, b.TempDir(), "node-a", clk.Now, reporters, func(c *NodeConfig) { c.MaxEventsPerCell = 1 << 20 })
	const batch = 256
	evs := make([]SignedEvent, 0, b.N)
	for i := range b.N {
		evs = append(evs, forge(b, reporters[i%4], EventBody{Subject: fmt.Sprint("agent-", i%5000), Type: TypeSummary,
			Time: clk.Now().Add(time.Duration(i) * time.Microsecond), Counts: Counts{Success: 3, Failure: uint32(i % 2)}}))
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < len(evs); i += batch {
		for _, err := range n.ApplyBatch(context.Background(), "", evs[i:min(i+batch, len(evs))]) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkNodeAgentMemory reports the heap per tracked agent with 1 and
// with 20 retained events (summaries from 4 reporters). The baseline is
// taken after the node opened and committed a first batch, so the
// database's own buffers are not counted per agent.
func BenchmarkNodeAgentMemory(b *testing.B) {
	for _, per := range []int{1, 20} {
		b.Run(fmt.Sprint("events=", per), func(b *testing.B) {
			const agents = 1000
			clk := newFakeClock()
			reporters := []string{"p0", "p1", "p2", "p3"}
			keys := map[string]identity.PrivateKey{}
			for _, r := range reporters {
				keys[r] = keyOf(b, r)
			}
			sign := func(i int, subject string) SignedEvent {
				r := reporters[i%4]
				ev, err := signEvent(EventBody{Reporter: r, Subject: subject, Type: TypeSummary,
					Time: clk.Now().Add(time.Duration(i) * time.Microsecond), Counts: Counts{Success: 1}}, nil, keys[r])
				if err != nil {
					b.Fatal(err)
				}
				return ev
			}
			var warm, evs []SignedEvent
			for i := range 512 {
				warm = append(warm, sign(i, fmt.Sprint("warm-", i)))
			}
			for i := range agents * per {
				evs = append(evs, sign(i, fmt.Sprint("agent-", i%agents)))
			}
			var perAgent float64
			for b.Loop() {
				b.StopTimer()
				n := openNode(b, b.TempDir(), "node-a", clk.Now, reporters)
				n.ApplyBatch(context.Background(), "", warm)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.GC() // and the pools' victims
				runtime.ReadMemStats(&before)
				b.StartTimer()
				for i := 0; i < len(evs); i += 512 {
					n.ApplyBatch(context.Background(), "", evs[i:min(i+512, len(evs))])
				}
				b.StopTimer()
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&after)
				perAgent = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / agents
				runtime.KeepAlive(n)
				n.Close(context.Background())
				b.StartTimer()
			}
			b.ReportMetric(perAgent, "B/agent")
		})
	}
}
