package reputation

import (
	"context"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome is how one call went, as the caller saw it.
type Outcome uint8

// Outcomes Observe counts.
const (
	OutcomeSuccess Outcome = iota
	OutcomeFailure
	OutcomeTimeout
	OutcomeError
	numOutcomes
)

const observeShards = 16

// observer counts outcomes per subject between two flushes.
type observer struct {
	shards  [observeShards]observeShard
	n       atomic.Int64 // subjects counted this interval
	max     int64
	dropped atomic.Uint64
	own     [numOutcomes]atomic.Uint64
}

type observeShard struct {
	mu sync.RWMutex
	m  map[string]*obsCell
}

type obsCell struct{ c [numOutcomes]atomic.Uint32 }

func (o *observer) init(max int) {
	o.max = int64(max)
	for i := range o.shards {
		o.shards[i].m = make(map[string]*obsCell)
	}
}

// Observe counts one call to subject that ended with outcome o, as this
// node's egress saw it (the caller reporting about the agent it called).
// Counts are signed as one summary event per subject per SummaryInterval.
// For the node's own agent nothing is signed: the outcome is only counted
// locally (OwnOutcomes, and the counts Get shows), because an agent's own
// sidecar must never raise its score. Observe does not allocate for a
// subject already counted in the interval; beyond MaxObserved subjects per
// interval, outcomes are dropped and counted in Stats.
func (n *Node) Observe(subject string, o Outcome) {
	if o >= numOutcomes {
		return
	}
	if subject == n.id {
		n.obs.own[o].Add(1)
		return
	}
	sh := &n.obs.shards[maphash.String(n.seed, subject)%observeShards]
	sh.mu.RLock()
	c := sh.m[subject]
	if c != nil {
		c.c[o].Add(1)
	}
	sh.mu.RUnlock()
	if c != nil {
		return
	}
	if checkAgentID(subject) != nil {
		n.obs.dropped.Add(1)
		return
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	c = sh.m[subject]
	if c == nil {
		if n.obs.n.Load() >= n.obs.max {
			n.obs.dropped.Add(1)
			return
		}
		c = &obsCell{}
		sh.m[strings.Clone(subject)] = c
		n.obs.n.Add(1)
	}
	c.c[o].Add(1)
}

// OwnOutcomes returns what Observe counted for the node's own agent since
// the node started.
func (n *Node) OwnOutcomes() Counts {
	sat := func(v uint64) uint32 { return uint32(min(v, MaxSummaryCount)) }
	return Counts{
		Success: sat(n.obs.own[OutcomeSuccess].Load()), Failure: sat(n.obs.own[OutcomeFailure].Load()),
		Timeout: sat(n.obs.own[OutcomeTimeout].Load()), Error: sat(n.obs.own[OutcomeError].Load()),
	}
}

func (n *Node) flusher() {
	t := time.NewTicker(n.cfg.SummaryInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.SummaryInterval)
			n.flushObserved(ctx)
			cancel()
		case <-n.stop:
			return
		}
	}
}

// Flush turns the outcomes observed so far into summary events now,
// instead of at the next interval, and waits until they are durable.
func (n *Node) Flush(ctx context.Context) error { return n.flushObserved(ctx) }

// flushObserved signs one summary event per subject observed since the
// last flush and applies them.
func (n *Node) flushObserved(ctx context.Context) error {
	n.flushMu.Lock()
	defer n.flushMu.Unlock()
	var items []*item
	now := n.now()
	for i := range n.obs.shards {
		sh := &n.obs.shards[i]
		sh.mu.Lock()
		m := sh.m
		sh.m = make(map[string]*obsCell, len(m))
		sh.mu.Unlock()
		for subject, c := range m {
			sat := func(o Outcome) uint32 { return min(c.c[o].Load(), MaxSummaryCount) }
			counts := Counts{Success: sat(OutcomeSuccess), Failure: sat(OutcomeFailure), Timeout: sat(OutcomeTimeout), Error: sat(OutcomeError)}
			if counts.zero() {
				continue
			}
			ev, err := signEvent(EventBody{Reporter: n.id, Subject: subject, Type: TypeSummary, Time: now, Counts: counts}, nil, n.key)
			if err != nil {
				n.log.Warn("reputation: cannot sign a summary", "agent_id", subject, "err", err)
				continue
			}
			it := &item{ev: ev}
			copy(it.id[:], mustHex(ev.ID))
			items = append(items, it)
		}
	}
	n.obs.n.Store(0)
	if len(items) == 0 {
		return nil
	}
	err := n.submit(ctx, &job{items: items})
	if err != nil {
		n.log.Warn("reputation: cannot apply summaries", "events", len(items), "err", err)
		return err
	}
	for _, it := range items {
		if it.err != nil {
			n.log.Warn("reputation: summary refused", "agent_id", it.ev.Body.Subject, "err", it.err)
		}
	}
	return nil
}
