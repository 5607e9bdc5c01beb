package pipe

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/iatp/iatp/recorder"
)

// ping is the small message of the benchmarks: about 60 bytes of JSON.
type ping struct {
	Seq  int    `json:"seq"`
	Sent int64  `json:"sent"`
	Text string `json:"text"`
}

var (
	benchA = NewStage(agent("a"), func(_ context.Context, p ping) (ping, error) { return p, nil })
	benchB = NewStage(agent("b"), func(_ context.Context, p ping) (ping, error) { return p, nil })
)

// measure sends b.N pings through run and reports messages per second and
// the p50 and p99 latency from Send to Results.
func measure(b *testing.B, run *Run[ping, ping], hops int) {
	lat := make([]time.Duration, 0, b.N)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for res := range run.Results() {
			if res.Err != nil {
				b.Error(res.Err)
				continue
			}
			lat = append(lat, time.Duration(time.Now().UnixNano()-res.Value.Sent))
		}
	}()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	ctx := context.Background()
	for i := range b.N {
		if _, err := run.Send(ctx, ping{Seq: i, Sent: time.Now().UnixNano(), Text: "hello from a"}); err != nil {
			b.Fatal(err)
		}
	}
	run.Close()
	<-done
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	b.StopTimer()
	if err := run.Wait(); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "msg/s")
		b.ReportMetric(float64(hops*len(lat))/elapsed.Seconds(), "checked/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(hops*len(lat)), "cpu-ns/checked")
	}
}

// BenchmarkPipe measures A | policy | B in one process: three checked
// messages per value (owner → a → b → owner).
func BenchmarkPipe(b *testing.B) {
	b.Run("no-record", func(b *testing.B) {
		b.ReportAllocs()
		cfg := config(b, discard{})
		cfg.Buffer = 1024
		run, err := Open(context.Background(), cfg, Then(From(benchA), benchB))
		if err != nil {
			b.Fatal(err)
		}
		measure(b, run, 3)
	})
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("record/workers=%d", workers), func(b *testing.B) {
			b.ReportAllocs()
			log, err := recorder.Open(context.Background(), recorder.Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer log.Close()
			cfg := config(b, log)
			cfg.Buffer = 1024
			run, err := Open(context.Background(), cfg, Then(From(benchA.WithWorkers(workers)), benchB.WithWorkers(workers)))
			if err != nil {
				b.Fatal(err)
			}
			measure(b, run, 3)
		})
	}
}
