package reputation

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// The database holds four buckets:
//
//	ev  sequence number (8 bytes, big endian, in the order events were
//	    stored) → the signed event's JSON (details included when they
//	    were scrubbed and kept); appending keeps a commit's writes on a few
//	    pages
//	wx  window (8 bytes, big endian) + event id → the event's sequence
//	    number while it is retained, the single byte 1 once it is compacted
//	    (kept until the window leaves MaxEventAge, so replays stay
//	    duplicates and digests stay comparable)
//	ag  agent id → its signed checkpoint (compacted history) and whether it
//	    is cold (evicted from memory with a penalty)
//	meta
//
// Every acknowledged event was committed (fsynced) first.
var (
	bucketEvents = []byte("ev")
	bucketWindow = []byte("wx")
	bucketAgents = []byte("ag")
	bucketMeta   = []byte("meta")
)

// dbFormat is written in meta; another format is refused, not misread.
const dbFormat = "iatp-reputation/1"

// wxCompacted is the wx value of a compacted event.
var wxCompacted = []byte{1}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

// cpContext prefixes a checkpoint's signed bytes.
const cpContext = "iatp-reputation-checkpoint/1\n"

func wxKey(win int64, id [32]byte) []byte {
	k := make([]byte, 40)
	binary.BigEndian.PutUint64(k, uint64(win))
	copy(k[8:], id[:])
	return k
}

// cpPayload is the signed content of a checkpoint.
type cpPayload struct {
	Subject     string `json:"subject"`
	Signer      string `json:"signer"`
	ThroughTime int64  `json:"through_time_us"`
	ThroughID   string `json:"through_id"`
	Score       Points `json:"score"`
	Raw         Points `json:"raw"`
	Total       int64  `json:"total_events"`
	Positive    int64  `json:"positive_events"`
	Negative    int64  `json:"negative_events"`
	Last        int64  `json:"last_us"`
	Win         int64  `json:"window"`
	WinRaw      Points `json:"window_start_raw"`
	Cells       []cell `json:"cells"`
}

// cpRecord is what bucket ag holds.
type cpRecord struct {
	Payload   json.RawMessage `json:"payload"`
	Signature []byte          `json:"signature"`
	Cold      bool            `json:"cold,omitempty"`
}

// encodeCheckpoint signs st as subject's checkpoint.
func (n *Node) encodeCheckpoint(subject string, st *foldState, cold bool) ([]byte, error) {
	p := cpPayload{
		Subject: subject, Signer: n.id, ThroughTime: st.Through.at, ThroughID: hex.EncodeToString(st.Through.id[:]),
		Score: st.Score, Raw: st.Raw, Total: st.Total, Positive: st.Positive, Negative: st.Negative,
		Last: st.Last, Win: st.Win, WinRaw: st.WinRaw, Cells: st.Cells,
	}
	if p.Cells == nil {
		p.Cells = []cell{}
	}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	sig, err := n.key.Sign(nil, append([]byte(cpContext), payload...), cryptoNoHash{})
	if err != nil {
		return nil, err
	}
	return json.Marshal(cpRecord{Payload: payload, Signature: sig, Cold: cold})
}

// decodeCheckpoint verifies a checkpoint record under its signer's key.
func (n *Node) decodeCheckpoint(subject string, data []byte) (foldState, bool, error) {
	var r cpRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return foldState{}, false, err
	}
	var p cpPayload
	if err := json.Unmarshal(r.Payload, &p); err != nil {
		return foldState{}, false, err
	}
	if p.Subject != subject {
		return foldState{}, false, fmt.Errorf("checkpoint for %q stored under %q", truncate(p.Subject, 64), truncate(subject, 64))
	}
	ok := false
	for _, pub := range n.reporterKeys(p.Signer) {
		if ed25519.Verify(pub, append([]byte(cpContext), r.Payload...), r.Signature) {
			ok = true
			break
		}
	}
	if !ok {
		hint := ""
		if p.Signer == n.id {
			hint = " (the node's key changed? list the old public key under the node's own id in Reporters)"
		}
		return foldState{}, false, fmt.Errorf("%w: checkpoint of %q signed by %q%s", ErrBadSignature, truncate(subject, 64), truncate(p.Signer, 64), hint)
	}
	id, err := hex.DecodeString(p.ThroughID)
	if err != nil || len(id) != 32 {
		return foldState{}, false, errors.New("checkpoint through_id is not 32 hex bytes")
	}
	st := foldState{Score: p.Score, Raw: p.Raw, Total: p.Total, Positive: p.Positive, Negative: p.Negative,
		Last: p.Last, Win: p.Win, WinRaw: p.WinRaw, Cells: p.Cells}
	st.Through.at = p.ThroughTime
	copy(st.Through.id[:], id)
	return st, r.Cold, nil
}

// makeRec turns a verified event into what the node keeps in memory.
// The caller holds n.mu.
func (n *Node) makeRec(ev *SignedEvent, id [32]byte) rec {
	b := &ev.Body
	r := rec{key: evKey{at: b.Time.UnixMicro(), id: id}, reporter: n.intern(b.Reporter), delta: b.rawDelta()}
	switch {
	case b.Type == TypeSummary:
		r.pos = b.Counts.Success
		r.neg = b.Counts.Failure + b.Counts.Timeout + b.Counts.Error
	case r.delta > 0:
		r.pos = 1
	case r.delta < 0:
		r.neg = 1
	}
	return r
}

// load reads the database into memory and folds every agent. It replaces
// whatever the node held (it is also how a failed write is undone).
func (n *Node) load(ctx context.Context) error {
	n.members = make(map[string]*member)
	n.hot.init()
	n.nCold, n.nEvents = 0, 0
	n.maxWin = make(map[string]int64)
	n.interned = make(map[string]string)
	n.digest = make(map[int64]*[digestPrefixes]bucket)
	for i := range n.idx {
		n.idx[i].mu.Lock()
		n.idx[i].m = make(map[string]*member)
		n.idx[i].mu.Unlock()
	}
	err := n.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEvents, bucketWindow, bucketAgents, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get([]byte("format")); {
		case v == nil:
			if err := meta.Put([]byte("format"), []byte(dbFormat)); err != nil {
				return err
			}
		case string(v) != dbFormat:
			return fmt.Errorf("database format %q, this version reads %q", v, dbFormat)
		}
		if v := meta.Get([]byte("instance")); v != nil {
			n.instance = string(v)
			return nil
		}
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		n.instance = hex.EncodeToString(b[:])
		return meta.Put([]byte("instance"), []byte(n.instance))
	})
	if err != nil {
		return fmt.Errorf("reputation: database: %w", err)
	}
	horizon := n.horizonWindow()
	err = n.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketAgents).ForEach(func(k, v []byte) error {
			subject := string(k)
			st, cold, err := n.decodeCheckpoint(subject, v)
			if err != nil {
				return fmt.Errorf("checkpoint of %q: %w", truncate(subject, 64), err)
			}
			n.members[subject] = &member{id: subject, cp: st, st: st.clone(), cold: cold}
			return nil
		})
		if err != nil {
			return err
		}
		var count int
		if k, _ := tx.Bucket(bucketEvents).Cursor().Last(); len(k) == 8 {
			n.seq = binary.BigEndian.Uint64(k)
		} else {
			n.seq = 0
		}
		err = tx.Bucket(bucketEvents).ForEach(func(k, v []byte) error {
			if count++; count%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			var ev SignedEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				return fmt.Errorf("event %x: %w", k, err)
			}
			b, err := hex.DecodeString(ev.ID)
			if err != nil || len(b) != 32 || len(k) != 8 {
				return fmt.Errorf("event %x: bad id or key", k)
			}
			id := [32]byte(b)
			m := n.members[ev.Body.Subject]
			if m == nil {
				m = &member{id: strings.Clone(ev.Body.Subject), cp: neutralState()}
				m.st = m.cp.clone()
				n.members[m.id] = m
			}
			r := n.makeRec(&ev, id)
			r.seq = binary.BigEndian.Uint64(k)
			if !m.cp.Through.less(r.key) {
				return nil // compacted already
			}
			m.events = append(m.events, r)
			return nil
		})
		if err != nil {
			return err
		}
		c := tx.Bucket(bucketWindow).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			win := int64(binary.BigEndian.Uint64(k))
			if win < horizon {
				continue
			}
			var id [32]byte
			copy(id[:], k[8:])
			n.digestFlip(win, id, 1)
			_ = v
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("reputation: load: %w", err)
	}
	order := make([]*member, 0, len(n.members))
	for _, m := range n.members {
		slices.SortFunc(m.events, func(a, b rec) int { return a.key.cmp(b.key) })
		if m.cold && len(m.events) > 0 {
			m.cold = false
		}
		n.nEvents += len(m.events)
		for i := range m.events {
			n.noteReport(&m.events[i])
		}
		order = append(order, m)
	}
	// Raw scores depend on no weight: fold once for them, then again so
	// that every weight reads a final raw score.
	for pass := 0; pass < 2; pass++ {
		for _, m := range order {
			n.refold(m)
		}
	}
	slices.SortFunc(order, func(a, b *member) int { return int(min(max(a.st.Last-b.st.Last, -1), 1)) })
	for _, m := range order {
		m.score.Store(int64(m.st.Score))
		if m.cold {
			n.nCold++
		} else {
			m.touch = m.st.Last
			n.hot.pushBack(m)
		}
		n.indexPut(m)
	}
	return nil
}

// noteReport remembers the latest window each reporter reported in.
func (n *Node) noteReport(r *rec) {
	w := r.key.at / n.p.window
	if cur, ok := n.maxWin[r.reporter]; !ok || w > cur {
		n.maxWin[r.reporter] = w
	}
}

// refold recomputes m's state from its checkpoint. The caller holds n.mu.
func (n *Node) refold(m *member) {
	st := m.cp.clone()
	for i := range m.events {
		st.step(m.id, &m.events[i], &n.p)
	}
	m.st = st
}

// horizonWindow is the oldest window whose events are still accepted.
func (n *Node) horizonWindow() int64 {
	return (n.now().UnixMicro() - n.cfg.MaxEventAge.Microseconds()) / n.p.window
}

// readEvents returns the stored events with the given sequence numbers
// (missing ones are skipped).
func (n *Node) readEvents(seqs []uint64) ([]SignedEvent, error) {
	var out []SignedEvent
	err := n.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		for _, seq := range seqs {
			v := b.Get(seqKey(seq))
			if v == nil {
				continue
			}
			var ev SignedEvent
			if err := json.Unmarshal(v, &ev); err != nil {
				return err
			}
			out = append(out, ev)
		}
		return nil
	})
	return out, err
}

// readEventsByID returns the retained events with the given ids, looking
// each up in the windows inside MaxEventAge, newest first.
func (n *Node) readEventsByID(ids [][32]byte) ([]SignedEvent, error) {
	n.mu.RLock()
	wins := make([]int64, 0, len(n.digest))
	for w := range n.digest {
		wins = append(wins, w)
	}
	n.mu.RUnlock()
	slices.SortFunc(wins, func(a, b int64) int { return int(min(max(b-a, -1), 1)) })
	var seqs []uint64
	err := n.db.View(func(tx *bolt.Tx) error {
		wx := tx.Bucket(bucketWindow)
		for _, id := range ids {
			for _, w := range wins {
				if v := wx.Get(wxKey(w, id)); v != nil {
					if len(v) == 8 {
						seqs = append(seqs, binary.BigEndian.Uint64(v))
					}
					break
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return n.readEvents(seqs)
}

// dbOp is one write of a batch.
type dbOp struct {
	bucket []byte
	key    []byte
	value  []byte // nil deletes
}

func commit(db *bolt.DB, ops []dbOp) error {
	if len(ops) == 0 {
		return nil
	}
	return db.Update(func(tx *bolt.Tx) error {
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
		return nil
	})
}

// hasWindowEntry reports whether the event is stored or was compacted.
func hasWindowEntry(tx *bolt.Tx, win int64, id [32]byte) bool {
	return tx.Bucket(bucketWindow).Get(wxKey(win, id)) != nil
}
