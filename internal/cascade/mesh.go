package cascade

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
	"github.com/iatp/iatp/reputation"
	"github.com/iatp/iatp/sidecar"
)

// Identities of the run, shared by the sidecar arms.
const (
	controlPlaneID = "cascade-control-plane"
	verifierID     = "cascade-verifier"
	warmupSubject  = "cascade-warmup" // an agent outside the mesh, reported once to open the transport
)

// keyring holds the run's identities: one demo control plane, a key and a
// v2 attestation per agent, and the verifier's key.
type keyring struct {
	cps      map[string]ed25519.PublicKey
	keys     []identity.PrivateKey
	atts     []*identity.Attestation
	trusted  map[string]ed25519.PublicKey // every agent's key: every sidecar trusts every reporter
	verifier identity.PrivateKey
}

func newKeyring(t *Topology, now time.Time) (*keyring, error) {
	cp, err := identity.GenerateKey(nil)
	if err != nil {
		return nil, err
	}
	k := &keyring{cps: map[string]ed25519.PublicKey{controlPlaneID: cp.PublicKey()}, trusted: map[string]ed25519.PublicKey{}}
	if k.verifier, err = identity.GenerateKey(nil); err != nil {
		return nil, err
	}
	for _, a := range t.Agents {
		key, err := identity.GenerateKey(nil)
		if err != nil {
			return nil, err
		}
		att, err := identity.CreateAttestation(cp, controlPlaneID, identity.Claims{
			AgentID: a.ID, CodebaseHash: identity.HashBytes([]byte(a.Role.String() + " code")),
			ConfigHash: identity.HashBytes([]byte(a.ID + " config")), VerificationKey: key.PublicKey(),
		}, identity.AttestationOptions{TTL: 24 * time.Hour, Now: now})
		if err != nil {
			return nil, err
		}
		k.keys = append(k.keys, key)
		k.atts = append(k.atts, att)
		k.trusted[a.ID] = key.PublicKey()
	}
	return k, nil
}

// agentManifest is the manifest of a mesh agent: an attested verified
// partner that scores 10 and draws no warning. Executors declare partial
// reversibility like the others, so that calls to them are not warned
// about (449); the experiment counts their actions as irreversible all
// the same.
func agentManifest(a Agent) (*manifest.Manifest, error) {
	doc := fmt.Sprintf(`{"protocol_version":"1.0","identity":{"agent_id":%q,"owner":"cascade experiment"},
		"trust_level":"verified_partner","scopes":[],
		"capabilities":{"idempotency":true},
		"reversibility":{"level":"partial","undo_window_seconds":3600},
		"privacy":{"retention_policy":"ephemeral","human_in_loop":false,"training_consent":false}}`, a.ID)
	return manifest.Parse([]byte(doc))
}

// node is one agent of an arm: its HTTP server and, in the sidecar arms,
// its sidecar.
type node struct {
	agentURL   string // the agent itself
	ingressURL string // its sidecar's ingress; "" in the control arm
	egressURL  string // its sidecar's egress proxy; "" for executors and in the control arm
	client     *http.Client
	sc         *sidecar.Sidecar
	rep        *reputation.Node
}

// mesh is the running agents (and sidecars) of one arm.
type mesh struct {
	nodes   []*node
	user    *http.Client // the users who call entry agents: no sidecar, unsigned
	dir     string
	cancel  context.CancelFunc
	done    []chan error
	servers []*http.Server
	nats    *server.Server
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// startMesh starts the agents of an arm and, unless sidecars is false,
// a sidecar in front of each, wired to transport ("" for none).
func (r *runner) startMesh(ctx context.Context, a *arm, sidecars bool, transport string) (m *mesh, err error) {
	t := r.plan.Topology
	m = &mesh{nodes: make([]*node, len(t.Agents)), user: newClient(nil)}
	ctx, m.cancel = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			m.stop()
			m = nil
		}
	}()
	if m.dir, err = os.MkdirTemp(r.dir, a.name+"-"); err != nil {
		return m, err
	}
	for i := range t.Agents {
		srv := &http.Server{Handler: a.agentHandler(i), ReadHeaderTimeout: 5 * time.Second, ErrorLog: nil}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return m, err
		}
		go func() { _ = srv.Serve(ln) }()
		m.servers = append(m.servers, srv)
		m.nodes[i] = &node{agentURL: "http://" + ln.Addr().String()}
	}
	if !sidecars {
		for _, n := range m.nodes {
			n.client = newClient(nil)
		}
		return m, nil
	}
	// Listeners first: gossip peers are named by URL.
	ins := make([]net.Listener, len(t.Agents))
	outs := make([]net.Listener, len(t.Agents))
	defer func() {
		for i := range ins {
			for _, ln := range []net.Listener{ins[i], outs[i]} {
				if ln != nil && err != nil {
					ln.Close()
				}
			}
		}
	}()
	for i, ag := range t.Agents {
		if ins[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return m, err
		}
		m.nodes[i].ingressURL = "http://" + ins[i].Addr().String()
		if ag.Role != RoleExecute {
			if outs[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
				return m, err
			}
			m.nodes[i].egressURL = "http://" + outs[i].Addr().String()
		}
	}
	var natsURL string
	if transport == TransportNATS {
		if m.nats, err = startNATS(filepath.Join(m.dir, "nats")); err != nil {
			return m, err
		}
		natsURL = m.nats.ClientURL()
	}
	// Sidecars open their flight recorder and reputation database: start
	// them side by side, bounded by the cores — except over NATS, where
	// each sidecar's transport creates the stream (or updates it) and its
	// consumer at start, and nats-server v2.15.3 races when one client
	// updates the stream while another creates a consumer (filestore.go:
	// UpdateConfig writes fs.cfg, ConsumerStore reads it unlocked). There
	// each sidecar starts once the one before has its consumer.
	parallel := 4
	if m.nats != nil {
		parallel = 1
	}
	errs := make([]error, len(t.Agents))
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i := range t.Agents {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cfg := r.sidecarConfig(i, m, filepath.Join(m.dir, t.Agents[i].ID), transport, natsURL)
			sc, err := sidecar.New(cfg)
			if err != nil {
				errs[i] = fmt.Errorf("%s's sidecar: %w", t.Agents[i].ID, err)
				return
			}
			m.nodes[i].sc, m.nodes[i].rep = sc, sc.Reputation()
			if m.nats != nil {
				errs[i] = waitConsumers(ctx, m.nats, i+1)
			}
		}()
	}
	wg.Wait()
	if err = errors.Join(errs...); err != nil {
		for _, n := range m.nodes {
			if n.sc != nil {
				n.sc.Close()
			}
		}
		return m, err
	}
	for i, n := range m.nodes {
		done := make(chan error, 1)
		go func() { done <- n.sc.ServeAll(ctx, ins[i], outs[i]) }()
		m.done = append(m.done, done)
		var proxy *url.URL
		if n.egressURL != "" {
			if proxy, err = url.Parse(n.egressURL); err != nil {
				return m, err
			}
		}
		n.client = newClient(proxy)
	}
	return m, nil
}

// newClient is an agent's HTTP client: through its sidecar's egress proxy
// when proxy is not nil.
func newClient(proxy *url.URL) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}
	if proxy != nil {
		tr.Proxy = http.ProxyURL(proxy)
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// sidecarConfig is the configuration of agent i's sidecar.
func (r *runner) sidecarConfig(i int, m *mesh, dir, transport, natsURL string) sidecar.Config {
	t := r.plan.Topology
	ag := t.Agents[i]
	man, _ := agentManifest(ag) // checked when the run starts
	rc := sidecar.ReputationConfig{
		Verifiers: map[string]ed25519.PublicKey{verifierID: r.keys.verifier.PublicKey()},
		// Summaries are made by the experiment (Config.SummaryEvery),
		// never by the sidecar's own timer within a run.
		Settings: reputation.Settings{SummaryInterval: 24 * time.Hour},
	}
	switch transport {
	case TransportNATS:
		rc.NATSURL = natsURL
	case TransportHTTP:
		rc.Peers = r.gossipPeers(i, m)
	}
	cfg := sidecar.Config{
		AgentURL: m.nodes[i].agentURL, Manifest: man, DataDir: dir,
		Key: r.keys.keys[i], Attestation: r.keys.atts[i], ControlPlaneKeys: r.keys.cps, TrustedAgents: r.keys.trusted,
		Policy:             policy.Config{Rules: []policy.Rule{r.rule}},
		RateLimitPerMinute: -1,
		AgentTimeout:       10 * time.Second,
		ShutdownTimeout:    5 * time.Second,
		Recorder:           recorder.Config{SegmentBytes: 1 << 20, MaxTotalBytes: 64 << 20},
		Reputation:         rc,
		Logger:             quiet,
		Clock:              r.clock,
	}
	if ag.Role != RoleExecute {
		cfg.EgressListen = "on" // served on the listener startMesh made
	}
	return cfg
}

// gossipPeers names agent i's HTTP gossip peers: the next sidecar (so the
// peer graph is a connected ring) and GossipPeers−1 others drawn from the
// seed.
func (r *runner) gossipPeers(i int, m *mesh) []string {
	n := len(m.nodes)
	peers := []string{m.nodes[(i+1)%n].ingressURL}
	for _, j := range r.peerRand(i).Perm(n) {
		if len(peers) >= min(r.cfg.GossipPeers, n-1) {
			break
		}
		if j != i && j != (i+1)%n {
			peers = append(peers, m.nodes[j].ingressURL)
		}
	}
	return peers
}

// startNATS runs an embedded NATS server with JetStream on loopback.
func startNATS(dir string) (*server.Server, error) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server: not ready after 10s")
	}
	return s, nil
}

// waitConsumers waits until the NATS server has n JetStream consumers.
func waitConsumers(ctx context.Context, s *server.Server, n int) error {
	deadline := time.Now().Add(10 * time.Second)
	for have := 0; ; {
		if info, err := s.Jsz(nil); err == nil {
			have = info.Consumers
		}
		if have >= n {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("nats server: %d consumers after 10s, want %d", have, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// stop shuts the sidecars down (each flushes its recorder and reputation
// node), then the agents and the NATS server, and removes the data.
func (m *mesh) stop() error {
	// Idle keep-alive connections would hold the servers' graceful
	// shutdown open.
	for _, n := range m.nodes {
		if n != nil && n.client != nil {
			n.client.CloseIdleConnections()
		}
	}
	m.user.CloseIdleConnections()
	// Reputation nodes and their transports close first, while every
	// server still runs. A sidecar's server that stops while a peer's
	// gossip push is in its reputation node ends the push's context, and
	// reputation.Node.ApplyBatch then reads the batch's results while the
	// node's writer still sets them (a data race; see docs/cascade.md).
	var wg sync.WaitGroup
	for _, n := range m.nodes {
		if n != nil && n.rep != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = n.rep.Close(ctx) // the sidecar's own Close finds it closed
			}()
		}
	}
	wg.Wait()
	m.cancel()
	var errs []error
	for _, done := range m.done {
		if err := <-done; err != nil {
			errs = append(errs, err)
		}
	}
	for _, srv := range m.servers {
		_ = srv.Close()
	}
	if m.nats != nil {
		m.nats.Shutdown()
		m.nats.WaitForShutdown()
	}
	if m.dir != "" {
		if err := os.RemoveAll(m.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
