package recorder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// TestPreallocatedActiveSegment: the active segment is preallocated (its
// tail zeros) while the log is open; every reader stops at the zeros; Close
// cuts the file to its records and a reopened log preallocates it again.
func TestPreallocatedActiveSegment(t *testing.T) {
	for _, pwrite := range []bool{false, true} {
		t.Run(fmt.Sprintf("pwrite=%v", pwrite), func(t *testing.T) {
			withPwrite(t, pwrite)
			dir := t.TempDir()
			ctx := context.Background()
			const segBytes = 1 << 20
			l := openTest(t, dir, Config{SegmentBytes: segBytes})
			if (l.out.mem != nil) == pwrite && runtime.GOOS == "linux" {
				t.Fatalf("mapped %v with pwrite %v", l.out.mem != nil, pwrite)
			}
			appendN(t, l, 50, 5)
			path := filepath.Join(dir, segName(1))
			if info, err := os.Stat(path); err != nil || info.Size() != segBytes {
				t.Fatalf("active segment: %v, %v; want %d bytes preallocated", info.Size(), err, segBytes)
			}
			rep := mustVerify(t, dir, VerifyOptions{})
			if rep.Records != 50 || rep.TornTailBytes != 0 || rep.Bytes != l.Stats().ActiveBytes {
				t.Fatalf("verify of the open log: %+v", rep)
			}
			r, err := OpenReader(dir)
			if err != nil {
				t.Fatal(err)
			}
			recs, cur, err := r.Tail(ctx, 3)
			if err != nil || len(recs) != 3 || recs[2].Seq != 50 {
				t.Fatalf("tail: %d records, %v", len(recs), err)
			}
			if got, err := r.Trace(ctx, traceName(2), 0); err != nil || len(got) != 10 {
				t.Fatalf("reader trace: %d records, %v", len(got), err)
			}
			fctx, cancel := context.WithCancel(ctx)
			followed := make(chan uint64, 100)
			done := make(chan error)
			go func() {
				done <- r.Follow(fctx, cur, 5*time.Millisecond, func(rec Record) error { followed <- rec.Seq; return nil })
			}()
			appendN(t, l, 5, 5)
			for want := uint64(51); want <= 55; want++ {
				select {
				case got := <-followed:
					if got != want {
						t.Fatalf("followed seq %d, want %d", got, want)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("follow did not deliver seq %d", want)
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			r.Close()

			size := l.Stats().ActiveBytes
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if info, _ := os.Stat(path); info.Size() != size {
				t.Fatalf("closed segment is %d bytes, its records %d", info.Size(), size)
			}
			l2 := openTest(t, dir, Config{SegmentBytes: segBytes})
			if info, _ := os.Stat(path); info.Size() != segBytes {
				t.Fatalf("reopened segment is %d bytes, want %d preallocated", info.Size(), segBytes)
			}
			if seq := appendN(t, l2, 1, 1)[0]; seq != 56 {
				t.Fatalf("next seq %d, want 56", seq)
			}
			l2.Close()
			if rep := mustVerify(t, dir, VerifyOptions{}); rep.Records != 56 || rep.Recoveries != 0 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// TestCrashLeftovers opens copies of a live log's directory — what a crash
// leaves — changed the ways a crash can change them.
func TestCrashLeftovers(t *testing.T) {
	live := t.TempDir()
	l := openTest(t, live, Config{SegmentBytes: 64 << 10, Compression: CompressionNone, MaxAge: 1 << 62})
	appendN(t, l, 500, 7)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	segs := segFiles(t, live)
	if len(segs) < 2 {
		t.Fatalf("%d segments", len(segs))
	}
	last := filepath.Base(segs[len(segs)-1])
	end := l.Stats().ActiveBytes
	partial := []byte(`{"seq":501,"kind":"request","trace_id":"tr`)
	writeAt := func(t *testing.T, path string, off int64, b []byte) {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		mod       func(t *testing.T, dir string)
		tornCheck int64 // TornTailBytes Verify reports before Open
		tornOpen  int64 // bytes Open cuts (and records); 0: no recovery record
	}{
		{"killed between records", func(*testing.T, string) {}, 0, 0},
		{"killed while copying a record", func(t *testing.T, dir string) {
			writeAt(t, filepath.Join(dir, last), end, partial)
		}, int64(len(partial)), int64(len(partial))},
		{"machine crash: a later page written back, not the one before", func(t *testing.T, dir string) {
			writeAt(t, filepath.Join(dir, last), end, partial)
			writeAt(t, filepath.Join(dir, last), end+8192, []byte(`"hash":"abc"}`+"\n"))
		}, int64(len(partial)), 8192 + 14},
		{"crash before a sealed segment's tail was cut", func(t *testing.T, dir string) {
			p := segs[0]
			info, _ := os.Stat(p)
			os.Truncate(filepath.Join(dir, filepath.Base(p)), info.Size()+12345)
		}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, live)
			tt.mod(t, dir)
			rep := mustVerify(t, dir, VerifyOptions{})
			if rep.Records != 500 || rep.TornTailBytes != tt.tornCheck {
				t.Fatalf("before Open: %d records, %d torn bytes; want 500, %d", rep.Records, rep.TornTailBytes, tt.tornCheck)
			}
			r, err := OpenReader(dir)
			if err != nil {
				t.Fatal(err)
			}
			if recs, _, err := r.Tail(context.Background(), 1); err != nil || len(recs) != 1 || recs[0].Seq != 500 {
				t.Fatalf("reader before Open: %v, %v", recs, err)
			}
			r.Close()

			buf := &logBuffer{}
			l2 := openTest(t, dir, Config{SegmentBytes: 64 << 10, Compression: CompressionNone, MaxAge: 1 << 62, Logger: buf.logger()})
			seq := appendN(t, l2, 1, 1)[0]
			if err := l2.Close(); err != nil {
				t.Fatal(err)
			}
			rep = mustVerify(t, dir, VerifyOptions{})
			wantSeq := uint64(501)
			if tt.tornOpen > 0 {
				wantSeq = 502 // after the recovery record
				if !containsAll(buf.String(), "torn last line", "bytes="+strconv.FormatInt(tt.tornOpen, 10)) {
					t.Fatalf("cut not logged with %d bytes: %s", tt.tornOpen, buf.String())
				}
			}
			if seq != wantSeq || rep.LastSeq != wantSeq || rep.TornTailBytes != 0 {
				t.Fatalf("after Open: appended seq %d, report %+v; want seq %d", seq, rep, wantSeq)
			}
			for _, p := range segFiles(t, dir) {
				data := segBytes(t, p)
				if bytes.IndexByte(data, 0) >= 0 || bytes.Contains(data, []byte(`"hash":"abc"`)) {
					t.Fatalf("%s keeps zeros or crash leftovers after Open and Close", filepath.Base(p))
				}
			}
			if tt.tornOpen > 0 {
				recs := allRecords(t, dir)
				var d map[string]any
				r, _ := OpenReader(dir)
				got, _, _ := r.Tail(context.Background(), 2)
				r.Close()
				json.Unmarshal(got[0].Details, &d)
				if got[0].Kind != KindRecovery || d["bytes"] != float64(tt.tornOpen) || len(recs) != 502 {
					t.Fatalf("recovery record %s %s", got[0].Kind, got[0].Details)
				}
			}
		})
	}
}

// TestMappedPagesDropped: the process keeps only about populateAhead bytes
// of the active segment mapped, however much it wrote: resident memory does
// not grow with the segment.
func TestMappedPagesDropped(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/smaps")
	}
	l := openTest(t, t.TempDir(), Config{SegmentBytes: 32 << 20, SyncInterval: 1 << 40})
	if l.out.mem == nil {
		t.Skip("segment not mapped")
	}
	big := []byte(`"` + strings.Repeat("x", 4000) + `"`)
	for i := 0; i < 4000; i++ { // about 16 MiB
		if _, err := l.Append(context.Background(), &Record{Kind: KindRequest, AgentID: "a", Payload: big, PayloadValid: true}); err != nil {
			t.Fatal(err)
		}
		if i%500 == 499 {
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
	}
	rss := mappingRSS(t, uintptr(unsafe.Pointer(&l.out.mem[0])))
	if rss > 3<<20 {
		t.Fatalf("the mapping of a segment with %d MiB written has %d KiB resident", l.Stats().ActiveBytes>>20, rss>>10)
	}
}

// mappingRSS returns the resident bytes of the mapping starting at addr.
func mappingRSS(t *testing.T, addr uintptr) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if start, _, ok := strings.Cut(line, "-"); ok && !strings.Contains(start, " ") && strings.Contains(line, " ") {
			a, err := strconv.ParseUint(start, 16, 64)
			in = err == nil && uintptr(a) == addr
			continue
		}
		if v, ok := strings.CutPrefix(line, "Rss:"); ok && in {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	t.Fatalf("mapping at %#x not found", addr)
	return 0
}

// FuzzSegReader feeds arbitrary bytes to the segment line reader with its
// zeroed-tail rule: every line it returns is whole, holds no NUL byte and
// no newline, sits at the offset it reports, and reading stops for good at
// the first NUL.
func FuzzSegReader(f *testing.F) {
	f.Add([]byte("{\"seq\":1}\n{\"seq\":2}\n\x00\x00\x00"))
	f.Add([]byte("{\"seq\":1}\n{\"se\x00\x00\n{\"seq\":3}\n"))
	f.Add([]byte("a\nb"))
	f.Add([]byte("\x00a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lr := newSegReader(bytes.NewReader(data), 0, int64(len(data)))
		next := int64(0)
		for {
			line, off, err := lr.next()
			if err != nil {
				if off != next {
					t.Fatalf("stopped at offset %d, after whole lines up to %d", off, next)
				}
				if errors.Is(err, errPartial) && (bytes.IndexByte(line, 0) >= 0 || !bytes.Equal(line, data[off:off+int64(len(line))])) {
					t.Fatalf("partial line %q is not the bytes at %d up to a NUL", line, off)
				}
				if _, _, err2 := lr.next(); err2 == nil {
					t.Fatal("a line after the end")
				}
				return
			}
			if off != next || bytes.IndexByte(line, 0) >= 0 || bytes.IndexByte(line, '\n') >= 0 ||
				!bytes.Equal(line, data[off:off+int64(len(line))]) || data[off+int64(len(line))] != '\n' {
				t.Fatalf("line %q at %d (expected offset %d)", line, off, next)
			}
			next = off + int64(len(line)) + 1
		}
	})
}
