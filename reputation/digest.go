package reputation

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Anti-entropy compares what two nodes hold without sending every id:
// events (retained or compacted, inside MaxEventAge) fall in buckets by
// window and by the first four bits of their id, and each bucket is summed
// up as a count and the XOR of its ids. Equal buckets are skipped; for the
// others the nodes exchange ids and then the events one of them lacks.

const digestPrefixes = 16

type bucket struct {
	n uint32
	x [32]byte
}

// digestFlip adds (d = 1) or removes (d = -1) an id. The caller holds
// n.mu.
func (n *Node) digestFlip(win int64, id [32]byte, d int) {
	w := n.digest[win]
	if w == nil {
		if d < 0 {
			return
		}
		w = new([digestPrefixes]bucket)
		n.digest[win] = w
	}
	b := &w[id[0]>>4]
	if d > 0 {
		b.n++
	} else if b.n > 0 {
		b.n--
	}
	for i := range b.x {
		b.x[i] ^= id[i]
	}
}

// DigestEntry sums up a window (Prefix −1) or one sixteenth of it.
type DigestEntry struct {
	Window int64  `json:"w"`
	Prefix int    `json:"p"`
	Count  uint32 `json:"n"`
	Hash   string `json:"h"`
}

// Digest returns one entry per window inside MaxEventAge that holds events.
func (n *Node) Digest() []DigestEntry {
	horizon := n.horizonWindow()
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]DigestEntry, 0, len(n.digest))
	for w, bs := range n.digest {
		if w < horizon {
			continue
		}
		var sum bucket
		for _, b := range bs {
			sum.n += b.n
			for i := range sum.x {
				sum.x[i] ^= b.x[i]
			}
		}
		if sum.n > 0 {
			out = append(out, DigestEntry{Window: w, Prefix: -1, Count: sum.n, Hash: hex.EncodeToString(sum.x[:])})
		}
	}
	return out
}

// DigestWindow returns the sixteen entries of one window.
func (n *Node) DigestWindow(win int64) []DigestEntry {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]DigestEntry, digestPrefixes)
	bs := n.digest[win]
	for p := range out {
		out[p] = DigestEntry{Window: win, Prefix: p}
		if bs != nil {
			out[p].Count = bs[p].n
			out[p].Hash = hex.EncodeToString(bs[p].x[:])
		} else {
			out[p].Hash = hex.EncodeToString(make([]byte, 32))
		}
	}
	return out
}

// IDs returns the hex ids this node holds (retained or compacted) in one
// window and prefix, at most limit of them, in id order after the id
// after ("" for the first page).
func (n *Node) IDs(win int64, prefix int, after string, limit int) ([]string, error) {
	if prefix < 0 || prefix >= digestPrefixes {
		return nil, fmt.Errorf("reputation: prefix %d is outside 0–15", prefix)
	}
	start := make([]byte, 40)
	binary.BigEndian.PutUint64(start, uint64(win))
	start[8] = byte(prefix << 4)
	if after != "" {
		b, err := hex.DecodeString(after)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("%w: after %q is not 64 hex digits", ErrInvalidEvent, truncate(after, 70))
		}
		copy(start[8:], b)
	}
	var out []string
	err := n.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketWindow).Cursor()
		for k, _ := c.Seek(start); k != nil && len(out) < limit; k, _ = c.Next() {
			if int64(binary.BigEndian.Uint64(k)) != win || int(k[8]>>4) != prefix {
				break
			}
			id := hex.EncodeToString(k[8:])
			if id == after {
				continue
			}
			out = append(out, id)
		}
		return nil
	})
	return out, err
}
