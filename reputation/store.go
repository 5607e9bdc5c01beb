package reputation

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Defaults and fixed sizes of a Store.
const (
	// DefaultMaxAgents is the number of agents a Store holds when
	// Config.MaxAgents is zero.
	DefaultMaxAgents = 100_000
	// DefaultMaxImportAgents is the most entries one import may carry when
	// Config.MaxImportAgents is zero.
	DefaultMaxImportAgents = 10_000
	// RecentEvents is the number of events kept per agent, newest last.
	RecentEvents = 100
)

// Store errors callers branch on.
var (
	// ErrStoreFull means a new agent cannot be added: the store holds
	// MaxAgents agents and none of them may be evicted.
	ErrStoreFull = errors.New("reputation: store full")
	// ErrDuplicateEvent means an event with the same id was already applied
	// to the agent; nothing changed. A mesh receiver treats it as success.
	ErrDuplicateEvent = errors.New("reputation: duplicate event")
	// ErrNoStore means the Store was not made by NewStore.
	ErrNoStore = errors.New("reputation: store not created with NewStore")
)

// Config configures a Store. The zero value is usable.
type Config struct {
	// MaxAgents bounds the number of agents held. If zero,
	// DefaultMaxAgents is used.
	MaxAgents int
	// MaxImportAgents bounds the entries of one import. If zero,
	// DefaultMaxImportAgents is used.
	MaxImportAgents int
	// Clock gives the current time. If nil, time.Now is used.
	Clock func() time.Time
	// NewID makes ids for events that arrive without one and for import
	// events; each must be 1–128 characters of [A-Za-z0-9._:-]. If nil,
	// random (version 4) UUIDs are used.
	NewID func() string
}

// Store holds the reputation of agents. It is safe for concurrent use and
// bounded: it never holds more than MaxAgents agents and RecentEvents events
// per agent. The zero Store denies everything: Record and Import return
// ErrNoStore and Get finds nothing.
type Store struct {
	mu        sync.RWMutex
	agents    map[string]*agent
	evictable agentList // evictable agents, least recently updated first

	maxAgents, maxImport int
	now                  func() time.Time
	newID                func() string
	seed                 maphash.Seed // for event id hashes
}

// agent is the state of one agent.
type agent struct {
	id                        string
	score                     Points
	total, positive, negative int64
	updated                   int64 // Unix microseconds
	events                    []storedEvent
	head                      int // index of the oldest event once len(events) == RecentEvents

	prev, next *agent // links in Store.evictable
}

// NewStore returns an empty Store. It refuses negative limits.
func NewStore(cfg Config) (*Store, error) {
	if cfg.MaxAgents < 0 {
		return nil, fmt.Errorf("reputation: config: max agents %d is negative", cfg.MaxAgents)
	}
	if cfg.MaxImportAgents < 0 {
		return nil, fmt.Errorf("reputation: config: max import agents %d is negative", cfg.MaxImportAgents)
	}
	s := &Store{
		agents:    make(map[string]*agent),
		maxAgents: cfg.MaxAgents,
		maxImport: cfg.MaxImportAgents,
		now:       cfg.Clock,
		newID:     cfg.NewID,
		seed:      maphash.MakeSeed(),
	}
	if s.maxAgents == 0 {
		s.maxAgents = DefaultMaxAgents
	}
	if s.maxImport == 0 {
		s.maxImport = DefaultMaxImportAgents
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = uuid.NewString
	}
	s.evictable.init()
	return s, nil
}

// Result is what Record did.
type Result struct {
	// Event is the event as applied, with its id, delta, normalized
	// severity and time filled in.
	Event Event
	// PreviousScore and Score are the agent's score before and after.
	PreviousScore, Score Points
	// TrustLevel is Level(Score).
	TrustLevel string
}

// Record applies one event to its agent: the delta Delta gives for the
// event's type and severity is added and the score clamped to [0, 10]. An
// agent seen for the first time starts at NeutralScore; when the store is
// full, the least recently updated agent that can be evicted (see
// package doc) makes room, or Record fails with ErrStoreFull.
//
// The event's ID defaults to a new one and its Time to the clock's now; a
// Delta other than zero must equal the computed one. Applying an event whose
// ID is among the agent's RecentEvents retained events changes nothing and
// returns ErrDuplicateEvent with the current score. Validation errors wrap
// ErrUnknownReason or ErrInvalidEvent.
func (s *Store) Record(ctx context.Context, ev Event) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if s.agents == nil {
		return Result{}, ErrNoStore
	}
	t := s.now()
	now, err := micros(t)
	if err != nil {
		return Result{}, fmt.Errorf("reputation: clock: %w", err)
	}
	se, applied, err := prepare(ev, s.newID, t)
	if err != nil {
		return Result{}, err
	}
	se.idHash = maphash.String(s.seed, se.id)
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.agents[applied.AgentID]
	if a == nil {
		if a, err = s.add(applied.AgentID); err != nil {
			return Result{}, err
		}
	} else if a.has(se.idHash, se.id) {
		return Result{Event: applied, PreviousScore: a.score, Score: a.score, TrustLevel: Level(a.score)},
			fmt.Errorf("%w: %q for agent %q", ErrDuplicateEvent, se.id, a.id)
	}
	prev := a.score
	s.apply(a, se, now)
	return Result{Event: applied, PreviousScore: prev, Score: a.score, TrustLevel: Level(a.score)}, nil
}

// nowMicros reads the clock in Unix microseconds.
func (s *Store) nowMicros() (int64, error) {
	at, err := micros(s.now())
	if err != nil {
		return 0, fmt.Errorf("reputation: clock: %w", err)
	}
	return at, nil
}

// add makes a new agent at NeutralScore, evicting one if the store is full.
// The caller holds s.mu.
func (s *Store) add(id string) (*agent, error) {
	if len(s.agents) >= s.maxAgents {
		victim := s.evictable.front()
		if victim == nil {
			return nil, fmt.Errorf("%w: %d agents, none evictable", ErrStoreFull, len(s.agents))
		}
		s.evictable.remove(victim)
		delete(s.agents, victim.id)
	}
	a := &agent{id: strings.Clone(id), score: NeutralScore}
	s.agents[a.id] = a // the clone: id may alias a reused request buffer
	return a, nil
}

// apply adds se to a at time now and keeps the eviction list in order. The
// caller holds s.mu.
func (s *Store) apply(a *agent, se storedEvent, now int64) {
	a.score = clamp(a.score + se.delta)
	a.total++
	switch {
	case se.delta > 0:
		a.positive++
	case se.delta < 0:
		a.negative++
	}
	a.updated = now
	a.push(se)
	if a.prev != nil {
		s.evictable.remove(a)
	}
	if a.evictable() {
		s.evictable.pushBack(a)
	}
}

// evictable reports whether a may make room for a new agent: it has never
// had a negative event and stands at NeutralScore or above. A slashed agent
// is never evicted, so flooding the store with new ids cannot wash out a
// slash.
func (a *agent) evictable() bool {
	return a.negative == 0 && a.score >= NeutralScore
}

// push appends se to the ring of recent events, dropping the oldest when
// full. The slice grows as events arrive, so a quiet agent stays small.
func (a *agent) push(se storedEvent) {
	if len(a.events) < RecentEvents {
		if len(a.events) == cap(a.events) {
			grown := make([]storedEvent, len(a.events), min(RecentEvents, max(1, 2*cap(a.events))))
			copy(grown, a.events)
			a.events = grown
		}
		a.events = append(a.events, se)
		return
	}
	a.events[a.head] = se
	a.head = (a.head + 1) % RecentEvents
}

// has reports whether an event with this id (whose hash is h) is among the
// retained ones.
func (a *agent) has(h uint64, id string) bool {
	for i := range a.events {
		if a.events[i].idHash == h && a.events[i].id == id {
			return true
		}
	}
	return false
}

// recent returns the retained events, oldest first.
func (a *agent) recent() []Event {
	out := make([]Event, 0, len(a.events))
	for i := range a.events {
		se := &a.events[(a.head+i)%len(a.events)]
		out = append(out, se.event(a.id))
	}
	return out
}

// Get returns the agent's reputation. It never creates an agent: an agent
// with no recorded event is not found.
func (s *Store) Get(agentID string) (Snapshot, bool) {
	if s.agents == nil {
		return Snapshot{}, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := s.agents[agentID]
	if a == nil {
		return Snapshot{}, false
	}
	sc := a.snapshot()
	return Snapshot{AgentScore: sc, TrustLevel: Level(sc.Score)}, true
}

// Score returns the agent's score without copying its events: the cheap
// lookup for the per-request policy path. An unknown agent is not found;
// callers treat it as NeutralScore.
func (s *Store) Score(agentID string) (Points, bool) {
	if s.agents == nil {
		return 0, false
	}
	s.mu.RLock()
	a := s.agents[agentID]
	var p Points
	if a != nil {
		p = a.score
	}
	s.mu.RUnlock()
	return p, a != nil
}

// Len returns the number of agents held.
func (s *Store) Len() int {
	if s.agents == nil {
		return 0
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.agents)
}

func (a *agent) snapshot() AgentScore {
	return AgentScore{
		AgentID:        a.id,
		Score:          a.score,
		InitialScore:   NeutralScore,
		TotalEvents:    a.total,
		PositiveEvents: a.positive,
		NegativeEvents: a.negative,
		LastUpdated:    time.UnixMicro(a.updated).UTC(),
		RecentEvents:   a.recent(),
	}
}

// AgentScore is an agent's reputation in the Python package's score shape:
// agent_id, score, initial_score, total_events, positive_events,
// negative_events, last_updated, recent_events (oldest first). Counts include
// import events.
type AgentScore struct {
	AgentID        string    `json:"agent_id"`
	Score          Points    `json:"score"`
	InitialScore   Points    `json:"initial_score"`
	TotalEvents    int64     `json:"total_events"`
	PositiveEvents int64     `json:"positive_events"`
	NegativeEvents int64     `json:"negative_events"`
	LastUpdated    time.Time `json:"last_updated"`
	RecentEvents   []Event   `json:"recent_events"`
}

// Snapshot is what GET /reputation/{agent_id} serves: the Python score shape
// plus trust_level.
type Snapshot struct {
	AgentScore
	TrustLevel string `json:"trust_level"`
}

// Export is the Python package's reputation snapshot, exchanged between
// peers: every agent's score keyed by agent id, and when it was taken.
type Export struct {
	ReputationData map[string]AgentScore `json:"reputation_data"`
	Timestamp      time.Time             `json:"timestamp"`
}

// Export returns every agent's score, as of the clock's now. Times are UTC
// to the microsecond. The zero Store exports nothing.
func (s *Store) Export() Export {
	out := Export{ReputationData: map[string]AgentScore{}}
	if s.agents == nil {
		return out
	}
	s.mu.RLock()
	out.ReputationData = make(map[string]AgentScore, len(s.agents))
	for id, a := range s.agents {
		out.ReputationData[id] = a.snapshot()
	}
	s.mu.RUnlock()
	out.Timestamp = s.now().UTC().Truncate(time.Microsecond)
	return out
}

// sortedIDs returns the keys of m in order.
func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// agentList is an intrusive doubly linked list of agents with a sentinel.
type agentList struct {
	root agent
	n    int
}

func (l *agentList) init() { l.root.prev, l.root.next = &l.root, &l.root }

func (l *agentList) len() int { return l.n }

func (l *agentList) front() *agent {
	if l.root.next == &l.root {
		return nil
	}
	return l.root.next
}

func (l *agentList) pushBack(a *agent) {
	a.prev, a.next = l.root.prev, &l.root
	l.root.prev.next = a
	l.root.prev = a
	l.n++
}

func (l *agentList) remove(a *agent) {
	a.prev.next = a.next
	a.next.prev = a.prev
	a.prev, a.next = nil, nil
	l.n--
}
