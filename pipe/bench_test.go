package pipe

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"slices"
	"sync"
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

// measure sends b.N pings through run from senders goroutines and reports
// values and checked messages per second, and CPU time per checked message.
func measure(b *testing.B, run *Run[ping, ping], hops, senders int) {
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
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := s; i < b.N; i += senders {
				if _, err := run.Send(ctx, ping{Seq: i, Sent: time.Now().UnixNano(), Text: "hello from a"}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
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
		measure(b, run, 3, 1)
	})
	for _, workers := range []int{1, 4} {
		b.Run(fmt.Sprintf("record/workers=%d/senders=%d", workers, workers), func(b *testing.B) {
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
			measure(b, run, 3, workers)
		})
	}
}

// BenchmarkPipeLatency measures the time from Send to Results of one value
// at a time through A | policy | B: no queue, so this is the cost of the
// three checked messages and the hand-offs between goroutines.
func BenchmarkPipeLatency(b *testing.B) {
	for _, record := range []bool{false, true} {
		b.Run(fmt.Sprintf("record=%v", record), func(b *testing.B) {
			var rec interface {
				Append(context.Context, *recorder.Record) (uint64, error)
			} = discard{}
			if record {
				log, err := recorder.Open(context.Background(), recorder.Config{Dir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				defer log.Close()
				rec = log
			}
			run, err := Open(context.Background(), config(b, rec), Then(From(benchA), benchB))
			if err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := run.Send(ctx, ping{Seq: i, Text: "hello from a"}); err != nil {
					b.Fatal(err)
				}
				if res := <-run.Results(); res.Err != nil {
					b.Fatal(res.Err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			run.Close()
			run.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1000, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1000, "p99-µs")
		})
	}
}

// BenchmarkSocket measures messages per second across a Unix domain
// socket, both ends in this process: a sends to b over the socket (checked
// on each side), b sends to its owner.
func BenchmarkSocket(b *testing.B) {
	path := socketPath(b)
	cfg := config(b, discard{})
	cfg.Owner, cfg.Buffer = agent("editor"), 1024
	recv, err := Open(context.Background(), cfg, From(benchB))
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- Serve(ctx, ln, recv, ServeConfig{Key: receiverKey(b), Peers: map[string]ed25519.PublicKey{"a": senderKey(b).PublicKey()}})
	}()
	snd, err := Dial(context.Background(), DialConfig{Path: path, Agent: "a", Key: senderKey(b), Receiver: "b", ReceiverKey: receiverKey(b).PublicKey(), Queue: 1024})
	if err != nil {
		b.Fatal(err)
	}
	scfg := config(b, discard{})
	scfg.Owner, scfg.Buffer = agent("a"), 1024
	send, err := Open(context.Background(), scfg, From(Remote[ping](snd, agent("b"))))
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for res := range send.Results() {
			if res.Err != nil {
				b.Error(res.Err)
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), cpuTime()
	go func() {
		for i := range b.N {
			if _, err := send.Send(context.Background(), ping{Seq: i, Text: "hello from a"}); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	for range b.N {
		if res := <-recv.Results(); res.Err != nil {
			b.Fatal(res.Err)
		}
	}
	elapsed, cpu := time.Since(start), cpuTime()-cpu
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
	send.Close()
	send.Wait()
	snd.Close()
	cancel()
	<-served
	recv.Close()
	recv.Wait()
}
