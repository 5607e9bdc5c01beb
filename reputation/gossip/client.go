package gossip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/reputation"
)

// Defaults of Config.
const (
	DefaultAntiEntropy = 30 * time.Second
	DefaultQueue       = 4096
	DefaultBatch       = 256
	DefaultTimeout     = 10 * time.Second
	// DrainTimeout bounds how long Close waits for queued pushes (a peer
	// that is down does not hold the shutdown).
	DrainTimeout   = 2 * time.Second
	maxAnswerBytes = 32 << 20
)

// Config configures the HTTP transport. Node and Key are required.
type Config struct {
	Node *reputation.Node
	// Key signs this node's requests (the node's agent key); requests carry
	// Node.AgentID() as keyid.
	Key identity.PrivateKey
	// Peers are the base URLs of the peer sidecars ("https://host:port").
	Peers []string
	// Client makes the requests. If nil, a client with DefaultTimeout.
	Client *http.Client
	// AntiEntropy is how often each peer is reconciled. If 0,
	// DefaultAntiEntropy; negative turns it off (tests).
	AntiEntropy time.Duration
	// Queue bounds the events waiting for each peer; beyond it they are
	// dropped and the next anti-entropy round brings them. If 0,
	// DefaultQueue.
	Queue int
	// Batch bounds the events of one push. If 0, DefaultBatch.
	Batch int
	// Logger. If nil, slog.Default().
	Logger *slog.Logger
}

// Gossip pushes a node's new events to its peers and reconciles with them.
// New registers it with the node, whose Close closes it.
type Gossip struct {
	cfg    Config
	node   *reputation.Node
	signer *identity.RequestSigner
	client *http.Client
	log    *slog.Logger
	peers  []*peer
	stop   chan struct{}
	wg     sync.WaitGroup
	closed atomic.Bool

	// Dropped counts events a full peer queue did not take.
	dropped atomic.Uint64
}

type peer struct {
	url   string
	queue chan reputation.SignedEvent
	kick  chan struct{} // asks for an anti-entropy round soon
	busy  atomic.Bool   // the sender holds a batch
}

var _ reputation.Transport = (*Gossip)(nil)

// New starts the transport: one sender per peer and the anti-entropy loop.
func New(cfg Config) (*Gossip, error) {
	if cfg.Node == nil {
		return nil, errors.New("gossip: Node is required")
	}
	if cfg.Key.IsZero() {
		return nil, errors.New("gossip: Key is required")
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Batch <= 0 || cfg.Batch > MaxEventsPerRequest {
		cfg.Batch = DefaultBatch
	}
	if cfg.AntiEntropy == 0 {
		cfg.AntiEntropy = DefaultAntiEntropy
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: DefaultTimeout}
	}
	g := &Gossip{
		cfg: cfg, node: cfg.Node, client: cfg.Client, log: cfg.Logger, stop: make(chan struct{}),
		signer: &identity.RequestSigner{AgentID: cfg.Node.AgentID(), Key: cfg.Key},
	}
	for _, raw := range cfg.Peers {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("gossip: peer %q is not an http(s) URL", raw)
		}
		p := &peer{url: strings.TrimSuffix(raw, "/"), queue: make(chan reputation.SignedEvent, cfg.Queue), kick: make(chan struct{}, 1)}
		g.peers = append(g.peers, p)
	}
	for _, p := range g.peers {
		g.wg.Add(1)
		go g.sender(p)
		if cfg.AntiEntropy > 0 {
			g.wg.Add(1)
			go g.reconciler(p)
		}
	}
	cfg.Node.AddTransport(g)
	return g, nil
}

// Publish queues new events for every peer (the one that sent them too:
// it answers that they are duplicates, and a node never needs to know its
// peers' ids). It never blocks.
func (g *Gossip) Publish(b reputation.Batch) {
	if g.closed.Load() {
		return
	}
	for _, p := range g.peers {
		for _, ev := range b.Events {
			select {
			case p.queue <- ev:
			default:
				g.dropped.Add(1)
				select {
				case p.kick <- struct{}{}:
				default:
				}
			}
		}
	}
}

// Dropped returns how many events full queues dropped (anti-entropy
// delivers them later).
func (g *Gossip) Dropped() uint64 { return g.dropped.Load() }

// Close lets the senders push what is queued, for at most DrainTimeout
// and while ctx allows, and stops them.
func (g *Gossip) Close(ctx context.Context) error {
	if !g.closed.CompareAndSwap(false, true) {
		return nil
	}
	deadline := time.Now().Add(DrainTimeout)
	for g.pending() && ctx.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(g.stop)
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gossip: close: %w", ctx.Err())
	}
}

func (g *Gossip) pending() bool {
	for _, p := range g.peers {
		if len(p.queue) > 0 || p.busy.Load() {
			return true
		}
	}
	return false
}

// sender pushes a peer's queue in batches, retrying with backoff while the
// peer is unreachable.
func (g *Gossip) sender(p *peer) {
	defer g.wg.Done()
	backoff := 50 * time.Millisecond
	var batch []reputation.SignedEvent
	for {
		if len(batch) == 0 {
			p.busy.Store(false)
			select {
			case ev := <-p.queue:
				p.busy.Store(true)
				batch = append(batch, ev)
			case <-g.stop:
				return
			}
		}
	fill:
		for len(batch) < g.cfg.Batch {
			select {
			case ev := <-p.queue:
				batch = append(batch, ev)
			default:
				break fill
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		err := g.push(ctx, p, batch)
		cancel()
		if err == nil {
			batch, backoff = batch[:0], 50*time.Millisecond
			continue
		}
		g.log.Debug("gossip: push failed", "peer", p.url, "events", len(batch), "err", err)
		select {
		case <-time.After(backoff + rand.N(backoff/2)):
		case <-g.stop:
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (g *Gossip) push(ctx context.Context, p *peer, evs []reputation.SignedEvent) error {
	var resp PushResponse
	if err := g.call(ctx, p, RoutePush, PushRequest{Events: evs}, &resp); err != nil {
		return err
	}
	if len(resp.Refused) > 0 {
		g.log.Debug("gossip: the peer refused events", "peer", p.url, "refused", len(resp.Refused), "first", resp.Refused[0].Error)
	}
	return nil
}

// reconciler runs anti-entropy with one peer every interval (jittered),
// or soon after a dropped push.
func (g *Gossip) reconciler(p *peer) {
	defer g.wg.Done()
	for {
		wait := g.cfg.AntiEntropy/2 + rand.N(g.cfg.AntiEntropy)
		select {
		case <-time.After(wait):
		case <-p.kick:
		case <-g.stop:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*DefaultTimeout)
		if err := g.reconcile(ctx, p); err != nil {
			g.log.Debug("gossip: anti-entropy failed", "peer", p.url, "err", err)
		}
		cancel()
	}
}

// SyncNow runs one anti-entropy round with every peer.
func (g *Gossip) SyncNow(ctx context.Context) error {
	var errs []error
	for _, p := range g.peers {
		if err := g.reconcile(ctx, p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.url, err))
		}
	}
	return errors.Join(errs...)
}

// reconcile compares digests with p, fetches what this node lacks and
// pushes what p lacks.
func (g *Gossip) reconcile(ctx context.Context, p *peer) error {
	var dr DigestResponse
	if err := g.call(ctx, p, RouteDigest, DigestRequest{Windows: g.node.Digest()}, &dr); err != nil {
		return err
	}
	theirs := map[[2]int64]reputation.DigestEntry{}
	windows := map[int64]bool{}
	for _, b := range dr.Buckets {
		theirs[[2]int64{b.Window, int64(b.Prefix)}] = b
		windows[b.Window] = true
	}
	for win := range windows {
		for _, mine := range g.node.DigestWindow(win) {
			t := theirs[[2]int64{win, int64(mine.Prefix)}]
			if t.Count == mine.Count && t.Hash == mine.Hash {
				continue
			}
			if err := g.reconcileBucket(ctx, p, win, mine.Prefix); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *Gossip) reconcileBucket(ctx context.Context, p *peer, win int64, prefix int) error {
	theirs := map[string]bool{}
	after := ""
	for {
		var ir IDsResponse
		if err := g.call(ctx, p, RouteIDs, IDsRequest{Window: win, Prefix: prefix, After: after}, &ir); err != nil {
			return err
		}
		for _, id := range ir.IDs {
			theirs[id] = true
		}
		if !ir.More || len(ir.IDs) == 0 {
			break
		}
		after = ir.IDs[len(ir.IDs)-1]
		if len(theirs) > 1<<20 {
			return errors.New("peer lists more than a million ids in one bucket")
		}
	}
	mine, err := g.node.IDs(win, prefix, "", 1<<20)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	var give []string
	for _, id := range mine {
		have[id] = true
		if !theirs[id] {
			give = append(give, id)
		}
	}
	var want []string
	for id := range theirs {
		if !have[id] {
			want = append(want, id)
		}
	}
	for len(want) > 0 {
		k := min(len(want), g.cfg.Batch)
		var fr PushRequest
		if err := g.call(ctx, p, RouteFetch, FetchRequest{IDs: want[:k]}, &fr); err != nil {
			return err
		}
		g.node.ApplyBatch(ctx, p.url, fr.Events)
		want = want[k:]
	}
	for len(give) > 0 {
		k := min(len(give), g.cfg.Batch)
		evs, err := g.node.Events(give[:k])
		if err != nil {
			return err
		}
		if len(evs) > 0 {
			if err := g.push(ctx, p, evs); err != nil {
				return err
			}
		}
		give = give[k:]
	}
	return nil
}

// call POSTs v as JSON to p's route, signed, and decodes the answer.
func (g *Gossip) call(ctx context.Context, p *peer, route string, v, out any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url+route, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(identity.HeaderTraceID, "mesh-"+uuid.NewString())
	if err := g.signer.SignRequest(req, body); err != nil {
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := wire.ReadAll(resp.Body, maxAnswerBytes)
	if err != nil {
		return fmt.Errorf("%s: answer: %w", route, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", route, resp.Status, truncate(string(data), 200))
	}
	return json.Unmarshal(data, out)
}
