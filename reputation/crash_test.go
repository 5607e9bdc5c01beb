package reputation

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashChildEnv = "IATP_REPUTATION_CRASH_CHILD"

// TestMain lets the crash test re-execute this binary as the child that
// gets killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashChild reports events from four goroutines as fast as it can and
// prints the id of each one as soon as Report acknowledged it.
func crashChild(dir string) {
	seed := make([]byte, 32)
	copy(seed, "crash-node")
	n, err := Open(context.Background(), NodeConfig{Dir: dir, AgentID: "crash-node", Key: mustKey(seed), Logger: quiet})
	if err != nil {
		fmt.Println("ERR", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				res, err := n.Report(context.Background(), Report{Subject: fmt.Sprintf("agent-%d-%d", g, i%500), Type: TypeError, TraceID: fmt.Sprintf("t-%d-%d", g, i)})
				if err != nil {
					fmt.Println("ERR", err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintln(out, "ACK", res.EventID)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// TestKillDuringBurstLosesNothingAcknowledged SIGKILLs a process in the
// middle of a burst of reports and checks that every report it
// acknowledged is in the database after a restart.
func TestKillDuringBurstLosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(stdout)
	deadline := time.Now().Add(30 * time.Second)
	for sc.Scan() {
		line := sc.Text()
		id, ok := strings.CutPrefix(line, "ACK ")
		if !ok {
			t.Fatalf("child: %s", line)
		}
		acked = append(acked, id)
		if len(acked) == 300 || time.Now().After(deadline) {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Lines printed before the kill landed were acknowledged too.
	for sc.Scan() {
		if id, ok := strings.CutPrefix(sc.Text(), "ACK "); ok {
			acked = append(acked, id)
		}
	}
	_ = cmd.Wait()
	if len(acked) < 50 {
		t.Fatalf("only %d acknowledged before the deadline", len(acked))
	}
	n := openNode(t, dir, "crash-node", time.Now, nil)
	evs, err := n.Events(acked)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != len(acked) {
		t.Fatalf("%d of %d acknowledged events survived the kill", len(evs), len(acked))
	}
	t.Logf("%d acknowledged, all present; %d events on disk", len(acked), n.Stats().Events)
}
