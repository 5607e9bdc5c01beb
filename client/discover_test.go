package client_test

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iatp/iatp/client"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
)

func newDiscoverer(t testing.TB, cfg client.DiscoveryConfig) *client.Discoverer {
	t.Helper()
	d, err := client.NewDiscoverer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func discover(t testing.TB, d *client.Discoverer, url string) *client.Target {
	t.Helper()
	tg, err := d.Discover(context.Background(), url)
	if err != nil {
		t.Fatalf("Discover(%s): %v", url, err)
	}
	return tg
}

// TestDiscoverCache: a fresh target comes from the cache; once it is stale
// it is revalidated with its ETag, and a 304 keeps it. How long it stays
// fresh is the target's Cache-Control, else the configured TTL.
func TestDiscoverCache(t *testing.T) {
	doc := document(t, loadManifest(t, "standard_agent.json"), mustKey(t), nil)
	for _, tc := range []struct {
		name         string
		cacheControl string
		ttl          time.Duration
		// Before each Discover the clock moves on by after[i]; then the
		// origin has been asked fetches[i] times in all.
		after   []time.Duration
		fetches []int64
	}{
		{"TTL", "", time.Minute,
			[]time.Duration{0, 59 * time.Second, 2 * time.Second, 30 * time.Second}, []int64{1, 1, 2, 2}},
		{"max-age shorter than TTL", "max-age=10", time.Hour,
			[]time.Duration{0, 9 * time.Second, 2 * time.Second}, []int64{1, 1, 2}},
		{"max-age longer than TTL", "max-age=7200", time.Minute,
			[]time.Duration{0, time.Hour, 61 * time.Minute}, []int64{1, 1, 2}},
		{"max-age among other directives", "public, MAX-AGE=10 ,must-revalidate", time.Hour,
			[]time.Duration{0, 9 * time.Second, 2 * time.Second}, []int64{1, 1, 2}},
		{"max-age=0", "max-age=0", time.Hour,
			[]time.Duration{0, 0, 0}, []int64{1, 2, 3}},
		{"no-cache", "no-cache", time.Hour,
			[]time.Duration{0, 0, 0}, []int64{1, 2, 3}},
		{"no-store", "no-store", time.Hour,
			[]time.Duration{0, 0, 0}, []int64{1, 2, 3}},
		{"no-cache beats max-age", "max-age=3600, no-cache", time.Hour,
			[]time.Duration{0, 0}, []int64{1, 2}},
		{"max-age capped at MaxTTL", "max-age=31536000", time.Hour,
			[]time.Duration{0, client.MaxTTL - time.Second, 2 * time.Second}, []int64{1, 1, 2}},
		{"malformed max-age means TTL", "max-age=soon", time.Minute,
			[]time.Duration{0, 59 * time.Second, 2 * time.Second}, []int64{1, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, doc)
			o.set(doc, client.ETag(doc), tc.cacheControl)
			clk := newClock()
			d := newDiscoverer(t, client.DiscoveryConfig{TTL: tc.ttl, Clock: clk.Now})
			var first *client.Target
			for i, after := range tc.after {
				clk.Add(after)
				tg := discover(t, d, o.srv.URL+"/proxy")
				if !tg.Known() || tg.Proven != "claimed" {
					t.Fatalf("call %d: target %q, problems %v", i, tg.Proven, tg.Problems)
				}
				if first == nil {
					first = tg
				}
				if tg.Manifest != first.Manifest {
					t.Errorf("call %d: the manifest was replaced, want the one revalidated", i)
				}
				if got := o.manifests.Load(); got != tc.fetches[i] {
					t.Fatalf("call %d (+%s): %d manifest fetches, want %d", i, after, got, tc.fetches[i])
				}
			}
			// Every fetch after the first revalidated with the ETag and got a 304.
			inm := o.ifNoneMatch()
			for i, v := range inm {
				if want := map[bool]string{true: "", false: client.ETag(doc)}[i == 0]; v != want {
					t.Errorf("fetch %d: If-None-Match %q, want %q", i, v, want)
				}
			}
			if got, want := o.notModified.Load(), int64(len(inm)-1); got != want {
				t.Errorf("%d answers 304, want %d", got, want)
			}
		})
	}
}

// TestDiscoverRevalidationRefreshesExpiry: a 304 starts a new freshness
// period from the revalidation.
func TestDiscoverRevalidationRefreshesExpiry(t *testing.T) {
	o := newOrigin(t, document(t, loadManifest(t, "standard_agent.json"), mustKey(t), nil))
	clk := newClock()
	d := newDiscoverer(t, client.DiscoveryConfig{TTL: time.Minute, Clock: clk.Now})
	discover(t, d, o.srv.URL)
	clk.Add(61 * time.Second)
	tg := discover(t, d, o.srv.URL)
	if !tg.Fetched.Equal(clk.Now()) || !tg.Expires.Equal(clk.Now().Add(time.Minute)) {
		t.Errorf("after a 304: fetched %v expires %v, now %v", tg.Fetched, tg.Expires, clk.Now())
	}
	clk.Add(59 * time.Second)
	discover(t, d, o.srv.URL)
	if got := o.manifests.Load(); got != 2 {
		t.Errorf("%d fetches, want 2", got)
	}
}

// TestDiscoverChangedDocument: a document served with a new ETag replaces
// the cached one when it is revalidated.
func TestDiscoverChangedDocument(t *testing.T) {
	m := loadManifest(t, "standard_agent.json")
	before := document(t, m, mustKey(t), nil)
	o := newOrigin(t, before)
	clk := newClock()
	d := newDiscoverer(t, client.DiscoveryConfig{TTL: time.Minute, Clock: clk.Now})
	if tg := discover(t, d, o.srv.URL); tg.Manifest.Privacy.RetentionPolicy != manifest.RetentionTemporary {
		t.Fatalf("before: retention %q", tg.Manifest.Privacy.RetentionPolicy)
	}
	changed := *m
	changed.Privacy.RetentionPolicy = manifest.RetentionPermanent
	after := document(t, &changed, mustKey(t), nil)
	o.set(after, client.ETag(after), "")

	clk.Add(30 * time.Second) // still fresh: the old document stands
	if tg := discover(t, d, o.srv.URL); tg.Manifest.Privacy.RetentionPolicy != manifest.RetentionTemporary {
		t.Fatalf("while fresh: retention %q", tg.Manifest.Privacy.RetentionPolicy)
	}
	clk.Add(31 * time.Second)
	tg := discover(t, d, o.srv.URL)
	if tg.Manifest.Privacy.RetentionPolicy != manifest.RetentionPermanent || !tg.Known() {
		t.Fatalf("after the change: retention %q, proven %q", tg.Manifest.Privacy.RetentionPolicy, tg.Proven)
	}
	// The next revalidation presents the new ETag.
	clk.Add(61 * time.Second)
	discover(t, d, o.srv.URL)
	inm := o.ifNoneMatch()
	want := []string{"", client.ETag(before), client.ETag(after)}
	if strings.Join(inm, " ") != strings.Join(want, " ") {
		t.Errorf("If-None-Match: %q, want %q", inm, want)
	}
	if n := o.notModified.Load(); n != 1 {
		t.Errorf("%d answers 304, want 1", n)
	}
}

// TestDiscoverSingleFlight: concurrent first calls to one origin share one
// fetch, and all get the same target.
func TestDiscoverSingleFlight(t *testing.T) {
	o := newOrigin(t, document(t, loadManifest(t, "standard_agent.json"), mustKey(t), nil))
	o.delay = 50 * time.Millisecond
	d := newDiscoverer(t, client.DiscoveryConfig{})
	const n = 100
	targets := make([]*client.Target, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			tg, err := d.Discover(context.Background(), o.srv.URL+"/proxy/"+strconv.Itoa(i))
			if err != nil {
				t.Error(err)
			}
			targets[i] = tg
		})
	}
	close(start)
	wg.Wait()
	if got := o.manifests.Load(); got != 1 {
		t.Errorf("%d concurrent first calls: %d manifest fetches, want 1", n, got)
	}
	if got := o.attestations.Load(); got != 1 {
		t.Errorf("%d attestation fetches, want 1", got)
	}
	for i, tg := range targets {
		if tg != targets[0] || !tg.Known() {
			t.Fatalf("call %d got target %p (%q), call 0 %p", i, tg, tg.Proven, targets[0])
		}
	}
}

// TestDiscoverSingleFlightStress repeats concurrent first calls without a
// slow origin: a call that misses the cache while the shared fetch ends
// must not fetch again.
func TestDiscoverSingleFlightStress(t *testing.T) {
	o := newOrigin(t, document(t, loadManifest(t, "standard_agent.json"), mustKey(t), nil))
	d := newDiscoverer(t, client.DiscoveryConfig{})
	const rounds, n = 500, 64
	for r := range rounds {
		d.Forget(o.srv.URL)
		before := o.manifests.Load()
		start := make(chan struct{})
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				<-start
				discover(t, d, o.srv.URL)
			})
		}
		close(start)
		wg.Wait()
		if got := o.manifests.Load() - before; got != 1 {
			t.Fatalf("round %d: %d concurrent first calls made %d manifest fetches, want 1", r, n, got)
		}
	}
}

// redirectAll is an HTTP client that sends every request, whatever its
// host, to addr: many origins, one server.
func redirectAll(addr string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestDiscoverBounded: the cache holds at most MaxTargets targets, the
// least recently used going first.
func TestDiscoverBounded(t *testing.T) {
	o := newOrigin(t, document(t, loadManifest(t, "standard_agent.json"), mustKey(t), nil))
	d := newDiscoverer(t, client.DiscoveryConfig{MaxTargets: 8, HTTPClient: redirectAll(o.srv.Listener.Addr().String())})
	url := func(i int) string { return "http://agent-" + strconv.Itoa(i) + ".example:8001/proxy" }
	for i := range 50 {
		if tg := discover(t, d, url(i)); !tg.Known() {
			t.Fatalf("origin %d: %q", i, tg.Proven)
		}
		if d.Len() > 8 {
			t.Fatalf("after %d origins: %d cached, want at most 8", i+1, d.Len())
		}
	}
	if d.Len() != 8 {
		t.Errorf("%d cached, want 8", d.Len())
	}
	fetches := o.manifests.Load()
	discover(t, d, url(49)) // recent: cached
	if got := o.manifests.Load(); got != fetches {
		t.Errorf("the most recent origin was fetched again")
	}
	discover(t, d, url(0)) // evicted: fetched again
	if got := o.manifests.Load(); got != fetches+1 {
		t.Errorf("the first origin: %d fetches, want %d", got-fetches, 1)
	}
}

// hangingListener accepts connections and never answers; it counts them.
func hangingListener(t testing.TB) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int64{}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), accepted
}

// TestDiscoverHangingTarget: a target that accepts the connection and
// never answers is unknown within about FetchTimeout, and stays so (no new
// connection) for NegativeTTL.
func TestDiscoverHangingTarget(t *testing.T) {
	addr, accepted := hangingListener(t)
	const timeout = 200 * time.Millisecond
	clk := newClock()
	d := newDiscoverer(t, client.DiscoveryConfig{FetchTimeout: timeout, NegativeTTL: time.Minute, Clock: clk.Now})
	start := time.Now()
	tg := discover(t, d, "http://"+addr+"/proxy")
	if took := time.Since(start); took > 10*timeout {
		t.Errorf("Discover took %v with FetchTimeout %v", took, timeout)
	}
	if tg.Proven != "unreachable: no answer within 200ms" {
		t.Errorf("Proven %q", tg.Proven)
	}
	checkUnknown(t, tg, addr)
	clk.Add(59 * time.Second)
	if again := discover(t, d, "http://"+addr); again != tg || accepted.Load() != 1 {
		t.Errorf("within NegativeTTL: a new discovery (%d connections)", accepted.Load())
	}
	clk.Add(2 * time.Second)
	discover(t, d, "http://"+addr)
	if accepted.Load() != 2 {
		t.Errorf("after NegativeTTL: %d connections, want 2", accepted.Load())
	}
}

// TestDiscoverStalls: a target that stalls part way is bounded by
// FetchTimeout as a whole.
func TestDiscoverStalls(t *testing.T) {
	const timeout = 200 * time.Millisecond
	doc := document(t, loadManifest(t, "standard_agent.json"), mustKey(t), nil)
	t.Run("manifest body", func(t *testing.T) {
		o := newOrigin(t, doc)
		o.stallBody = true
		start := time.Now()
		tg := discover(t, newDiscoverer(t, client.DiscoveryConfig{FetchTimeout: timeout}), o.srv.URL)
		if took := time.Since(start); took > 10*timeout {
			t.Errorf("Discover took %v with FetchTimeout %v", took, timeout)
		}
		if !strings.HasPrefix(tg.Proven, "unreachable: reading the manifest: ") {
			t.Errorf("Proven %q", tg.Proven)
		}
		checkUnknown(t, tg, strings.TrimPrefix(o.srv.URL, "http://"))
	})
	t.Run("attestation", func(t *testing.T) {
		o := newOrigin(t, doc)
		o.stallAtt = true
		start := time.Now()
		tg := discover(t, newDiscoverer(t, client.DiscoveryConfig{FetchTimeout: timeout}), o.srv.URL)
		if took := time.Since(start); took > 10*timeout {
			t.Errorf("Discover took %v with FetchTimeout %v", took, timeout)
		}
		// The manifest stands; the attestation that never came proves nothing.
		if !tg.Known() || tg.Proven != "claimed" || !slices.Contains(tg.Problems, "attestation: no answer within 200ms") {
			t.Errorf("Proven %q, problems %q", tg.Proven, tg.Problems)
		}
	})
}

// TestDiscoverRevalidationFails: a known target whose revalidation fails
// is unknown (fail closed) until NegativeTTL has passed; then it is
// fetched afresh, without the old ETag.
func TestDiscoverRevalidationFails(t *testing.T) {
	doc := document(t, loadManifest(t, "standard_agent.json"), mustKey(t), nil)
	o := newOrigin(t, doc)
	clk := newClock()
	d := newDiscoverer(t, client.DiscoveryConfig{TTL: time.Minute, NegativeTTL: 10 * time.Second, Clock: clk.Now})
	if tg := discover(t, d, o.srv.URL); !tg.Known() {
		t.Fatalf("first: %q", tg.Proven)
	}
	o.mu.Lock()
	o.status = http.StatusServiceUnavailable
	o.mu.Unlock()
	clk.Add(61 * time.Second)
	tg := discover(t, d, o.srv.URL)
	if tg.Proven != "unreachable: /.well-known/agent-manifest answered 503" {
		t.Errorf("revalidation failed: Proven %q", tg.Proven)
	}
	checkUnknown(t, tg, strings.TrimPrefix(o.srv.URL, "http://"))
	o.mu.Lock()
	o.status = 0
	o.mu.Unlock()
	clk.Add(9 * time.Second)
	if tg := discover(t, d, o.srv.URL); tg.Known() {
		t.Errorf("within NegativeTTL: known again")
	}
	clk.Add(2 * time.Second)
	if tg := discover(t, d, o.srv.URL); !tg.Known() {
		t.Errorf("after NegativeTTL: %q", tg.Proven)
	}
	want := []string{"", client.ETag(doc), ""}
	if got := o.ifNoneMatch(); !slices.Equal(got, want) {
		t.Errorf("If-None-Match %q, want %q", got, want)
	}
}

// checkUnknown checks that tg is an unknown target standing in for
// agentID: none of its claims stand, every rule fails closed.
func checkUnknown(t *testing.T, tg *client.Target, agentID string) {
	t.Helper()
	m := tg.Manifest
	if tg.Known() || tg.Level != manifest.Unknown || m == nil || m.AgentID() != agentID ||
		m.TrustLevel != manifest.Unknown || m.Privacy.RetentionPolicy != manifest.RetentionPermanent ||
		!m.Privacy.HumanInLoop || m.Reversibility.Level != manifest.ReversibilityNone || m.Capabilities.Idempotency {
		t.Errorf("not an unknown stand-in for %q: known %v level %q manifest %+v", agentID, tg.Known(), tg.Level, m)
	}
	if len(tg.Problems) == 0 || tg.Problems[len(tg.Problems)-1] != tg.Proven {
		t.Errorf("Problems %q do not end with Proven %q", tg.Problems, tg.Proven)
	}
	if pt := tg.PolicyTarget(policy.Reputation{}); pt.TrustLevel != manifest.Unknown || pt.Manifest != m {
		t.Errorf("PolicyTarget %+v", pt)
	}
}

// TestDiscoverUnusableManifest: whatever the origin answers instead of a
// manifest, the target is unknown and Proven says why.
func TestDiscoverUnusableManifest(t *testing.T) {
	big := []byte(`{"agent_id":"big","trust_level":"standard","pad":"` + strings.Repeat("x", manifest.MaxSize) + `"}`)
	for _, tc := range []struct {
		name   string
		status int
		body   []byte
		proven string // Proven, or its prefix when it ends with "…"
	}{
		{"404", 404, []byte(`not found`), "unreachable: /.well-known/agent-manifest answered 404"},
		{"500", 500, []byte(`{"error":"boom"}`), "unreachable: /.well-known/agent-manifest answered 500"},
		{"redirect is not followed", 302, nil, "unreachable: /.well-known/agent-manifest answered 302"},
		{"garbage", 200, []byte("\x00\x01 <html>"), "invalid manifest: …"},
		{"JSON, not a manifest", 200, []byte(`{"hello":"world"}`), "invalid manifest: …"},
		{"bad trust level", 200, []byte(`{"agent_id":"x","trust_level":"gold"}`), "invalid manifest: …"},
		{"oversized", 200, big, "invalid manifest: larger than 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newOrigin(t, tc.body)
			o.status = tc.status
			d := newDiscoverer(t, client.DiscoveryConfig{})
			tg := discover(t, d, o.srv.URL)
			if p, ok := strings.CutSuffix(tc.proven, "…"); ok && !strings.HasPrefix(tg.Proven, p) || !ok && tg.Proven != tc.proven {
				t.Errorf("Proven %q, want %q", tg.Proven, tc.proven)
			}
			checkUnknown(t, tg, strings.TrimPrefix(o.srv.URL, "http://"))
			if n := o.others.Load(); n != 0 {
				t.Errorf("%d requests elsewhere: a redirect was followed", n)
			}
		})
	}
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		tg := discover(t, newDiscoverer(t, client.DiscoveryConfig{}), "http://"+addr)
		if !strings.HasPrefix(tg.Proven, "unreachable: cannot connect: ") {
			t.Errorf("Proven %q", tg.Proven)
		}
		checkUnknown(t, tg, addr)
	})
}

// TestDiscoverCallerCancelled: a caller that gives up does not take the
// shared fetch with it; the others, and the cache, get the target.
func TestDiscoverCallerCancelled(t *testing.T) {
	o := newOrigin(t, document(t, loadManifest(t, "standard_agent.json"), mustKey(t), nil))
	o.gate = make(chan struct{})
	d := newDiscoverer(t, client.DiscoveryConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan *client.Target, 1)
	go func() {
		tg, _ := d.Discover(ctx, o.srv.URL)
		first <- tg
	}()
	<-o.arrived // the shared fetch is at the origin
	second := make(chan *client.Target, 1)
	go func() {
		tg, _ := d.Discover(context.Background(), o.srv.URL)
		second <- tg
	}()
	cancel()
	time.Sleep(20 * time.Millisecond) // let a cancelled fetch, if it were one, end
	close(o.gate)
	for name, ch := range map[string]chan *client.Target{"the cancelled caller": first, "the other caller": second} {
		if tg := <-ch; tg == nil || !tg.Known() {
			t.Errorf("%s got %+v", name, tg)
		}
	}
	if tg := discover(t, d, o.srv.URL); !tg.Known() {
		t.Errorf("cached: %q", tg.Proven)
	}
	if got := o.manifests.Load(); got != 1 {
		t.Errorf("%d manifest fetches, want 1", got)
	}
}

func TestNewDiscovererRefusesNegative(t *testing.T) {
	for name, cfg := range map[string]client.DiscoveryConfig{
		"TTL":          {TTL: -1},
		"NegativeTTL":  {NegativeTTL: -1},
		"FetchTimeout": {FetchTimeout: -1},
		"MaxTargets":   {MaxTargets: -1},
	} {
		if _, err := client.NewDiscoverer(cfg); err == nil {
			t.Errorf("negative %s accepted", name)
		}
	}
}

func TestDiscoverRefusesNonTargets(t *testing.T) {
	d := newDiscoverer(t, client.DiscoveryConfig{})
	for _, u := range []string{"", "ftp://bank.example", "/proxy", "bank.example:8001"} {
		if tg, err := d.Discover(context.Background(), u); err == nil {
			t.Errorf("Discover(%q) = %+v, want an error", u, tg)
		}
	}
	if d.Len() != 0 {
		t.Errorf("%d cached", d.Len())
	}
}
