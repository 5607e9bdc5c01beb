package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iatp/iatp/recorder"
	"github.com/iatp/iatp/sidecar"
)

// TestSidecarReportsEveryConfigProblem checks that one run names every
// problem of every source, each with its remedy.
func TestSidecarReportsEveryConfigProblem(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "iatp.yaml")
	if err := os.WriteFile(conf, []byte("agent_url: http://127.0.0.1:8000\nagent_timout: 5s\nrecorder:\n  sync: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := run(t, "sidecar", "--config", conf, "--listen", "8011", "--manifest", filepath.Join(dir, "absent.json"), "--data-dir", dir)
	if code != exitFail {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{
		"cannot start the sidecar (4 problems):",
		"iatp.yaml:2: unknown key agent_timout (did you mean agent_timeout?)",
		`--listen "8011" has no host: did you mean 127.0.0.1:8011 (this machine only) or :8011 (every interface)?`,
		"absent.json: no such file or directory (check the path",
		`recorder.sync: "sometimes" is not batch or always`,
		"Fix them and start again; docs/configuration.md lists every setting.",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	code, _, errOut = run(t, "sidecar", "--config", filepath.Join(dir, "missing.yaml"), "--agent-url", "http://127.0.0.1:8000", "--manifest", exampleManifest("secure_bank.json"))
	if code != exitUsage || !strings.Contains(errOut, "missing.yaml: no such file") {
		t.Errorf("missing --config: exit %d, stderr %s", code, errOut)
	}
}

// TestSidecarLockedDataDir checks that a data directory in use says so and
// how to find the other process.
func TestSidecarLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	log, err := recorder.Open(context.Background(), recorder.Config{Dir: filepath.Join(dir, "recorder")})
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	code, _, errOut := run(t, "sidecar", "--agent-url", "http://127.0.0.1:8000", "--manifest", exampleManifest("secure_bank.json"),
		"--data-dir", dir, "--listen", "127.0.0.1:0")
	if code != exitFail {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"the data directory " + dir + " is in use", "fuser -v " + filepath.Join(dir, "recorder", "LOCK"), "--data-dir"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

func TestExplainStartError(t *testing.T) {
	cfg := sidecar.Config{DataDir: "/var/lib/iatp"}
	corrupt := fmt.Errorf("sidecar: flight recorder: %w", &recorder.VerifyError{Segment: "seg-1.log", Seq: 7, Problem: recorder.ProblemEdited, Detail: "hash does not match"})
	got := explainStartError(corrupt, cfg).Error()
	for _, want := range []string{"failed verification", "seq 7: edited", "iatp audit verify /var/lib/iatp", "--recorder-recover", "recovered-<time>"} {
		if !strings.Contains(got, want) {
			t.Errorf("corrupt log: %q lacks %q", got, want)
		}
	}
	got = explainStartError(fmt.Errorf("sidecar: invalid configuration: %w", fmt.Errorf("x")), cfg).Error()
	if !strings.Contains(got, "cannot start the sidecar: sidecar: invalid configuration: x\nFix it") {
		t.Errorf("other errors: %q", got)
	}
}

// TestSidecarAddressInUse checks the remedy for a listen address taken.
func TestSidecarAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, errOut := run(t, "sidecar", "--agent-url", "http://"+ln.Addr().String(), "--manifest", exampleManifest("secure_bank.json"),
		"--data-dir", t.TempDir(), "--listen", ln.Addr().String())
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if code != exitFail || !strings.Contains(errOut, "another process listens there") || !strings.Contains(errOut, "sport = :"+port) {
		t.Errorf("exit %d, stderr:\n%s", code, errOut)
	}
}

// TestSidecarWarnsWhenAgentUnreachable checks the start-up warning, and its
// absence when the agent answers.
func TestSidecarWarnsWhenAgentUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	agent := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer agent.Close()

	logs := runSidecarBriefly(t, "--agent-url", closed)
	for _, want := range []string{"the agent does not accept connections", "agent_url=" + closed, "connection refused", "is the agent running and listening on " + l.Addr().String()} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if logs := runSidecarBriefly(t, "--agent-url", agent.URL); strings.Contains(logs, "does not accept connections") {
		t.Errorf("warned about a reachable agent:\n%s", logs)
	}
}

// TestSidecarJSON checks that --json logs JSON, start-up failures included.
func TestSidecarJSON(t *testing.T) {
	logs := runSidecarBriefly(t, "--json", "--agent-url", "http://127.0.0.1:1")
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("not a JSON log line: %s", line)
		}
	}
	code, out, errOut := run(t, "sidecar", "--json", "--listen", "8011", "--agent-url", "http://127.0.0.1:1", "--manifest", exampleManifest("secure_bank.json"))
	var rec struct {
		Level, Msg, Error string
		ExitStatus        int `json:"exit_status"`
	}
	if err := json.Unmarshal([]byte(errOut), &rec); err != nil || code != exitFail || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr not one JSON record (%v): %s", code, out, err, errOut)
	}
	if rec.Level != "ERROR" || !strings.Contains(rec.Error, `--listen "8011" has no host`) || rec.ExitStatus != exitFail {
		t.Errorf("record %+v", rec)
	}
	if code, _, errOut := run(t, "sidecar", "--json", "--log-format", "text"); code != exitUsage || !strings.Contains(errOut, "drop one of them") {
		t.Errorf("--json with --log-format text: exit %d %s", code, errOut)
	}
}

// runSidecarBriefly starts iatp sidecar with the secure bank manifest and
// args, stops it once it serves, and returns its log.
func runSidecarBriefly(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan int, 1)
	args = append([]string{"sidecar", "--manifest", exampleManifest("secure_bank.json"), "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--egress-listen", "127.0.0.1:0"}, args...)
	go func() { done <- Main(ctx, args, strings.NewReader(""), &bytes.Buffer{}, &logs) }()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(logs.String(), "iatp sidecar serving") {
		select {
		case code := <-done:
			t.Fatalf("sidecar exited %d:\n%s", code, logs.String())
		case <-deadline:
			t.Fatalf("sidecar did not start:\n%s", logs.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if code := <-done; code != exitOK {
		t.Errorf("exit %d after shutdown:\n%s", code, logs.String())
	}
	return logs.String()
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
