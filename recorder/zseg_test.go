package recorder

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// sealedLog writes n sidecar-like records into 64 KiB segments, seals and
// (with cfg's compression) compresses every sealed segment, and returns
// the open log and the plain bytes of each sealed segment by first seq.
func sealedLog(t *testing.T, dir string, cfg Config, n int) (*Log, map[uint64][]byte) {
	t.Helper()
	cfg.SegmentBytes = 64 << 10
	cfg.MaxAge = 1 << 62
	l := openTest(t, dir, cfg)
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		r := sidecarRecord(rng, t0.Add(time.Duration(i)*time.Millisecond))
		r.TraceID = traceName(i % 13)
		if _, err := l.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
	}
	// Keep the plain bytes before maintenance compresses them.
	plain := map[uint64][]byte{}
	l.segMu.RLock()
	sealed := append([]*segment(nil), l.segs[:len(l.segs)-1]...)
	l.segMu.RUnlock()
	for _, s := range sealed {
		data, done := s.read()
		b := make([]byte, s.size.Load())
		_, err := data.ReadAt(b, 0)
		done()
		if err != nil {
			t.Fatal(err)
		}
		plain[s.first] = b
	}
	l.closeRetired()
	l.sealAll()
	return l, plain
}

func TestCompressedSegments(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	l, plain := sealedLog(t, dir, Config{CheckpointKey: testKey, CheckpointEvery: 100}, 600)
	if len(plain) < 4 {
		t.Fatalf("only %d sealed segments", len(plain))
	}

	// Every sealed segment is compressed and its original gone; `zstd -d`
	// (any zstd decoder, which skips the seek table) gives it back.
	for first, want := range plain {
		if _, err := os.Stat(filepath.Join(dir, segName(first))); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s still there after compression (%v)", segName(first), err)
		}
		f, err := os.Open(filepath.Join(dir, zsegName(first)))
		if err != nil {
			t.Fatal(err)
		}
		dec, _ := zstd.NewReader(f)
		got, err := io.ReadAll(dec)
		dec.Close()
		f.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s decompresses to %d bytes (%v), want the %d original ones", zsegName(first), len(got), err, len(want))
		}
	}
	st := l.Stats()
	var raw int64
	for _, b := range plain {
		raw += int64(len(b))
	}
	if st.CompressedSegments != len(plain) || st.Bytes >= raw {
		t.Fatalf("stats %+v for %d plain bytes", st, raw)
	}

	// Trace, Tail, Verify and a restart read them like plain segments.
	check := func(name string, query func(string) ([]Record, error)) {
		t.Helper()
		for tr := 0; tr < 13; tr++ {
			recs, err := query(traceName(tr))
			if err != nil || len(recs) < 600/13 {
				t.Fatalf("%s: trace %d: %d records, %v", name, tr, len(recs), err)
			}
			for _, r := range recs {
				if r.TraceID != traceName(tr) || !bytes.Contains(r.Payload, []byte("[EMAIL_REDACTED]")) {
					t.Fatalf("%s: trace %d: record %+v", name, tr, r)
				}
			}
		}
	}
	check("live", func(id string) ([]Record, error) { return l.Trace(ctx, id, 0) })
	rep := mustVerify(t, dir, VerifyOptions{RequireCheckpoint: true})
	if rep.Records != 600 || rep.CompressedSegments != len(plain) || rep.DiskBytes >= rep.Bytes || rep.Bytes < raw {
		t.Fatalf("report %+v", rep)
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	check("reader", func(id string) ([]Record, error) { return r.Trace(ctx, id, 0) })
	recs, _, err := r.Tail(ctx, 600)
	r.Close()
	if err != nil || len(recs) != 600 || recs[0].Seq != 1 || recs[599].Seq != 600 {
		t.Fatalf("tail of compressed segments: %d records, %v", len(recs), err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2 := openTest(t, dir, Config{SegmentBytes: 64 << 10, MaxAge: 1 << 62})
	check("reopened", func(id string) ([]Record, error) { return l2.Trace(ctx, id, 0) })

	// Retention removes compressed segments and counts them as stored.
	limit := l2.Stats().Bytes / 2
	l2.Close()
	l3 := openTest(t, dir, Config{SegmentBytes: 64 << 10, MaxAge: 1 << 62, MaxTotalBytes: limit})
	if err := l3.enforceRetention(); err != nil {
		t.Fatal(err)
	}
	if st := l3.Stats(); st.Bytes > limit+l3.cfg.SegmentBytes || st.CompressedSegments >= len(plain) {
		t.Fatalf("after retention: %+v, limit %d", st, limit)
	}
	l3.Close()
	if rep := mustVerify(t, dir, VerifyOptions{}); rep.ChainStart != "retention" {
		t.Fatalf("after retention: %+v", rep)
	}
}

func TestCompressionNone(t *testing.T) {
	dir := t.TempDir()
	l, plain := sealedLog(t, dir, Config{Compression: CompressionNone}, 300)
	for first := range plain {
		if _, err := os.Stat(filepath.Join(dir, segName(first))); err != nil {
			t.Fatalf("plain segment: %v", err)
		}
	}
	if st := l.Stats(); st.CompressedSegments != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := Open(context.Background(), Config{Dir: t.TempDir(), Compression: "gzip"}); err == nil ||
		!strings.Contains(err.Error(), `compression "gzip" is not zstd or none`) {
		t.Fatalf("bad compression accepted: %v", err)
	}
}

// TestCompressedTampering: damage to a compressed segment is reported like
// damage to a plain one, naming the file.
func TestCompressedTampering(t *testing.T) {
	base := t.TempDir()
	l, plain := sealedLog(t, base, Config{CheckpointKey: testKey, CheckpointEvery: 100}, 500)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	firsts := keys(plain)
	first := firsts[1] // the second sealed segment
	zname := zsegName(first)
	frames := func(t *testing.T, path string) []zframe {
		data, _ := os.ReadFile(path)
		fr, err := parseSeekTable(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		return fr
	}
	tests := []struct {
		name    string
		mod     func(t *testing.T, path string)
		segment string
		problem Problem
		detail  string
	}{
		{"byte flipped inside a frame", func(t *testing.T, path string) {
			data, _ := os.ReadFile(path)
			fr := frames(t, path)[0]
			data[fr.coff+fr.clen/2] ^= 0x40
			os.WriteFile(path, data, 0o600)
		}, zname, ProblemEdited, "does not decode"},
		{"file cut short", func(t *testing.T, path string) {
			info, _ := os.Stat(path)
			os.Truncate(path, info.Size()-5)
		}, zname, ProblemEdited, "no seek table"},
		{"seek table entry changed", func(t *testing.T, path string) {
			data, _ := os.ReadFile(path)
			n := len(frames(t, path))
			entry := len(data) - zfooterLen - n*zentryLen
			binary.LittleEndian.PutUint32(data[entry+4:], binary.LittleEndian.Uint32(data[entry+4:])+1)
			os.WriteFile(path, data, 0o600)
		}, zname, ProblemEdited, "the seek table says"},
		{"decompressed, edited and left plain", func(t *testing.T, path string) {
			b := bytes.Clone(plain[first])
			i := bytes.Index(b, []byte("booking-agent"))
			copy(b[i:], "booking-agenT")
			os.WriteFile(filepath.Join(filepath.Dir(path), segName(first)), b, 0o600)
			os.Remove(path)
		}, segName(first), ProblemEdited, "hash does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, base)
			tt.mod(t, filepath.Join(dir, zname))
			_, err := Verify(context.Background(), dir, VerifyOptions{})
			var ve *VerifyError
			if !errors.As(err, &ve) || ve.Segment != tt.segment || ve.Problem != tt.problem || !strings.Contains(ve.Detail, tt.detail) {
				t.Fatalf("Verify = %v, want %s in %s containing %q", err, tt.problem, tt.segment, tt.detail)
			}
			if ve.Seq < first || ve.Seq > first+200 {
				t.Fatalf("Verify names seq %d, outside segment %s", ve.Seq, zname)
			}
		})
	}

	// A trace through a damaged frame is an error, never a wrong answer.
	dir := copyDir(t, base)
	tests[0].mod(t, filepath.Join(dir, zname))
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var failed bool
	for tr := 0; tr < 13; tr++ {
		if _, err := r.Trace(context.Background(), traceName(tr), 0); err != nil {
			failed = true
			if !strings.Contains(err.Error(), zname) {
				t.Fatalf("trace error does not name the segment: %v", err)
			}
		}
	}
	if !failed {
		t.Fatal("no trace read the damaged frame")
	}
}

// TestCompressedCopyBesidePlain: a crash between compressing a segment and
// removing the original leaves both; readers use the original, Open removes
// the copy, and maintenance compresses again.
func TestCompressedCopyBesidePlain(t *testing.T) {
	dir := t.TempDir()
	l, plain := sealedLog(t, dir, Config{}, 300)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	first := keys(plain)[0]
	// Put the original back beside its compressed copy, damaged copy first
	// so that reading it would fail.
	os.WriteFile(filepath.Join(dir, segName(first)), plain[first], 0o600)
	zpath := filepath.Join(dir, zsegName(first))
	data, _ := os.ReadFile(zpath)
	data[10] ^= 0xff
	os.WriteFile(zpath, data, 0o600)

	rep := mustVerify(t, dir, VerifyOptions{})
	if rep.Records != 300 || rep.CompressedSegments != len(plain)-1 {
		t.Fatalf("report %+v", rep)
	}
	l2 := openTest(t, dir, Config{SegmentBytes: 64 << 10, MaxAge: 1 << 62})
	if _, err := os.Stat(zpath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open kept the compressed copy: %v", err)
	}
	l2.sealAll()
	if _, err := os.Stat(zpath); err != nil {
		t.Fatalf("not compressed again: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, segName(first))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("original kept after compressing again: %v", err)
	}
	l2.Close()
	mustVerify(t, dir, VerifyOptions{})
}

// keys returns the first seqs of plain, in order.
func keys(plain map[uint64][]byte) []uint64 {
	out := slices.Collect(maps.Keys(plain))
	slices.Sort(out)
	return out
}

// zsegFixture compresses lines of various sizes (one longer than a frame)
// and returns the plain and compressed bytes.
func zsegFixture(t testing.TB) ([]byte, []byte) {
	var plainBuf bytes.Buffer
	for i := 0; i < 400; i++ {
		n := 100 + i%700
		if i == 150 {
			n = 3 * zframeTarget // a line longer than a frame
		}
		plainBuf.WriteString(strings.Repeat(string(rune('a'+i%26)), n))
		plainBuf.WriteByte('\n')
	}
	plainBytes := plainBuf.Bytes()
	var out bytes.Buffer
	if _, err := writeZseg(&out, bytes.NewReader(plainBytes), int64(len(plainBytes)), zframeTarget, nil); err != nil {
		t.Fatal(err)
	}
	return plainBytes, out.Bytes()
}

func TestZsegReadAt(t *testing.T) {
	plainBytes, comp := zsegFixture(t)
	z, err := newZsegReader(bytes.NewReader(comp), int64(len(comp)), "fixture")
	if err != nil {
		t.Fatal(err)
	}
	if z.size != int64(len(plainBytes)) || len(z.frames) < 4 {
		t.Fatalf("size %d (want %d), %d frames", z.size, len(plainBytes), len(z.frames))
	}
	for _, fr := range z.frames {
		// Frames hold whole lines.
		if plainBytes[fr.uoff+fr.ulen-1] != '\n' || (fr.uoff > 0 && plainBytes[fr.uoff-1] != '\n') {
			t.Fatalf("frame %+v does not hold whole lines", fr)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 300; i++ {
		off := rng.Int64N(int64(len(plainBytes)))
		n := rng.IntN(3 * zframeTarget)
		buf := make([]byte, n)
		got, err := z.ReadAt(buf, off)
		want := min(n, len(plainBytes)-int(off))
		if got != want || !bytes.Equal(buf[:got], plainBytes[off:off+int64(got)]) || (got < n) != errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d", n, off, got, err, want)
		}
	}
	var whole bytes.Buffer
	dec, _ := zstd.NewReader(bytes.NewReader(comp))
	io.Copy(&whole, dec)
	dec.Close()
	if !bytes.Equal(whole.Bytes(), plainBytes) {
		t.Fatal("a plain zstd decoder does not give back the segment")
	}
}

func TestParseSeekTable(t *testing.T) {
	_, good := zsegFixture(t)
	n := len(good)
	tests := []struct {
		name string
		mod  func([]byte) []byte
		want string
	}{
		{"too short", func(b []byte) []byte { return b[:10] }, "too short"},
		{"cut", func(b []byte) []byte { return b[:n-1] }, "no seek table"},
		{"descriptor", func(b []byte) []byte { b[n-5] = 0x80; return b }, "descriptor"},
		{"frame count", func(b []byte) []byte { binary.LittleEndian.PutUint32(b[n-9:], 1<<30); return b }, "claims"},
		{"frame header", func(b []byte) []byte {
			fr, _ := parseSeekTable(bytes.NewReader(b), int64(n))
			b[n-zfooterLen-len(fr)*zentryLen-zseekHeaderLen] ^= 1
			return b
		}, "frame header"},
		{"extra byte before the table", func(b []byte) []byte {
			fr, _ := parseSeekTable(bytes.NewReader(b), int64(n))
			at := n - zfooterLen - len(fr)*zentryLen - zseekHeaderLen
			return append(append(b[:at:at], 0), b[at:]...)
		}, "frames take"},
		{"empty frame", func(b []byte) []byte {
			fr, _ := parseSeekTable(bytes.NewReader(b), int64(n))
			binary.LittleEndian.PutUint32(b[n-zfooterLen-len(fr)*zentryLen+4:], 0)
			return b
		}, "entry 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mod(bytes.Clone(good))
			_, err := parseSeekTable(bytes.NewReader(b), int64(len(b)))
			if !errors.Is(err, errZseg) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseSeekTable = %v, want errZseg containing %q", err, tt.want)
			}
		})
	}
}

// FuzzSeekTable feeds arbitrary bytes to the compressed-segment reader:
// compressed segments are on disk and may be damaged; reading one must fail
// cleanly, never crash or return bytes the table does not account for. The
// seeds use small frames so that each run is quick.
func FuzzSeekTable(f *testing.F) {
	var plainBuf, small bytes.Buffer
	for i := 0; i < 12; i++ {
		plainBuf.WriteString(strings.Repeat(string(rune('a'+i)), 10+i*7) + "\n")
	}
	p := plainBuf.Bytes()
	if _, err := writeZseg(&small, bytes.NewReader(p), int64(len(p)), 40, nil); err != nil {
		f.Fatal(err)
	}
	good := small.Bytes()
	f.Add(good, int64(0), 100)
	f.Add(good, int64(77), 9)
	f.Add(good[len(good)-40:], int64(5), 10)
	f.Add([]byte{0x5e, 0x2a, 0x4d, 0x18, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0xb1, 0xea, 0x92, 0x8f}, int64(0), 1)
	f.Fuzz(func(t *testing.T, data []byte, off int64, n int) {
		z, err := newZsegReader(bytes.NewReader(data), int64(len(data)), "fuzz")
		if err != nil {
			if !errors.Is(err, errZseg) {
				t.Fatalf("error outside errZseg: %v", err)
			}
			return
		}
		var sum int64
		for i, fr := range z.frames {
			if fr.uoff != sum || fr.ulen <= 0 || fr.clen < zminFrameBytes || (i > 0 && fr.coff != z.frames[i-1].coff+z.frames[i-1].clen) {
				t.Fatalf("frame %d: %+v", i, fr)
			}
			sum += fr.ulen
		}
		if sum != z.size {
			t.Fatalf("frames sum to %d, size %d", sum, z.size)
		}
		if off < 0 || n < 0 || n > 64<<10 {
			return
		}
		buf := make([]byte, n)
		got, err := z.ReadAt(buf, off%(z.size+1))
		if got > n || (got < n && err == nil) {
			t.Fatalf("ReadAt = %d, %v", got, err)
		}
	})
}

// BenchmarkCompressSegment compresses a 4 MiB segment of sidecar-like
// records (about 1 kB of scrubbed JSON payload each) and reports the ratio
// and the compression speed (MB/s of records, each frame also decompressed
// and compared, as maintenance does).
func BenchmarkCompressSegment(b *testing.B) {
	seg := sidecarSegment(b, 4<<20)
	b.SetBytes(int64(len(seg)))
	b.ReportAllocs()
	var out bytes.Buffer
	for i := 0; i < b.N; i++ {
		out.Reset()
		if _, err := writeZseg(&out, bytes.NewReader(seg), int64(len(seg)), zframeTarget, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(seg))/float64(out.Len()), "ratio")
}

// sidecarSegment encodes sidecar-like records into about size bytes of
// segment.
func sidecarSegment(b testing.TB, size int) []byte {
	rng := rand.New(rand.NewPCG(7, 8))
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var seg, body []byte
	prev := zeroHash
	for i := 0; len(seg) < size; i++ {
		var err error
		if body, err = appendBody(body[:0], sidecarRecord(rng, t0.Add(time.Duration(i)*200*time.Microsecond))); err != nil {
			b.Fatal(err)
		}
		seg, prev = appendLine(seg, uint64(i+1), body, &prev)
	}
	return seg
}

// BenchmarkTraceCompressed answers Trace from compressed segments: a log of
// sidecar-like records (1 kB payloads) in 4 MiB segments, all sealed ones
// compressed, reopened so that they answer from their index files; each
// query reads one index block per segment and decompresses the frames that
// hold the trace's records (a request and its response). Compare with
// BenchmarkTraceCompressed/plain, the same log uncompressed.
func BenchmarkTraceCompressed(b *testing.B) {
	for _, mode := range []Compression{CompressionZstd, CompressionNone} {
		name := "zstd"
		if mode == CompressionNone {
			name = "plain"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			const n = 60000
			cfg := Config{SegmentBytes: 4 << 20, MaxAge: 1 << 62, Compression: mode}
			l := openTest(b, dir, cfg)
			rng := rand.New(rand.NewPCG(9, 10))
			t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			for i := 0; i < n; i++ {
				r := sidecarRecord(rng, t0.Add(time.Duration(i)*time.Millisecond))
				// A request and, 100 records later, its response.
				r.TraceID = "trace-" + itoa(i/200*100+i%100)
				if _, err := l.Append(context.Background(), r); err != nil {
					b.Fatal(err)
				}
			}
			l.Close()
			l = openTest(b, dir, cfg)
			l.closeRetired()
			l.sealAll()
			st := l.Stats()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := "trace-" + itoa(rng.IntN(n/2))
				recs, err := l.Trace(ctx, id, 0)
				if err != nil || len(recs) != 2 {
					b.Fatalf("Trace(%s) = %d records, %v", id, len(recs), err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(st.Segments), "segments")
			b.ReportMetric(float64(st.Bytes)/(1<<20), "MiB-on-disk")
		})
	}
}

// BenchmarkVerifyCompressed measures Verify over compressed segments, in
// bytes of records per second (compare BenchmarkVerify).
func BenchmarkVerifyCompressed(b *testing.B) {
	dir := b.TempDir()
	if err := buildBigLog(dir, 100_000); err != nil {
		b.Fatal(err)
	}
	files, _ := listSegments(dir)
	var size int64
	for _, sf := range files {
		size += sf.size
		data, _ := openPlain(dir, sf.name)
		if _, err := compressSegment(data.f, sf.size, filepath.Join(dir, zsegName(sf.first)), nil); err != nil {
			b.Fatal(err)
		}
		data.Close()
		os.Remove(filepath.Join(dir, sf.name))
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
