package reputation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// One goroutine, the writer, changes the model: it takes jobs (batches of
// verified events) from a channel, applies as many as are waiting to the
// model under n.mu, commits their writes in one bbolt transaction (one
// fsync: group commit), and only then acknowledges them and hands the new
// ones to the transports. A failed commit reloads the model from disk, so
// memory never holds what the disk does not.

// maxBatchEvents bounds the events of one commit.
const maxBatchEvents = 4096

// maintenanceEvery is how often the writer compacts aged events.
const maintenanceEvery = time.Minute

// job is a batch of events submitted together.
type job struct {
	items  []*item
	atomic bool   // all or nothing (imports): applied alone
	source string // who sent them ("" for this node)
	err    error
	done   chan struct{}
}

// finished reports whether the writer is done with j, so that its items'
// outcomes may be read. After submit gave up on a cancelled context, the
// writer may still be applying them.
func (j *job) finished() bool {
	select {
	case <-j.done:
		return true
	default:
		return false
	}
}

// item is one event of a job and its outcome.
type item struct {
	ev      SignedEvent
	id      [32]byte
	details []byte // canonical, scrubbed details to keep, or nil
	err     error
	prev    Points // the subject's score before
	score   Points // and after
	effect  Points
}

// submit hands j to the writer and waits for it.
func (n *Node) submit(ctx context.Context, j *job) error {
	j.done = make(chan struct{})
	n.subMu.RLock()
	if n.closed.Load() {
		n.subMu.RUnlock()
		return ErrClosed
	}
	select {
	case n.jobs <- j:
	case <-ctx.Done():
		n.subMu.RUnlock()
		return ctx.Err()
	}
	n.subMu.RUnlock()
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *Node) writer() {
	defer close(n.done)
	tick := time.NewTicker(maintenanceEvery)
	defer tick.Stop()
	var held *job
	for {
		var first *job
		if held != nil {
			first, held = held, nil
		} else {
			select {
			case first = <-n.jobs:
			case <-tick.C:
				n.maintain()
				continue
			case <-n.stop:
				// Submitters are shut out (n.closed under subMu): drain.
				for {
					select {
					case j := <-n.jobs:
						n.runBatch([]*job{j})
					default:
						return
					}
				}
			}
		}
		batch := []*job{first}
		if !first.atomic {
			count := len(first.items)
		collect:
			for count < maxBatchEvents {
				select {
				case j := <-n.jobs:
					if j.atomic {
						held = j
						break collect
					}
					batch = append(batch, j)
					count += len(j.items)
				default:
					break collect
				}
			}
		}
		n.runBatch(batch)
	}
}

// runBatch applies, commits and acknowledges a batch of jobs.
func (n *Node) runBatch(batch []*job) {
	now := n.now().UnixMicro()
	var ops []dbOp
	deps := map[string]int64{}
	n.mu.Lock()
	tx, err := n.db.Begin(false)
	if err != nil {
		n.mu.Unlock()
		n.failBatch(batch, fmt.Errorf("reputation: read database: %w", err))
		return
	}
	var atomicErr error
	for _, j := range batch {
		for _, it := range j.items {
			it.err = n.applyItem(tx, it, now, &ops, deps)
			if j.atomic && it.err != nil && !errors.Is(it.err, ErrDuplicate) && atomicErr == nil {
				atomicErr = it.err
			}
		}
	}
	_ = tx.Rollback()
	if atomicErr == nil {
		n.refoldDependents(deps)
		n.enforceEventBudget(&ops)
	}
	n.mu.Unlock()
	if atomicErr != nil {
		// Nothing was written; put memory back as the disk has it.
		n.reload()
		for _, j := range batch {
			j.err = atomicErr
			close(j.done)
		}
		return
	}
	if err := commit(n.db, ops); err != nil {
		n.log.Error("reputation: cannot write events; reloading from disk", "err", err)
		n.reload()
		n.failBatch(batch, fmt.Errorf("reputation: write: %w", err))
		return
	}
	for _, j := range batch {
		var fresh []SignedEvent
		for _, it := range j.items {
			if it.err == nil {
				ev := it.ev
				ev.Details = it.details
				fresh = append(fresh, ev)
			}
		}
		n.stats.applied.Add(uint64(len(fresh)))
		close(j.done)
		if len(fresh) > 0 {
			n.publish(Batch{Events: fresh, Source: j.source})
		}
	}
}

func (n *Node) failBatch(batch []*job, err error) {
	for _, j := range batch {
		j.err = err
		for _, it := range j.items {
			if it.err == nil {
				it.err = err
			}
		}
		close(j.done)
	}
}

// reload replaces the model by what the disk holds.
func (n *Node) reload() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.load(context.Background()); err != nil {
		n.log.Error("reputation: cannot reload from disk", "err", err)
	}
}

// applyItem applies one verified event to the model and appends its
// writes to ops. The caller holds n.mu.
func (n *Node) applyItem(tx *bolt.Tx, it *item, now int64, ops *[]dbOp, deps map[string]int64) error {
	b := &it.ev.Body
	at := b.Time.UnixMicro()
	if at > now+n.cfg.MaxClockSkew.Microseconds() {
		return fmt.Errorf("%w: %s is ahead of this node's clock by more than %s", ErrFuture,
			b.Time.UTC().Format(time.RFC3339), n.cfg.MaxClockSkew)
	}
	win := at / n.p.window
	if at < now-n.cfg.MaxEventAge.Microseconds() {
		return fmt.Errorf("%w: %s is older than %s", ErrStale, b.Time.UTC().Format(time.RFC3339), n.cfg.MaxEventAge)
	}
	key := evKey{at: at, id: it.id}
	m := n.members[b.Subject]
	if hasWindowEntry(tx, win, it.id) {
		n.fillScores(it, m)
		return fmt.Errorf("%w: %x…", ErrDuplicate, it.id[:8])
	}
	if m != nil && !m.cp.Through.less(key) {
		return fmt.Errorf("%w: older than the compacted history of %q", ErrStale, truncate(b.Subject, 64))
	}
	if m != nil {
		if _, found := slices.BinarySearchFunc(m.events, key, cmpRecKey); found {
			n.fillScores(it, m)
			return fmt.Errorf("%w: %x…", ErrDuplicate, it.id[:8])
		}
	}
	if m == nil || m.cold {
		if err := n.makeRoom(ops); err != nil {
			return err
		}
		if m == nil {
			m = &member{id: n.cloneID(b.Subject), cp: neutralState()}
			m.st = m.cp.clone()
			m.score.Store(int64(NeutralScore))
			n.members[m.id] = m
			n.indexPut(m)
		} else {
			m.cold = false
			n.nCold--
		}
		n.hot.pushBack(m)
	}
	refold := false
	if err := n.checkCell(m, b.Reporter, win, key, ops, &refold); err != nil {
		n.fillScores(it, m)
		return err
	}
	r := n.makeRec(&it.ev, it.id)
	n.seq++
	r.seq = n.seq
	pos, _ := slices.BinarySearchFunc(m.events, key, cmpRecKey)
	m.events = slices.Insert(m.events, pos, r)
	n.nEvents++
	it.prev = m.st.Score
	if !refold && pos == len(m.events)-1 {
		m.st.step(m.id, &m.events[pos], &n.p)
	} else {
		n.refold(m)
	}
	m.score.Store(int64(m.st.Score))
	it.score, it.effect = m.st.Score, m.events[pos].effect
	m.touch = now
	n.hot.remove(m)
	n.hot.pushBack(m)

	ev := it.ev
	ev.Details = it.details
	*ops = append(*ops,
		dbOp{bucket: bucketEvents, key: seqKey(r.seq), value: ev.AppendJSON(make([]byte, 0, 512))},
		dbOp{bucket: bucketWindow, key: wxKey(win, it.id), value: seqKey(r.seq)})
	n.digestFlip(win, it.id, 1)
	// A report about m at win changes m's standing in every later window:
	// agents m reported on after win must fold again.
	if mw, ok := n.maxWin[m.id]; ok && mw > win {
		if cur, ok := deps[m.id]; !ok || win < cur {
			deps[m.id] = win
		}
	}
	n.noteReport(&r)
	if len(m.events) > n.cfg.MaxEventsPerAgent {
		n.compact(m, len(m.events)/2, ops)
	}
	return nil
}

func cmpRecKey(e rec, k evKey) int { return e.key.cmp(k) }

func (n *Node) fillScores(it *item, m *member) {
	if m != nil {
		it.prev, it.score = m.st.Score, m.st.Score
	} else {
		it.prev, it.score = NeutralScore, NeutralScore
	}
}

func (n *Node) cloneID(s string) string {
	if v, ok := n.interned[s]; ok {
		return v
	}
	return string([]byte(s))
}

// checkCell enforces MaxEventsPerCell: one reporter keeps at most that
// many events about one subject in one window, the earliest by key, so
// every node keeps the same ones whatever the arrival order. A later event
// is refused; an earlier one displaces the latest kept.
func (n *Node) checkCell(m *member, reporter string, win int64, key evKey, ops *[]dbOp, refold *bool) error {
	count, last := 0, -1
	if m.cp.Win == win {
		for _, c := range m.cp.Cells {
			if c.Reporter == reporter {
				count = int(c.N)
			}
		}
	}
	start, _ := slices.BinarySearchFunc(m.events, win*n.p.window, func(e rec, t int64) int {
		if e.key.at < t {
			return -1
		}
		return 1
	})
	end := (win + 1) * n.p.window
	for i := start; i < len(m.events) && m.events[i].key.at < end; i++ {
		if m.events[i].reporter == reporter {
			count++
			last = i
		}
	}
	if count < n.cfg.MaxEventsPerCell {
		return nil
	}
	if last < 0 || !key.less(m.events[last].key) {
		return fmt.Errorf("%w: %q already has %d events about %q in this window", ErrCellFull,
			truncate(reporter, 64), count, truncate(m.id, 64))
	}
	gone := m.events[last]
	m.events = slices.Delete(m.events, last, last+1)
	n.nEvents--
	*ops = append(*ops,
		dbOp{bucket: bucketEvents, key: seqKey(gone.seq)},
		dbOp{bucket: bucketWindow, key: wxKey(win, gone.key.id)})
	n.digestFlip(win, gone.key.id, -1)
	n.stats.displaced.Add(1)
	*refold = true
	return nil
}

// refoldDependents folds again every hot agent that has a report, in a
// window after the one given, from a reporter whose standing changed.
// The caller holds n.mu.
func (n *Node) refoldDependents(deps map[string]int64) {
	if len(deps) == 0 {
		return
	}
	for m := n.hot.front(); m != nil && m != &n.hot.root; m = m.next {
		for i := range m.events {
			e := &m.events[i]
			if w, ok := deps[e.reporter]; ok && e.reporter != m.id && e.key.at/n.p.window > w {
				n.refold(m)
				m.score.Store(int64(m.st.Score))
				n.stats.refolds.Add(1)
				break
			}
		}
	}
}

// makeRoom evicts the least recently updated hot agent when the hot set is
// full. An agent with any negative history goes cold: its events are
// compacted into its checkpoint, kept on disk, and its score stays in
// memory, so eviction never launders a penalty. Other agents are dropped
// (they stood at 5.00 or above and come back at 5.00). The caller holds
// n.mu.
func (n *Node) makeRoom(ops *[]dbOp) error {
	if n.hot.n < n.cfg.MaxAgents {
		return nil
	}
	const tries = 64
	i := 0
	for m := n.hot.front(); m != nil && m != &n.hot.root && i < tries; m, i = m.next, i+1 {
		negative := m.st.Negative > 0 || m.st.Score < NeutralScore || m.st.Raw < NeutralScore
		if negative && n.nCold >= n.cfg.MaxColdAgents {
			continue
		}
		n.compact(m, len(m.events), ops)
		n.hot.remove(m)
		n.stats.evicted.Add(1)
		if negative {
			m.cold = true
			n.nCold++
			cp, err := n.encodeCheckpoint(m.id, &m.cp, true)
			if err != nil {
				return err
			}
			*ops = append(*ops, dbOp{bucket: bucketAgents, key: []byte(m.id), value: cp})
			return nil
		}
		delete(n.members, m.id)
		n.indexDel(m.id)
		*ops = append(*ops, dbOp{bucket: bucketAgents, key: []byte(m.id)})
		return nil
	}
	return fmt.Errorf("%w: %d agents in memory and %d evicted with a penalty", ErrStoreFull, n.hot.n, n.nCold)
}

// compact folds m's first k events into its checkpoint and signs it. The
// events' ids stay in bucket wx while their window is inside MaxEventAge.
// The caller holds n.mu.
func (n *Node) compact(m *member, k int, ops *[]dbOp) {
	if k <= 0 {
		return
	}
	cp := m.cp.clone()
	horizon := n.horizonWindow()
	for i := 0; i < k; i++ {
		e := m.events[i]
		cp.step(m.id, &e, &n.p)
		win := e.key.at / n.p.window
		*ops = append(*ops, dbOp{bucket: bucketEvents, key: seqKey(e.seq)})
		if win >= horizon {
			*ops = append(*ops, dbOp{bucket: bucketWindow, key: wxKey(win, e.key.id), value: wxCompacted})
		} else {
			*ops = append(*ops, dbOp{bucket: bucketWindow, key: wxKey(win, e.key.id)})
		}
	}
	m.cp = cp
	m.events = slices.Clone(m.events[k:])
	n.nEvents -= k
	n.stats.compacted.Add(uint64(k))
	rec, err := n.encodeCheckpoint(m.id, &cp, m.cold)
	if err != nil {
		n.log.Error("reputation: cannot sign a checkpoint", "agent_id", m.id, "err", err)
		return
	}
	*ops = append(*ops, dbOp{bucket: bucketAgents, key: []byte(m.id), value: rec})
}

// enforceEventBudget compacts the agents with the most events while the
// node holds more than MaxEvents. The caller holds n.mu.
func (n *Node) enforceEventBudget(ops *[]dbOp) {
	for n.nEvents > n.cfg.MaxEvents {
		var big *member
		for m := n.hot.front(); m != nil && m != &n.hot.root; m = m.next {
			if big == nil || len(m.events) > len(big.events) {
				big = m
			}
		}
		if big == nil || len(big.events) == 0 {
			return
		}
		n.compact(big, max(1, len(big.events)/2), ops)
	}
}

// maintain compacts events that aged out of MaxEventAge, evicts agents over
// MaxAgents and forgets window entries older than the horizon.
func (n *Node) maintain() {
	var ops []dbOp
	n.mu.Lock()
	horizon := n.horizonWindow()
	for m := n.hot.front(); m != nil && m != &n.hot.root; m = m.next {
		k := 0
		for k < len(m.events) && m.events[k].key.at/n.p.window < horizon {
			k++
		}
		n.compact(m, k, &ops)
	}
	for n.hot.n > n.cfg.MaxAgents {
		if err := n.makeRoom(&ops); err != nil {
			break
		}
	}
	n.enforceEventBudget(&ops)
	for w := range n.digest {
		if w < horizon {
			delete(n.digest, w)
		}
	}
	n.mu.Unlock()
	err := n.db.Update(func(tx *bolt.Tx) error {
		for _, op := range ops {
			b := tx.Bucket(op.bucket)
			var err error
			if op.value == nil {
				err = b.Delete(op.key)
			} else {
				err = b.Put(op.key, op.value)
			}
			if err != nil {
				return err
			}
		}
		c := tx.Bucket(bucketWindow).Cursor()
		for k, _ := c.First(); k != nil && int64(beUint64(k)) < horizon; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		n.log.Error("reputation: maintenance write failed; reloading from disk", "err", err)
		n.reload()
	}
}

func beUint64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0])<<56 | uint64(b[1])<<48 | uint64(b[2])<<40 | uint64(b[3])<<32 |
		uint64(b[4])<<24 | uint64(b[5])<<16 | uint64(b[6])<<8 | uint64(b[7])
}
