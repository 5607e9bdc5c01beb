package recorder

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// benchTraceRecords is how many records BenchmarkTrace10M builds;
// IATP_BENCH_TRACE_RECORDS overrides it for a quicker run.
func benchTraceRecords() int {
	if n, err := strconv.Atoi(os.Getenv("IATP_BENCH_TRACE_RECORDS")); err == nil && n > 0 {
		return n
	}
	return 10_000_000
}

var bigLog struct {
	once  sync.Once
	dir   string
	n     int
	build time.Duration
	err   error
}

// TestMain removes the big benchmark log at the end.
func TestMain(m *testing.M) {
	code := m.Run()
	if bigLog.dir != "" {
		os.RemoveAll(bigLog.dir)
	}
	os.Exit(code)
}

// buildBigLog writes n records — traces of a request and a response, as the
// sidecar writes them, interleaved with other traces — straight into 64 MiB
// segments with their index files, using the package's own encoder and
// index writer but one sequential buffered writer instead of Append.
func buildBigLog(dir string, n int) error {
	var (
		f     *os.File
		w     *bufio.Writer
		seg   *memIndex
		first uint64
		size  int64
		prev  = zeroHash
		body  []byte
		line  []byte
	)
	seal := func() error {
		if f == nil {
			return nil
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		return writeIndexFile(segPath(dir, idxName(segName(first))), first, size, seg.sorted())
	}
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Record{AgentID: "booking-agent", CallerID: "travel-planner", Authenticated: true, Decision: "allow",
		Payload: []byte(`{"task":"book","from":"SFO","to":"JFK"}`)}
	for i := 0; i < n; i++ {
		seq := uint64(i + 1)
		// Each trace has a request and, 100 records later, a response.
		k := i/200*100 + i%100
		r.TraceID = "trace-" + strconv.Itoa(k)
		r.Kind, r.Status = KindRequest, 0
		if i%200 >= 100 {
			r.Kind, r.Status = KindResponse, 200
		}
		r.Time = t.Add(time.Duration(i) * time.Millisecond)
		var err error
		if body, err = appendBody(body[:0], &r); err != nil {
			return err
		}
		line, prev = appendLine(line[:0], seq, body, &prev)
		if f == nil || size+int64(len(line)) > DefaultSegmentBytes {
			if err := seal(); err != nil {
				return err
			}
			if f, err = os.Create(segPath(dir, segName(seq))); err != nil {
				return err
			}
			w, seg, first, size = bufio.NewWriterSize(f, 1<<20), newMemIndex(), seq, 0
		}
		seg.add(traceKey(r.TraceID), pos{off: uint32(size), n: uint32(len(line))})
		if _, err := w.Write(line); err != nil {
			return err
		}
		size += int64(len(line))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close() // the last segment stays active: Open indexes it in memory
}

// BenchmarkTrace10M answers Trace for random traces of a log of 10 million
// records (about 2.2 GB in 64 MiB segments), after a restart: sealed
// segments answer from their index files, the active one from the index
// Open rebuilt. Target: <= 5 ms per query. Build time and Open time are
// reported as metrics (build-s, open-ms); the page cache is warm.
func BenchmarkTrace10M(b *testing.B) {
	bigLog.once.Do(func() {
		bigLog.n = benchTraceRecords()
		bigLog.dir, bigLog.err = os.MkdirTemp("", "iatp-recorder-bench-")
		if bigLog.err == nil {
			start := time.Now()
			bigLog.err = buildBigLog(bigLog.dir, bigLog.n)
			bigLog.build = time.Since(start)
		}
	})
	if bigLog.err != nil {
		b.Fatal(bigLog.err)
	}
	start := time.Now()
	l, err := Open(context.Background(), Config{Dir: bigLog.dir, Logger: quietLogger(),
		MaxAge: 1 << 62, MaxTotalBytes: 1 << 62})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	openTime := time.Since(start)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	traces := bigLog.n / 2
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := "trace-" + strconv.Itoa(rng.IntN(traces))
		recs, err := l.Trace(ctx, id, 0)
		if err != nil || len(recs) != 2 || recs[0].TraceID != id {
			b.Fatalf("Trace(%s) = %d records, %v", id, len(recs), err)
		}
	}
	b.StopTimer()
	b.ReportMetric(bigLog.build.Seconds(), "build-s")
	b.ReportMetric(float64(openTime.Milliseconds()), "open-ms")
	b.ReportMetric(float64(l.Stats().Segments), "segments")
}

// BenchmarkVerify measures Verify (every record decoded, re-encoded and
// hashed) over a log of 100,000 records, in bytes of log per second.
func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	if err := buildBigLog(dir, 100_000); err != nil {
		b.Fatal(err)
	}
	var size int64
	files, _ := listSegments(dir)
	for _, f := range files {
		size += f.size
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rep, err := Verify(context.Background(), dir, VerifyOptions{})
		if err != nil || rep.Records != 100_000 {
			b.Fatalf("Verify: %v", err)
		}
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "records/s")
}
