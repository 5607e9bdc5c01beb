package reputation

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/identity"
)

// Defaults of NodeConfig.
const (
	DefaultWindow                   = time.Hour
	DefaultGainCap           Points = 100 // +1.00 per reporter, subject and window
	DefaultLossCap           Points = 400 // −4.00 per reporter, subject and window
	DefaultSummary                  = time.Minute
	DefaultMaxEventAge              = 24 * time.Hour
	DefaultMaxClockSkew             = 5 * time.Minute
	DefaultMaxColdAgents            = 250_000
	DefaultMaxEventsPerAgent        = 1024
	DefaultMaxEvents                = 1_000_000
	DefaultMaxEventsPerCell         = 128
	DefaultMaxObserved              = 10_000
	// MaxReporters bounds the agents with trusted reporter keys.
	MaxReporters = 100_000
	// DBFile is the name of the node's database in NodeConfig.Dir.
	DBFile = "reputation.db"
)

// ErrClosed is returned by a Node after Close.
var ErrClosed = errors.New("reputation: node closed")

// NodeConfig configures a Node. Dir, AgentID and Key are required; every
// other zero value means the documented default.
//
// Window, GainCap, LossCap and the weights are mesh parameters: every node
// of a mesh must use the same, or their scores differ.
type NodeConfig struct {
	// Dir is the data directory; the database is Dir/reputation.db.
	Dir string
	// AgentID is the agent this node's sidecar protects and signs as: its
	// reports are signed by Key under this id, and reports about it from
	// itself never raise its score.
	AgentID string
	// Key is AgentID's private key.
	Key identity.PrivateKey
	// Reporters are the keys of the agents whose events this node accepts
	// (trusted_agents and attested agents; see AddReporterKey). The node's
	// own key is always accepted.
	Reporters map[string]ed25519.PublicKey
	// Clock gives the current time. If nil, time.Now.
	Clock func() time.Time
	// Logger receives warnings (a refused event, a failed write). If nil,
	// slog.Default().
	Logger *slog.Logger
	// Scrub returns a scrubbed copy of a details JSON object, as payloads
	// are scrubbed before they are stored or served. If nil,
	// detect.ScrubJSON with its default options.
	Scrub func(details []byte) []byte
	// Window is the length of the windows caps count in. If 0,
	// DefaultWindow (1 h).
	Window time.Duration
	// GainCap bounds what one reporter can raise one subject by in one
	// window. If 0, DefaultGainCap (+1.00).
	GainCap Points
	// LossCap bounds, as a positive number, what one reporter can lower one
	// subject by in one window. If 0, DefaultLossCap (4.00).
	LossCap Points
	// SummaryInterval is how often observed outcomes become summary
	// events. If 0, DefaultSummary (1 min).
	SummaryInterval time.Duration
	// MaxEventAge is how long events are kept and accepted; older history
	// is compacted into a signed checkpoint per agent. If 0,
	// DefaultMaxEventAge (24 h).
	MaxEventAge time.Duration
	// MaxClockSkew is how far in the future an event's time may be. If 0,
	// DefaultMaxClockSkew (5 min).
	MaxClockSkew time.Duration
	// MaxAgents bounds the agents kept in memory with their events. If 0,
	// DefaultMaxAgents.
	MaxAgents int
	// MaxColdAgents bounds the evicted agents kept with their penalty
	// (score only, in memory; checkpoint on disk). If 0,
	// DefaultMaxColdAgents.
	MaxColdAgents int
	// MaxEventsPerAgent bounds an agent's retained events before its
	// oldest half is compacted. If 0, DefaultMaxEventsPerAgent.
	MaxEventsPerAgent int
	// MaxEvents bounds the retained events of all agents. If 0,
	// DefaultMaxEvents.
	MaxEvents int
	// MaxEventsPerCell bounds the events one reporter may have about one
	// subject in one window (the earliest are kept). If 0,
	// DefaultMaxEventsPerCell.
	MaxEventsPerCell int
	// MaxObserved bounds the subjects Observe counts per interval; outcomes
	// for further subjects are dropped (and counted). If 0,
	// DefaultMaxObserved.
	MaxObserved int
	// MaxImportAgents bounds the entries of one snapshot import. If 0,
	// DefaultMaxImportAgents.
	MaxImportAgents int

	// noSync skips fsync: for this package's tests that do not test
	// durability.
	noSync bool
}

// Node holds the reputation of agents as one member of a mesh: it signs
// its own reports, verifies and applies others', folds every subject's
// events into its score, persists everything in a bbolt database before it
// acknowledges, and hands new events to its transports. Safe for concurrent
// use. Open makes one; Close releases it.
type Node struct {
	cfg  NodeConfig
	id   string
	key  identity.PrivateKey
	log  *slog.Logger
	now  func() time.Time
	db   *bolt.DB
	p    params
	seed maphash.Seed

	keysMu  sync.RWMutex
	keys    map[string][]ed25519.PublicKey
	keysGen atomic.Uint64

	// mu guards the model: members, their events and states, the digest.
	// Only the writer goroutine changes it.
	mu       sync.RWMutex
	members  map[string]*member
	hot      memberList // hot members, least recently updated first
	nCold    int
	nEvents  int
	maxWin   map[string]int64 // reporter → latest window it reported in
	interned map[string]string
	digest   map[int64]*[digestPrefixes]bucket
	seq      uint64 // the last key used in bucket ev
	instance string // random id of this database, made when it was created

	// idx is the lock-light index Score reads.
	idx [indexShards]indexShard

	obs observer

	jobs      chan *job
	subMu     sync.RWMutex // held to submit; Close takes it to shut submitters out
	stop      chan struct{}
	done      chan struct{}
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error

	flushMu    sync.Mutex
	tMu        sync.Mutex
	transports []Transport

	stats nodeStats
}

// member is the state of one agent.
type member struct {
	id     string
	score  atomic.Int64 // Points, read by Score without the node's lock
	cold   bool
	cp     foldState // checkpoint: compacted history
	st     foldState // after every retained event
	events []rec     // retained, sorted by key
	touch  int64

	prev, next *member
}

const indexShards = 64

type indexShard struct {
	mu sync.RWMutex
	m  map[string]*member
}

// Open opens (or creates) the node's database in cfg.Dir, loads and folds
// what it holds, and starts the writer and the summary flusher.
func Open(ctx context.Context, cfg NodeConfig) (*Node, error) {
	if cfg.Dir == "" {
		return nil, errors.New("reputation: config: Dir is required")
	}
	if err := checkAgentID(cfg.AgentID); err != nil {
		return nil, fmt.Errorf("reputation: config: AgentID: %w", err)
	}
	if cfg.Key.IsZero() {
		return nil, errors.New("reputation: config: Key is required")
	}
	for name, v := range map[string]int{"MaxAgents": cfg.MaxAgents, "MaxColdAgents": cfg.MaxColdAgents,
		"MaxEventsPerAgent": cfg.MaxEventsPerAgent, "MaxEvents": cfg.MaxEvents, "MaxEventsPerCell": cfg.MaxEventsPerCell,
		"MaxObserved": cfg.MaxObserved, "MaxImportAgents": cfg.MaxImportAgents} {
		if v < 0 {
			return nil, fmt.Errorf("reputation: config: %s %d is negative", name, v)
		}
	}
	for name, v := range map[string]time.Duration{"Window": cfg.Window, "SummaryInterval": cfg.SummaryInterval,
		"MaxEventAge": cfg.MaxEventAge, "MaxClockSkew": cfg.MaxClockSkew} {
		if v < 0 {
			return nil, fmt.Errorf("reputation: config: %s %s is negative", name, v)
		}
	}
	if cfg.GainCap < 0 || cfg.LossCap < 0 {
		return nil, errors.New("reputation: config: caps are positive amounts")
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.MaxAgents, DefaultMaxAgents)
	def(&cfg.MaxColdAgents, DefaultMaxColdAgents)
	def(&cfg.MaxEventsPerAgent, DefaultMaxEventsPerAgent)
	def(&cfg.MaxEvents, DefaultMaxEvents)
	def(&cfg.MaxEventsPerCell, DefaultMaxEventsPerCell)
	def(&cfg.MaxObserved, DefaultMaxObserved)
	def(&cfg.MaxImportAgents, DefaultMaxImportAgents)
	defD(&cfg.Window, DefaultWindow)
	defD(&cfg.SummaryInterval, DefaultSummary)
	defD(&cfg.MaxEventAge, DefaultMaxEventAge)
	defD(&cfg.MaxClockSkew, DefaultMaxClockSkew)
	if cfg.GainCap == 0 {
		cfg.GainCap = DefaultGainCap
	}
	if cfg.LossCap == 0 {
		cfg.LossCap = DefaultLossCap
	}
	if cfg.Window < time.Second || cfg.Window%time.Second != 0 {
		return nil, fmt.Errorf("reputation: config: Window %s must be a whole number of seconds", cfg.Window)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Scrub == nil {
		cfg.Scrub = defaultScrub
	}
	n := &Node{
		cfg: cfg, id: strings.Clone(cfg.AgentID), key: cfg.Key, log: cfg.Logger, now: cfg.Clock,
		seed: maphash.MakeSeed(),
		keys: map[string][]ed25519.PublicKey{},
		jobs: make(chan *job, 256),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	n.p = params{window: cfg.Window.Microseconds(), gainCap: cfg.GainCap, lossCap: -cfg.LossCap, standing: n.standing}
	n.keys[n.id] = []ed25519.PublicKey{cfg.Key.PublicKey()}
	for id, pub := range cfg.Reporters {
		if err := n.AddReporterKey(id, pub); err != nil {
			return nil, fmt.Errorf("reputation: config: %w", err)
		}
	}
	n.obs.init(cfg.MaxObserved)
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("reputation: data dir: %w", err)
	}
	db, err := bolt.Open(filepath.Join(cfg.Dir, DBFile), 0o600, &bolt.Options{Timeout: 2 * time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true, NoSync: cfg.noSync})
	if err != nil {
		return nil, fmt.Errorf("reputation: open %s: %w", filepath.Join(cfg.Dir, DBFile), err)
	}
	n.db = db
	if err := n.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	go n.writer()
	go n.flusher()
	return n, nil
}

func defaultScrub(details []byte) []byte {
	out, _, err := detect.ScrubJSON(nil, details, detect.Options{})
	if err != nil {
		return nil
	}
	return out
}

// MaxEventAge returns how long the node keeps and accepts events (a
// transport that retains events, like a JetStream stream, keeps them as
// long).
func (n *Node) MaxEventAge() time.Duration { return n.cfg.MaxEventAge }

// Instance returns a random id made when the node's database was created:
// a transport keeps per-database state (a durable consumer) under it, so
// that a node whose data directory was wiped reads the mesh's history
// again.
func (n *Node) Instance() string { return n.instance }

// AgentID returns the node's own agent id.
func (n *Node) AgentID() string { return n.id }

// AddReporterKey trusts pub for events signed by reporter agentID, at run
// time (the sidecar calls it for trusted_agents and for every agent whose
// v2 attestation it verified). A reporter may have up to four keys (a
// rotation in progress); a fifth replaces the oldest.
func (n *Node) AddReporterKey(agentID string, pub ed25519.PublicKey) error {
	if err := checkAgentID(agentID); err != nil {
		return fmt.Errorf("reporter id: %w", err)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("reporter %q: key is %d bytes, want %d", truncate(agentID, 64), len(pub), ed25519.PublicKeySize)
	}
	n.keysMu.Lock()
	defer n.keysMu.Unlock()
	ks := n.keys[agentID]
	if ks == nil && len(n.keys) >= MaxReporters {
		return fmt.Errorf("reporter %q: already %d reporters", truncate(agentID, 64), MaxReporters)
	}
	for _, k := range ks {
		if k.Equal(pub) {
			return nil
		}
	}
	if len(ks) >= 4 {
		ks = ks[1:]
	}
	n.keys[strings.Clone(agentID)] = append(ks[:len(ks):len(ks)], append(ed25519.PublicKey(nil), pub...))
	n.keysGen.Add(1)
	return nil
}

// KeysVersion changes whenever a reporter key is added, so that a
// transport can rebuild what it derived from ReporterKeys.
func (n *Node) KeysVersion() uint64 { return n.keysGen.Load() }

// ReporterKeys returns a copy of the trusted reporter keys, the node's own
// included (the HTTP transport verifies its peers' requests with them).
func (n *Node) ReporterKeys() map[string][]ed25519.PublicKey {
	n.keysMu.RLock()
	defer n.keysMu.RUnlock()
	out := make(map[string][]ed25519.PublicKey, len(n.keys))
	for id, ks := range n.keys {
		out[id] = append([]ed25519.PublicKey(nil), ks...)
	}
	return out
}

// IsReporter reports whether agentID has a trusted key.
func (n *Node) IsReporter(agentID string) bool {
	n.keysMu.RLock()
	defer n.keysMu.RUnlock()
	return len(n.keys[agentID]) > 0
}

func (n *Node) reporterKeys(agentID string) []ed25519.PublicKey {
	n.keysMu.RLock()
	defer n.keysMu.RUnlock()
	return n.keys[agentID]
}

// Score returns an agent's score; unknown agents are not found (callers
// treat them as NeutralScore). It takes no lock but a shard's read lock and
// does not allocate: it is the per-request lookup.
func (n *Node) Score(agentID string) (Points, bool) {
	sh := &n.idx[maphash.String(n.seed, agentID)%indexShards]
	sh.mu.RLock()
	m := sh.m[agentID]
	sh.mu.RUnlock()
	if m == nil {
		return 0, false
	}
	return Points(m.score.Load()), true
}

// Level returns the trust level of an agent's score, and whether the agent
// is known; an unknown agent is at the neutral level (standard).
func (n *Node) Level(agentID string) (string, bool) {
	p, ok := n.Score(agentID)
	if !ok {
		p = NeutralScore
	}
	return Level(p), ok
}

func (n *Node) indexPut(m *member) {
	sh := &n.idx[maphash.String(n.seed, m.id)%indexShards]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[string]*member)
	}
	sh.m[m.id] = m
	sh.mu.Unlock()
}

func (n *Node) indexDel(id string) {
	sh := &n.idx[maphash.String(n.seed, id)%indexShards]
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
}

// standing returns the raw score of reporter at the start of window win.
// The caller holds n.mu.
func (n *Node) standing(reporter string, win int64) Points {
	m := n.members[reporter]
	if m == nil {
		return NeutralScore
	}
	return standingAt(&m.cp, m.events, win, n.p.window)
}

// intern returns the one copy of a reporter's name. The caller holds n.mu;
// reporters are agents with trusted keys, so the table is as bounded as
// the keys.
func (n *Node) intern(s string) string {
	if v, ok := n.interned[s]; ok {
		return v
	}
	v := strings.Clone(s)
	n.interned[v] = v
	return v
}

// Close flushes observed outcomes into a last summary, stops the
// transports (each gets ctx to drain), stops the writer and closes the
// database. It is idempotent.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.flushObserved(ctx)
		// Transports first: they may still hand over events while they
		// drain.
		n.tMu.Lock()
		ts := n.transports
		n.transports = nil
		n.tMu.Unlock()
		var errs []error
		for _, t := range ts {
			if err := t.Close(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		// Shut submitters out; those already sending finish first.
		n.subMu.Lock()
		n.closed.Store(true)
		n.subMu.Unlock()
		close(n.stop)
		<-n.done
		if err := n.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("reputation: close database: %w", err))
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// memberList is an intrusive doubly linked list of members.
type memberList struct {
	root member
	n    int
}

func (l *memberList) init() { l.root.prev, l.root.next = &l.root, &l.root; l.n = 0 }

func (l *memberList) front() *member {
	if l.root.next == &l.root {
		return nil
	}
	return l.root.next
}

func (l *memberList) pushBack(m *member) {
	m.prev, m.next = l.root.prev, &l.root
	l.root.prev.next = m
	l.root.prev = m
	l.n++
}

func (l *memberList) remove(m *member) {
	if m.prev == nil {
		return
	}
	m.prev.next = m.next
	m.next.prev = m.prev
	m.prev, m.next = nil, nil
	l.n--
}
