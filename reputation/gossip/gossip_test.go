package gossip

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// swap is a handler set after its server started (so that URLs are known
// before the nodes that need them).
type swap struct{ h atomic.Pointer[http.Handler] }

func (s *swap) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := s.h.Load()
	if h == nil {
		http.Error(w, "not ready", http.StatusServiceUnavailable)
		return
	}
	(*h).ServeHTTP(w, r)
}

type meshNode struct {
	id     string
	node   *reputation.Node
	gossip *Gossip
	srv    *httptest.Server
	sw     *swap
	dir    string
}

// startMesh starts n nodes named node-0… on loopback; peersOf gives the
// indices of each node's peers.
func startMesh(t testing.TB, n int, peersOf func(i int) []int, tweak func(*Config)) []*meshNode {
	t.Helper()
	nodes := make([]*meshNode, n)
	reporters := map[string]ed25519.PublicKey{}
	for i := range nodes {
		id := fmt.Sprint("node-", i)
		sw := &swap{}
		srv := httptest.NewServer(sw)
		t.Cleanup(srv.Close)
		nodes[i] = &meshNode{id: id, sw: sw, srv: srv, dir: t.TempDir()}
		reporters[id] = keyOf(t, id).PublicKey()
	}
	for i, m := range nodes {
		node, err := reputation.Open(context.Background(), reputation.NodeConfig{
			Dir: m.dir, AgentID: m.id, Key: keyOf(t, m.id), Reporters: reporters, Logger: quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = node.Close(context.Background()) })
		h, err := NewHandler(HandlerConfig{Node: node, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var hh http.Handler = h
		m.sw.h.Store(&hh)
		var peers []string
		for _, j := range peersOf(i) {
			peers = append(peers, nodes[j].srv.URL)
		}
		cfg := Config{Node: node, Key: keyOf(t, m.id), Peers: peers, AntiEntropy: -1, Logger: quiet}
		if tweak != nil {
			tweak(&cfg)
		}
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.node, m.gossip = node, g
	}
	// Stop every transport before any node closes, so that none waits for
	// a peer that is already gone.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		for _, m := range nodes {
			_ = m.gossip.Close(ctx)
		}
	})
	return nodes
}

func allOthers(n int) func(int) []int {
	return func(i int) []int {
		var out []int
		for j := 0; j < n; j++ {
			if j != i {
				out = append(out, j)
			}
		}
		return out
	}
}

// waitScore waits until every node holds want for subject.
func waitScore(t testing.TB, nodes []*meshNode, subject string, want reputation.Points, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		all := true
		for _, m := range nodes {
			if p, ok := m.node.Score(subject); !ok || p != want {
				all = false
				break
			}
		}
		if all {
			return time.Since(start)
		}
		if time.Since(start) > within {
			for _, m := range nodes {
				p, ok := m.node.Score(subject)
				t.Logf("%s: %s %v", m.id, p, ok)
			}
			t.Fatalf("%s did not reach %s on every node within %s", subject, want, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestPushReachesPeers(t *testing.T) {
	nodes := startMesh(t, 3, allOthers(3), nil)
	ctx := context.Background()
	if _, err := nodes[0].node.Report(ctx, reputation.Report{Subject: "liar", Type: "hallucination", Severity: "critical"}); err != nil {
		t.Fatal(err)
	}
	waitScore(t, nodes, "liar", 300, 5*time.Second)
}

// TestAntiEntropyHealsAnOutage: a peer that was down while events were
// made gets them from the next anti-entropy round, and the nodes agree.
func TestAntiEntropyHealsAnOutage(t *testing.T) {
	nodes := startMesh(t, 3, allOthers(3), func(c *Config) { c.Queue = 4 })
	ctx := context.Background()
	down := nodes[2]
	var off http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	})
	saved := down.sw.h.Load()
	down.sw.h.Store(&off)
	for i := range 30 {
		if _, err := nodes[i%2].node.Report(ctx, reputation.Report{Subject: fmt.Sprint("agent-", i%5), Type: "error", TraceID: fmt.Sprint("t-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Queues of 4 dropped most pushes: anti-entropy brings the rest.
	if err := nodes[0].gossip.SyncNow(ctx); err != nil && !strings.Contains(err.Error(), "503") {
		t.Fatal(err)
	}
	waitScore(t, nodes[:2], "agent-0", 200, 5*time.Second)
	if nodes[0].gossip.Dropped() == 0 {
		t.Error("no push was dropped: the test does not test anti-entropy")
	}
	if _, ok := down.node.Score("agent-0"); ok {
		t.Fatal("the node that was down has the events already")
	}
	down.sw.h.Store(saved)
	if err := down.gossip.SyncNow(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		waitScore(t, nodes, fmt.Sprint("agent-", i), 200, 5*time.Second)
	}
	d0, d2 := nodes[0].node.Digest(), down.node.Digest()
	if fmt.Sprint(d0) != fmt.Sprint(d2) {
		t.Fatalf("digests differ:\n%v\n%v", d0, d2)
	}
}

func TestMeshRequestsMustBeSignedByAReporter(t *testing.T) {
	nodes := startMesh(t, 1, func(int) []int { return nil }, nil)
	url := nodes[0].srv.URL
	body := `{"events":[]}`
	resp, err := http.Post(url+RoutePush, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned push: %d", resp.StatusCode)
	}
	// Signed by a stranger: refused.
	req, _ := http.NewRequest(http.MethodPost, url+RoutePush, strings.NewReader(body))
	req.Header.Set(identity.HeaderTraceID, "t-1")
	signer := &identity.RequestSigner{AgentID: "stranger", Key: keyOf(t, "stranger")}
	if err := signer.SignRequest(req, []byte(body)); err != nil {
		t.Fatal(err)
	}
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stranger's push: %d", resp.StatusCode)
	}
}

// TestForgedEventsInAPushAreRefused: a trusted peer relaying an event with
// a forged signature gets it refused, the rest of the batch applied.
func TestForgedEventsInAPushAreRefused(t *testing.T) {
	nodes := startMesh(t, 2, allOthers(2), nil)
	ctx := context.Background()
	res, err := nodes[1].node.Report(ctx, reputation.Report{Subject: "x", Type: "error"})
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := nodes[1].node.Events([]string{res.EventID})
	forged := evs[0]
	forged.Body.Subject = "victim"
	var pr PushResponse
	p := &peer{url: nodes[0].srv.URL}
	if err := nodes[1].gossip.call(ctx, p, RoutePush, PushRequest{Events: []reputation.SignedEvent{forged, evs[0]}}, &pr); err != nil {
		t.Fatal(err)
	}
	if len(pr.Refused) != 1 || !strings.Contains(pr.Refused[0].Error, "bad event signature") {
		t.Fatalf("push response %+v", pr)
	}
	if _, ok := nodes[0].node.Score("victim"); ok {
		t.Fatal("a forged event moved a score")
	}
}

// TestHandlerEndpoints covers the sidecar-facing routes.
func TestHandlerEndpoints(t *testing.T) {
	dir := t.TempDir()
	node, err := reputation.Open(context.Background(), reputation.NodeConfig{
		Dir: dir, AgentID: "sidecar", Key: keyOf(t, "sidecar"), Logger: quiet,
		Reporters: map[string]ed25519.PublicKey{"peer": keyOf(t, "peer").PublicKey()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close(context.Background())
	var mu sync.Mutex
	var recorded []SlashRecord
	h, err := NewHandler(HandlerConfig{
		Node:           node,
		Logger:         quiet,
		AuthorizeAdmin: func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer admin-token-0123456789" },
		Verifiers:      map[string]ed25519.PublicKey{"fact-checker": keyOf(t, "fact-checker").PublicKey()},
		RecordSlash: func(_ context.Context, rec SlashRecord) {
			mu.Lock()
			recorded = append(recorded, rec)
			mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	do := func(method, path, body string, sign string, hdr ...string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if sign != "" {
			req.Header.Set(identity.HeaderTraceID, "sig-trace")
			s := &identity.RequestSigner{AgentID: sign, Key: keyOf(t, sign)}
			if err := s.SignRequest(req, []byte(body)); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	admin := []string{"Authorization", "Bearer admin-token-0123456789"}
	slash := `{"reason":"hallucination","severity":"critical","trace_id":"trace-9","details":{"claim":"x","email":"bob@example.com"}}`
	for _, tc := range []struct {
		name, sign string
		hdr        []string
		want       int
	}{
		{"anonymous", "", nil, 401},
		{"wrong token", "", []string{"Authorization", "Bearer nope-nope-nope-nope"}, 401},
		{"signed by a non-verifier", "peer", nil, 401},
		{"signed by a stranger", "stranger", nil, 401},
	} {
		if code, _ := do("POST", "/reputation/liar/slash", slash, tc.sign, tc.hdr...); code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
	}
	if _, ok := node.Score("liar"); ok {
		t.Fatal("a refused slash changed the score")
	}
	code, out := do("POST", "/reputation/liar/slash", slash, "fact-checker")
	if code != 200 || out["status"] != "slashed" || out["new_score"] != 3.0 || out["trust_level"] != "unknown" || out["severity"] != "critical" {
		t.Fatalf("verifier slash: %d %v", code, out)
	}
	code, out = do("POST", "/reputation/liar/slash", `{"reason":"timeout"}`, "", admin...)
	if code != 200 || out["new_score"] != 2.5 {
		t.Fatalf("admin slash: %d %v", code, out)
	}
	for _, bad := range []string{`[1]`, `{"reason":"success"}`, `{"reason":"rude"}`, `{"reason":"error","trace_id":"bad id!"}`} {
		if code, _ := do("POST", "/reputation/liar/slash", bad, "", admin...); code != 400 {
			t.Errorf("slash %s: %d, want 400", bad, code)
		}
	}
	mu.Lock()
	if len(recorded) != 2 || recorded[0].TraceID != "trace-9" || recorded[0].Caller != "fact-checker" || recorded[1].Caller != "admin" {
		t.Fatalf("recorded %+v", recorded)
	}
	mu.Unlock()
	code, out = do("GET", "/reputation/liar", "", "")
	events, _ := out["recent_events"].([]any)
	if code != 200 || out["score"] != 2.5 || len(events) != 2 {
		t.Fatalf("get: %d %v", code, out)
	}
	first, _ := json.Marshal(events[0])
	if !strings.Contains(string(first), `"detected_by":"fact-checker"`) || strings.Contains(string(first), "bob@example.com") {
		t.Fatalf("event %s", first)
	}
	if code, _ := do("GET", "/reputation/nobody", "", ""); code != 404 {
		t.Fatalf("unknown agent: %d", code)
	}
	if code, out := do("GET", "/reputation/export", "", ""); code != 200 || out["reputation_data"] == nil {
		t.Fatalf("export: %d %v", code, out)
	}
	imp := `{"reputation_data":{"spam":{"agent_id":"spam","score":1.5}}}`
	if code, _ := do("POST", "/reputation/import", imp, ""); code != 401 {
		t.Fatalf("anonymous import: %d", code)
	}
	if code, out := do("POST", "/reputation/import", imp, "peer"); code != 200 || out["agents_updated"] != 1.0 {
		t.Fatalf("peer import: %d %v", code, out)
	}
	if code, _ := do("POST", "/reputation/import", `{"reputation_data":{"a":{"score":1},"b":{"score":11}}}`, "", admin...); code != 400 {
		t.Fatalf("invalid import: %d", code)
	}
	if _, ok := node.Score("a"); ok {
		t.Fatal("an invalid import applied part of itself")
	}
	if code, _ := do("GET", "/reputation/liar/slash", "", ""); code != 405 {
		t.Fatalf("GET slash: %d", code)
	}
}

var _ = net.Listen

// TestCloseDoesNotWaitForADownPeer: queued pushes to a peer that is down
// hold the shutdown for DrainTimeout at most.
func TestCloseDoesNotWaitForADownPeer(t *testing.T) {
	nodes := startMesh(t, 2, allOthers(2), nil)
	nodes[1].srv.Close()
	if _, err := nodes[0].node.Report(context.Background(), reputation.Report{Subject: "x", Type: "error"}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := nodes[0].node.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("close took %s", time.Since(start))
	if d := time.Since(start); d > DrainTimeout+time.Second {
		t.Fatalf("Close took %s", d)
	}
}

// TestIDsPages: a bucket's ids come back in pages that neither repeat nor
// skip one.
func TestIDsPages(t *testing.T) {
	nodes := startMesh(t, 2, func(int) []int { return nil }, nil)
	ctx := context.Background()
	for i := range 40 {
		if _, err := nodes[0].node.Report(ctx, reputation.Report{Subject: fmt.Sprint("s-", i), Type: "error"}); err != nil {
			t.Fatal(err)
		}
	}
	p := &peer{url: nodes[0].srv.URL}
	seen := map[string]bool{}
	for _, d := range nodes[0].node.Digest() {
		for prefix := range 16 {
			after := ""
			for {
				var ir IDsResponse
				if err := nodes[1].gossip.call(ctx, p, RouteIDs, IDsRequest{Window: d.Window, Prefix: prefix, After: after, Limit: 2}, &ir); err != nil {
					t.Fatal(err)
				}
				for _, id := range ir.IDs {
					if seen[id] {
						t.Fatalf("id %s twice", id)
					}
					seen[id] = true
				}
				if !ir.More {
					break
				}
				after = ir.IDs[len(ir.IDs)-1]
			}
		}
	}
	if len(seen) != 40 {
		t.Fatalf("%d ids listed, want 40", len(seen))
	}
	// And anti-entropy alone brings all 40 to the other node.
	if err := nodes[1].gossip.reconcile(ctx, p); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if p, ok := nodes[1].node.Score(fmt.Sprint("s-", i)); !ok || p != 450 {
			t.Fatalf("s-%d: %s %v", i, p, ok)
		}
	}
}
