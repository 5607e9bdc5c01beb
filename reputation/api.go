package reputation

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Report is a report of misbehaviour made on this node: by its admin, by a
// verifier through the slash endpoint, or by code embedding the node.
type Report struct {
	// Subject is the agent at fault.
	Subject string
	// Type is hallucination, failure, timeout or error (matched without
	// regard to case). Successes are never reported: they are observed.
	Type string
	// Severity of a hallucination: critical, high, medium (the default when
	// empty) or low; anything else counts as high.
	Severity string
	// TraceID is the trace the report concerns, if any.
	TraceID string
	// Details is a JSON object or nil; it is scrubbed before it is signed,
	// stored or served.
	Details json.RawMessage
	// DetectedBy names the detector ("admin", a verifier's agent id).
	DetectedBy string
}

// ReportResult is what a report did.
type ReportResult struct {
	// EventID is the signed event's id.
	EventID string
	// Event is the event in the Python package's shape; its score_delta is
	// what the event did to the score after weight and caps.
	Event Event
	// PreviousScore and Score are the subject's score before and after.
	PreviousScore, Score Points
	// TrustLevel is Level(Score).
	TrustLevel string
}

// Report signs a report as this node, applies it, writes it to disk
// (fsynced: a returned result is durable) and hands it to the transports.
// Validation errors wrap ErrUnknownReason or ErrInvalidEvent; a reporter
// over its per-window event count gets ErrCellFull.
func (n *Node) Report(ctx context.Context, r Report) (ReportResult, error) {
	typ, ok := parseType(r.Type)
	if !ok || typ == typSuccess || typ == typImport || typ == typSummary {
		return ReportResult{}, fmt.Errorf("%w %q: a report is hallucination, failure, timeout or error", ErrUnknownReason, truncate(r.Type, 64))
	}
	body := EventBody{Reporter: n.id, Subject: r.Subject, Type: typeNames[typ], Time: n.now(), TraceID: r.TraceID, DetectedBy: r.DetectedBy}
	if typ == typHallucination {
		body.Severity = sevNames[parseSeverity(r.Severity)]
	}
	details, err := n.prepareDetails(r.Details)
	if err != nil {
		return ReportResult{}, err
	}
	ev, err := signEvent(body, details, n.key)
	if err != nil {
		return ReportResult{}, err
	}
	it, err := n.applyLocal(ctx, ev)
	if err != nil && !errors.Is(err, ErrDuplicate) {
		return ReportResult{}, err
	}
	return ReportResult{
		EventID: ev.ID, Event: displayEvent(&ev, it.effect), PreviousScore: it.prev, Score: it.score, TrustLevel: Level(it.score),
	}, err
}

// prepareDetails scrubs a details object and returns its canonical form.
func (n *Node) prepareDetails(d json.RawMessage) ([]byte, error) {
	t := bytes.TrimSpace(d)
	if len(t) == 0 || string(t) == "null" {
		return nil, nil
	}
	if _, err := canonicalDetails(t); err != nil {
		return nil, fmt.Errorf("%w: details: %w", ErrInvalidEvent, err)
	}
	scrubbed := n.cfg.Scrub(t)
	if scrubbed == nil {
		return nil, nil
	}
	out, err := canonicalDetails(scrubbed)
	if err != nil {
		return nil, nil
	}
	return out, nil
}

// applyLocal applies one event signed by this node.
func (n *Node) applyLocal(ctx context.Context, ev SignedEvent) (*item, error) {
	it := &item{ev: ev, details: ev.Details}
	copy(it.id[:], mustHex(ev.ID))
	err := n.submit(ctx, &job{items: []*item{it}})
	if err == nil {
		err = it.err
	}
	return it, err
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// Apply verifies and applies an event from the mesh; see ApplyBatch.
func (n *Node) Apply(ctx context.Context, ev SignedEvent) error {
	return n.ApplyBatch(ctx, "", []SignedEvent{ev})[0]
}

// ApplyBatch verifies events from the mesh (source names the peer or
// transport that delivered them) and applies the valid ones in one durable commit.
// It returns one error per event, nil for an applied one. Errors wrap
// ErrUnsigned, ErrUnknownKey, ErrBadSignature, ErrInvalidEvent,
// ErrDuplicate (already applied: success for a receiver), ErrStale,
// ErrFuture, ErrCellFull or ErrStoreFull; a failed write or a closed node
// fails every event. Details that the scrubber would change are dropped
// (the signature covers only their hash).
func (n *Node) ApplyBatch(ctx context.Context, source string, evs []SignedEvent) []error {
	if source == "" {
		source = "unknown" // "" marks this node's own events to the transports
	}
	errs := make([]error, len(evs))
	verified := make([]*item, len(evs))
	verifyAll := func(from, step int) {
		for i := from; i < len(evs); i += step {
			verified[i], errs[i] = n.verify(&evs[i])
		}
	}
	// Signatures are the cost of a batch: check them on every core.
	if procs := runtime.GOMAXPROCS(0); procs > 1 && len(evs) >= 32 {
		var wg sync.WaitGroup
		for p := range procs {
			wg.Add(1)
			go func() { defer wg.Done(); verifyAll(p, procs) }()
		}
		wg.Wait()
	} else {
		verifyAll(0, 1)
	}
	items := make([]*item, 0, len(evs))
	idx := make([]int, 0, len(evs))
	for i, it := range verified {
		if errs[i] != nil {
			n.stats.refused.Add(1)
			continue
		}
		items = append(items, it)
		idx = append(idx, i)
	}
	if len(items) == 0 {
		return errs
	}
	j := &job{items: items, source: source}
	err := n.submit(ctx, j)
	if err != nil && !j.finished() {
		// Not applied, or still being applied: the outcomes are the
		// writer's until it is done, and the caller hears err.
		for k := range items {
			errs[idx[k]] = err
		}
		return errs
	}
	for k, it := range items {
		switch {
		case err != nil && it.err == nil:
			errs[idx[k]] = err
		default:
			errs[idx[k]] = it.err
		}
		if it.err != nil && !errors.Is(it.err, ErrDuplicate) {
			n.stats.refused.Add(1)
		}
	}
	return errs
}

// verify checks an event's form, signature and details.
func (n *Node) verify(ev *SignedEvent) (*item, error) {
	if len(ev.Signature) == 0 {
		return nil, fmt.Errorf("%w: event about %q from %q", ErrUnsigned, truncate(ev.Body.Subject, 64), truncate(ev.Body.Reporter, 64))
	}
	if err := ev.Body.validate(); err != nil {
		return nil, err
	}
	keys := n.reporterKeys(ev.Body.Reporter)
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, truncate(ev.Body.Reporter, 64))
	}
	var (
		id  [32]byte
		err error
	)
	for _, k := range keys {
		if id, err = verifyEvent(ev, k); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	details, err := checkDetails(ev)
	if err != nil {
		return nil, err
	}
	if details != nil {
		if s := n.cfg.Scrub(details); s == nil {
			details = nil
		} else if c, err := canonicalDetails(s); err != nil || !bytes.Equal(c, details) {
			details = nil
		}
	}
	out := *ev
	out.ID = hex.EncodeToString(id[:])
	return &item{ev: out, id: id, details: details}, nil
}

// displayEvent is ev in the Python package's shape, with effect as its
// score_delta.
func displayEvent(ev *SignedEvent, effect Points) Event {
	b := &ev.Body
	out := Event{
		ID: ev.ID, AgentID: b.Subject, Type: b.Type, Severity: b.Severity, Delta: effect,
		Time: b.Time.UTC(), TraceID: b.TraceID, DetectedBy: b.DetectedBy, Details: ev.Details,
	}
	if out.DetectedBy == "" {
		out.DetectedBy = b.Reporter
	}
	if b.Type == TypeSummary {
		c := b.Counts
		out.Details = json.RawMessage(fmt.Sprintf(`{"error":%d,"failure":%d,"success":%d,"timeout":%d}`, c.Error, c.Failure, c.Success, c.Timeout))
	}
	return out
}

// Get returns an agent's reputation in the Python package's shape, with its
// last RecentEvents retained events (details scrubbed again before they are
// served). An unknown agent is not found. For the node's own agent the
// counts include what Observe counted locally.
func (n *Node) Get(agentID string) (Snapshot, bool) {
	var (
		st     foldState
		recent []rec
	)
	n.mu.RLock()
	m := n.members[agentID]
	if m != nil {
		st = m.st
		recent = slices.Clone(m.events[max(0, len(m.events)-RecentEvents):])
	}
	n.mu.RUnlock()
	if m == nil {
		if agentID != n.id || n.OwnOutcomes() == (Counts{}) {
			return Snapshot{}, false
		}
		st = neutralState() // the own agent, with locally counted outcomes only
	}
	sc := AgentScore{
		AgentID: agentID, Score: st.Score, InitialScore: NeutralScore,
		TotalEvents: st.Total, PositiveEvents: st.Positive, NegativeEvents: st.Negative,
		RecentEvents: make([]Event, 0, len(recent)),
	}
	if st.Last > 0 {
		sc.LastUpdated = time.UnixMicro(st.Last).UTC()
	}
	if agentID == n.id {
		own := n.OwnOutcomes()
		sc.PositiveEvents += int64(own.Success)
		sc.NegativeEvents += int64(own.Failure + own.Timeout + own.Error)
		sc.TotalEvents += int64(own.Success + own.Failure + own.Timeout + own.Error)
	}
	seqs := make([]uint64, len(recent))
	for i := range recent {
		seqs[i] = recent[i].seq
	}
	stored, err := n.readEvents(seqs)
	if err != nil {
		n.log.Warn("reputation: cannot read events", "agent_id", agentID, "err", err)
	}
	byID := make(map[string]*SignedEvent, len(stored))
	for i := range stored {
		byID[stored[i].ID] = &stored[i]
	}
	for i := range recent {
		ev := byID[hex.EncodeToString(recent[i].key.id[:])]
		if ev == nil {
			continue // compacted meanwhile
		}
		if len(ev.Details) > 0 {
			ev.Details = n.cfg.Scrub(ev.Details)
		}
		sc.RecentEvents = append(sc.RecentEvents, displayEvent(ev, recent[i].effect))
	}
	return Snapshot{AgentScore: sc, TrustLevel: Level(st.Score)}, true
}

// Export returns every agent's score in the Python package's snapshot
// shape. recent_events is empty: peers exchange events, and a snapshot of
// every event of every agent would be unbounded.
func (n *Node) Export() Export {
	out := Export{ReputationData: map[string]AgentScore{}}
	n.mu.RLock()
	for id, m := range n.members {
		sc := AgentScore{AgentID: id, Score: m.st.Score, InitialScore: NeutralScore, TotalEvents: m.st.Total,
			PositiveEvents: m.st.Positive, NegativeEvents: m.st.Negative, RecentEvents: []Event{}}
		if m.st.Last > 0 {
			sc.LastUpdated = time.UnixMicro(m.st.Last).UTC()
		}
		out.ReputationData[id] = sc
	}
	n.mu.RUnlock()
	out.Timestamp = n.now().UTC().Truncate(time.Microsecond)
	return out
}

// Import merges a snapshot in the Python package's format (see
// Store.Import for what is validated). For every agent whose imported score
// is lower than its score here, the node signs an event of type import
// whose delta is the difference, with detected_by source; an import never
// raises a score. The events go through the fold like any other — this
// node's weight and per-window loss cap apply — so one import lowers an
// agent by at most the loss cap per window. The import is atomic: every
// entry is validated first, and either all its events are applied and
// durable or none is. It returns the number of agents it lowered.
func (n *Node) Import(ctx context.Context, source string, data []byte) (int, error) {
	if source != "" {
		if err := checkAgentID(source); err != nil {
			return 0, fmt.Errorf("reputation: import source: %w", err)
		}
	}
	entries, err := parseImport(data, n.cfg.MaxImportAgents)
	if err != nil {
		return 0, err
	}
	now := n.now()
	var items []*item
	for _, id := range sortedIDs(entries) {
		cur, ok := n.Score(id)
		if !ok {
			cur = NeutralScore
		}
		to := entries[id]
		if to >= cur {
			continue
		}
		details := []byte(`{"imported_score":`)
		details = to.AppendJSON(details)
		details = append(details, `,"previous_score":`...)
		details = cur.AppendJSON(details)
		details = append(details, '}')
		ev, err := signEvent(EventBody{Reporter: n.id, Subject: id, Type: TypeImport, Time: now, DetectedBy: source, Delta: to - cur}, details, n.key)
		if err != nil {
			return 0, &ImportError{AgentID: id, Err: err}
		}
		it := &item{ev: ev, details: details}
		copy(it.id[:], mustHex(ev.ID))
		items = append(items, it)
	}
	if len(items) == 0 {
		return 0, nil
	}
	if err := n.submit(ctx, &job{items: items, atomic: true}); err != nil {
		return 0, fmt.Errorf("reputation: import: %w", err)
	}
	applied := 0
	for _, it := range items {
		if it.err == nil {
			applied++
		}
	}
	return applied, nil
}

// Batch is a set of events a node hands its transports once they are
// durable.
type Batch struct {
	// Events are new to this node (duplicates are not passed on).
	Events []SignedEvent
	// Source is the peer that sent them, "" when this node made them.
	Source string
}

// Transport carries a node's events to the rest of the mesh. Publish must
// not block (queue, bounded, and drop what does not fit: anti-entropy or a
// resync recovers it). Close drains within ctx.
type Transport interface {
	Publish(b Batch)
	Close(ctx context.Context) error
}

// AddTransport registers t: every event the node applies from then on is
// handed to it, and Close closes it.
func (n *Node) AddTransport(t Transport) {
	n.tMu.Lock()
	n.transports = append(n.transports, t)
	n.tMu.Unlock()
}

func (n *Node) publish(b Batch) {
	n.tMu.Lock()
	ts := n.transports
	n.tMu.Unlock()
	for _, t := range ts {
		t.Publish(b)
	}
}

// Events returns the stored events with the given hex ids; unknown or
// compacted ones are left out.
func (n *Node) Events(ids []string) ([]SignedEvent, error) {
	bin := make([][32]byte, 0, len(ids))
	for _, s := range ids {
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%w: id %q is not 64 hex digits", ErrInvalidEvent, truncate(s, 70))
		}
		var id [32]byte
		copy(id[:], b)
		bin = append(bin, id)
	}
	return n.readEventsByID(bin)
}

// LocalEvents returns the stored events this node signed at or after
// since, oldest first by storage order (a transport republishes them after
// it lost some). limit bounds the result.
func (n *Node) LocalEvents(since time.Time, limit int) ([]SignedEvent, error) {
	var out []SignedEvent
	needle := []byte(`"reporter":` + string(appendString(nil, n.id)) + `,`)
	err := n.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvents).ForEach(func(_, v []byte) error {
			if len(out) >= limit || !bytes.Contains(v, needle) {
				return nil
			}
			var ev SignedEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				return err
			}
			if ev.Body.Reporter == n.id && !ev.Body.Time.Before(since) {
				out = append(out, ev)
			}
			return nil
		})
	})
	return out, err
}

// Stats are counters for metrics.
type Stats struct {
	Agents, ColdAgents, Events                                                int
	Applied, Refused, Displaced, Refolds, Evicted, Compacted, ObservedDropped uint64
}

type nodeStats struct {
	applied, refused, displaced, refolds, evicted, compacted atomic.Uint64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	n.mu.RLock()
	s := Stats{Agents: n.hot.n, ColdAgents: n.nCold, Events: n.nEvents}
	n.mu.RUnlock()
	s.Applied, s.Refused, s.Displaced = n.stats.applied.Load(), n.stats.refused.Load(), n.stats.displaced.Load()
	s.Refolds, s.Evicted, s.Compacted = n.stats.refolds.Load(), n.stats.evicted.Load(), n.stats.compacted.Load()
	s.ObservedDropped = n.obs.dropped.Load()
	return s
}
