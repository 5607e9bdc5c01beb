package recorder

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashDirEnv = "IATP_RECORDER_CRASH_DIR"

// crashConfig is the configuration of the appender child of run: small
// segments, so that kills land during rotations, index writes and
// compressions too; checkpoints, which must still hold after every crash;
// every third run fsyncs each record (SyncAlways), every fourth writes with
// pwrite instead of the mapping.
func crashConfig(dir string, run int) Config {
	cfg := Config{Dir: dir, SegmentBytes: 32 << 10, CheckpointKey: testKey, CheckpointEvery: 50,
		Logger: quietLogger()}
	if run%3 == 2 {
		cfg.Sync = SyncAlways
	}
	return cfg
}

// TestHelperAppender is the child process of TestCrashSIGKILL: it appends
// from several goroutines until killed, printing "seq trace\n" after each
// Append returns.
func TestHelperAppender(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashSIGKILL")
	}
	run, _ := strconv.Atoi(os.Getenv("IATP_RECORDER_CRASH_RUN"))
	usePwrite = run%4 == 3
	l, err := Open(context.Background(), crashConfig(dir, run))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	var out sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				tr := fmt.Sprintf("r%d-w%d-%d", run, w, i)
				seq, err := l.Append(context.Background(), &Record{Kind: KindRequest, TraceID: tr, AgentID: "crash",
					Payload: []byte(`{"pad":"` + strings.Repeat("p", i%300) + `"}`), PayloadValid: i%2 == 0})
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(4)
				}
				out.Lock()
				os.Stdout.WriteString(strconv.FormatUint(seq, 10) + " " + tr + "\n")
				out.Unlock()
			}
		}(w)
	}
	wg.Wait()
}

// crashState is what a kill left in the directory, before anything reads it.
type crashState struct {
	zeroTail   bool // the last segment ends in its zeroed preallocation
	unsealed   int  // sealed segments whose preallocated tail was not cut yet
	shadows    int  // compressed copies beside their plain segment
	compressed int  // compressed segments
}

func inspectCrash(t *testing.T, dir string) crashState {
	t.Helper()
	var st crashState
	files, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, sf := range files {
		if sf.shadow != "" {
			st.shadows++
		}
		if sf.compressed {
			st.compressed++
			continue
		}
		data := segBytes(t, filepath.Join(dir, sf.name))
		if n := len(data); n > 0 && data[n-1] == 0 {
			if i == len(files)-1 {
				st.zeroTail = true
			} else {
				st.unsealed++
			}
		}
	}
	return st
}

// TestCrashSIGKILL kills an appending child at random moments and checks,
// after each kill, that the log opens, verifies, and holds every record whose
// Append had returned.
func TestCrashSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	dir := t.TempDir()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	acked := map[uint64]string{}
	var seen struct{ zeroTail, unsealed, shadows, compressed int }
	const runs = 24
	for run := 0; run < runs; run++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperAppender$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, "IATP_RECORDER_CRASH_RUN="+strconv.Itoa(run))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan map[uint64]string)
		first := make(chan struct{})
		go func() {
			got := map[uint64]string{}
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				seq, tr, ok := strings.Cut(sc.Text(), " ")
				n, err := strconv.ParseUint(seq, 10, 64)
				if ok && err == nil {
					if len(got) == 0 {
						close(first)
					}
					got[n] = tr
				}
			}
			lines <- got
		}()
		if run%6 == 5 {
			// Some kills land during start-up (open, repair, recovery record).
			time.Sleep(time.Duration(rng.IntN(60)) * time.Millisecond)
		} else {
			select {
			case <-first:
			case <-time.After(time.Minute):
				cmd.Process.Kill()
				t.Fatalf("run %d: child did not append: %s", run, stderr.String())
			}
			time.Sleep(time.Duration(1+rng.IntN(80)) * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		got := <-lines // whole lines already in the pipe were acknowledged
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("run %d: child exited on its own (%v): %s", run, err, stderr.String())
		}
		for seq, tr := range got {
			if prev, dup := acked[seq]; dup {
				t.Fatalf("run %d: seq %d acknowledged twice (%s, %s)", run, seq, prev, tr)
			}
			acked[seq] = tr
		}

		// What the kill left must verify as it is, with read-only tools
		// (no writer has cut anything yet), then open without
		// --recorder-recover and verify again.
		st := inspectCrash(t, dir)
		trusted := VerifyOptions{TrustedKeys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}}
		before, err := Verify(context.Background(), dir, trusted)
		if err != nil && !errors.Is(err, ErrNoLog) {
			t.Fatalf("run %d: verify right after SIGKILL (%+v): %v", run, st, err)
		}
		l, err := Open(context.Background(), crashConfig(dir, run))
		if err != nil {
			t.Fatalf("run %d: reopen after SIGKILL (%+v): %v", run, st, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		rep, err := Verify(context.Background(), dir, trusted)
		if err != nil {
			t.Fatalf("run %d: verify after SIGKILL: %v", run, err)
		}
		if rep.LastSeq < before.LastSeq {
			t.Fatalf("run %d: reopening lost records: seq %d before, %d after", run, before.LastSeq, rep.LastSeq)
		}
		seen.zeroTail += b2i(st.zeroTail)
		seen.unsealed += st.unsealed
		seen.shadows += st.shadows
		seen.compressed = max(seen.compressed, st.compressed)
		t.Logf("run %d: %d acknowledged this run, log at seq %d, %d segments (%d compressed), torn %d bytes, left %+v",
			run, len(got), rep.LastSeq, rep.Segments, rep.CompressedSegments, before.TornTailBytes, st)
	}
	if seen.zeroTail == 0 || seen.compressed == 0 {
		t.Errorf("the kills never left a preallocated tail or compressed segments: %+v", seen)
	}
	t.Logf("over all runs: %+v", seen)
	// Every acknowledged record is there, with its own trace id.
	onDisk := allRecords(t, dir)
	for seq, tr := range acked {
		if onDisk[seq] != tr {
			t.Fatalf("acknowledged seq %d (%s) is %q on disk", seq, tr, onDisk[seq])
		}
	}
	if len(acked) < runs {
		t.Fatalf("only %d records acknowledged over %d runs: the children barely ran", len(acked), runs)
	}
	t.Logf("%d acknowledged records all present", len(acked))
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// allRecords returns trace ids by seq for the whole log.
func allRecords(t *testing.T, dir string) map[uint64]string {
	t.Helper()
	out := map[uint64]string{}
	for _, p := range segFiles(t, dir) {
		for _, line := range readLines(t, p) {
			var r Record
			if err := decodeLine(line[:len(line)-1], &r); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			out[r.Seq] = r.TraceID
		}
	}
	return out
}
