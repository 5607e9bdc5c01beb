package natsmesh

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/reputation"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func keyOf(t testing.TB, name string) identity.PrivateKey {
	t.Helper()
	seed := make([]byte, 32)
	copy(seed, name)
	k, err := identity.PrivateKeyFromSeed(seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startServer runs an embedded NATS server with JetStream on loopback.
// port −1 picks one.
func startServer(t testing.TB, port int, storeDir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: storeDir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

type natsNode struct {
	id   string
	node *reputation.Node
	mesh *Mesh
}

func reportersOf(t testing.TB, n int) map[string]ed25519.PublicKey {
	out := map[string]ed25519.PublicKey{}
	for i := range n {
		id := fmt.Sprint("node-", i)
		out[id] = keyOf(t, id).PublicKey()
	}
	return out
}

func startNode(t testing.TB, url string, i int, reporters map[string]ed25519.PublicKey, queue ...int) *natsNode {
	t.Helper()
	id := fmt.Sprint("node-", i)
	node, err := reputation.Open(context.Background(), reputation.NodeConfig{
		Dir: t.TempDir(), AgentID: id, Key: keyOf(t, id), Reporters: reporters, Logger: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = node.Close(ctx)
	})
	cfg := Config{Node: node, URL: url, Logger: quiet}
	if len(queue) > 0 {
		cfg.Queue = queue[0]
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &natsNode{id: id, node: node, mesh: m}
}

func waitFor(t testing.TB, within time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Since(start)
}

func allHave(nodes []*natsNode, subject string, want reputation.Points) func() bool {
	return func() bool {
		for _, n := range nodes {
			if p, ok := n.node.Score(subject); !ok || p != want {
				return false
			}
		}
		return true
	}
}

func TestEventsReachEveryNodeAndLateJoinersCatchUp(t *testing.T) {
	srv := startServer(t, -1, t.TempDir())
	reporters := reportersOf(t, 4)
	var nodes []*natsNode
	for i := range 3 {
		nodes = append(nodes, startNode(t, srv.ClientURL(), i, reporters))
	}
	ctx := context.Background()
	for i, n := range nodes {
		if _, err := n.node.Report(ctx, reputation.Report{Subject: "liar", Type: "error", TraceID: fmt.Sprint("t-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "three reports everywhere", allHave(nodes, "liar", 350))
	late := startNode(t, srv.ClientURL(), 3, reporters)
	waitFor(t, 10*time.Second, "the late joiner catches up", allHave([]*natsNode{late}, "liar", 350))
}

// TestOutageLosesNothing: while the server is down, nodes keep deciding
// and reporting; when it comes back, every event reaches every node —
// also when the publish queue overflowed during the outage.
func TestOutageLosesNothing(t *testing.T) {
	t.Run("queue holds", func(t *testing.T) { testOutage(t, 0) })
	t.Run("queue overflows", func(t *testing.T) { testOutage(t, 4) })
}

func testOutage(t *testing.T, queue int) {
	store := t.TempDir()
	srv := startServer(t, -1, store)
	port := srv.Addr().(*net.TCPAddr).Port
	url := srv.ClientURL()
	reporters := reportersOf(t, 3)
	var nodes []*natsNode
	for i := range 3 {
		nodes = append(nodes, startNode(t, url, i, reporters, queue))
	}
	ctx := context.Background()
	if _, err := nodes[0].node.Report(ctx, reputation.Report{Subject: "warmup", Type: "error"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "warm-up", allHave(nodes, "warmup", 450))
	srv.Shutdown()
	srv.WaitForShutdown()
	var ids []string
	for i := range 40 {
		res, err := nodes[i%2].node.Report(ctx, reputation.Report{Subject: fmt.Sprint("agent-", i%4), Type: "timeout", TraceID: fmt.Sprint("t-", i)})
		if err != nil {
			t.Fatalf("report during the outage: %v", err)
		}
		ids = append(ids, res.EventID)
	}
	// Local decisions went on.
	if p, _ := nodes[0].node.Score("agent-0"); p != 100 {
		t.Fatalf("agent-0 at %s on node 0 during the outage", p)
	}
	startServer(t, port, store)
	for _, n := range nodes {
		waitFor(t, 20*time.Second, n.id+" has every event", func() bool {
			evs, err := n.node.Events(ids)
			return err == nil && len(evs) == len(ids)
		})
	}
	for i := range 4 {
		waitFor(t, 5*time.Second, "scores agree", allHave(nodes, fmt.Sprint("agent-", i), 100))
	}
	if dropped := nodes[0].mesh.Stats().Dropped; (queue > 0) != (dropped > 0) {
		t.Fatalf("queue %d dropped %d", queue, dropped)
	}
}

// TestForgedEventOnTheStreamIsRefused: the server is trusted with
// delivery, not content.
func TestForgedEventOnTheStreamIsRefused(t *testing.T) {
	srv := startServer(t, -1, t.TempDir())
	reporters := reportersOf(t, 2)
	a := startNode(t, srv.ClientURL(), 0, reporters)
	b := startNode(t, srv.ClientURL(), 1, reporters)
	ctx := context.Background()
	res, err := a.node.Report(ctx, reputation.Report{Subject: "x", Type: "error"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "genuine event", allHave([]*natsNode{b}, "x", 450))
	evs, _ := a.node.Events([]string{res.EventID})
	forged := evs[0]
	forged.Body.Subject = "victim"
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish(DefaultSubject, forged.AppendJSON(nil)); err != nil {
		t.Fatal(err)
	}
	if err := nc.Publish(DefaultSubject, []byte(`{"not":"an event"}`)); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	waitFor(t, 10*time.Second, "both received", func() bool { return b.mesh.Stats().Received >= 3 })
	if _, ok := b.node.Score("victim"); ok {
		t.Fatal("a forged event moved a score")
	}
}

// TestWipedNodeReadsHistoryAgain: a node that comes back with an empty
// data directory (same agent id) gets every event from the stream again.
func TestWipedNodeReadsHistoryAgain(t *testing.T) {
	srv := startServer(t, -1, t.TempDir())
	reporters := reportersOf(t, 2)
	a := startNode(t, srv.ClientURL(), 0, reporters)
	b := startNode(t, srv.ClientURL(), 1, reporters)
	ctx := context.Background()
	if _, err := a.node.Report(ctx, reputation.Report{Subject: "x", Type: "error"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b has it", allHave([]*natsNode{b}, "x", 450))
	if err := b.node.Close(ctx); err != nil {
		t.Fatal(err)
	}
	again := startNode(t, srv.ClientURL(), 1, reporters) // a new temp dir: wiped
	waitFor(t, 10*time.Second, "the wiped node reads the history", allHave([]*natsNode{again}, "x", 450))
}
