package identity

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sync"
	"time"
)

// DefaultNonceCacheSize is the replay cache capacity when none is
// configured: with the default 60 s skew a nonce lives about a minute, so
// this holds a sustained ~1,600 signed requests per second.
const DefaultNonceCacheSize = 100_000

// nonceKey identifies a (keyid, nonce) pair in 16 bytes whatever their
// length: the first half of SHA-256 over the length-prefixed key id and the
// nonce.
type nonceKey [16]byte

type nonceEntry struct {
	expires int64 // unix nanoseconds
	key     nonceKey
}

// NonceCache remembers the nonces of accepted request signatures until
// their signature could no longer be accepted anyway, and refuses to see
// one twice. It is bounded in time (an entry is dropped once its expiry has
// passed) and in size (at most its capacity of live entries). When it is
// full of live entries it refuses new ones (ErrNonceCacheFull) instead of
// forgetting a nonce that could still be replayed: fail closed.
//
// Memory is about 70 bytes per entry. A NonceCache is safe for concurrent
// use.
type NonceCache struct {
	mu       sync.Mutex
	capacity int
	seen     map[nonceKey]int64
	heap     []nonceEntry // min-heap on expires
	peak     int          // most entries since seen was last rebuilt
}

// NewNonceCache returns a cache holding at most capacity live nonces
// (DefaultNonceCacheSize if capacity <= 0).
func NewNonceCache(capacity int) *NonceCache {
	if capacity <= 0 {
		capacity = DefaultNonceCacheSize
	}
	return &NonceCache{capacity: capacity, seen: make(map[nonceKey]int64)}
}

// Capacity returns the maximum number of live entries.
func (c *NonceCache) Capacity() int { return c.capacity }

// Len returns the number of entries held (expired ones are dropped lazily,
// on the next Use).
func (c *NonceCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

// Use records nonce for keyID until expires, at time now. It returns
// ErrReplayedNonce when the pair is already held and not expired, and
// ErrNonceCacheFull when the cache holds capacity live entries. A nil or
// zero NonceCache refuses everything.
func (c *NonceCache) Use(keyID, nonce string, expires, now time.Time) error {
	if c == nil || c.seen == nil {
		return fmt.Errorf("%w: no replay cache", ErrNonceCacheFull)
	}
	var buf [512]byte
	b := binary.AppendUvarint(buf[:0], uint64(len(keyID))) // length-prefixed: no two pairs share bytes
	b = append(append(b, keyID...), nonce...)
	sum := sha256.Sum256(b)
	var k nonceKey
	copy(k[:], sum[:])

	exp, nowNs := expires.UnixNano(), now.UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.evictExpired(nowNs)
	if e, ok := c.seen[k]; ok && e >= nowNs {
		return ErrReplayedNonce
	}
	if len(c.seen) >= c.capacity {
		return fmt.Errorf("%w: %d live nonces", ErrNonceCacheFull, len(c.seen))
	}
	c.seen[k] = exp
	c.push(nonceEntry{expires: exp, key: k})
	c.peak = max(c.peak, len(c.seen))
	return nil
}

// evictExpired drops every entry whose expiry is before now.
func (c *NonceCache) evictExpired(now int64) {
	for len(c.heap) > 0 && c.heap[0].expires < now {
		e := c.pop()
		if c.seen[e.key] == e.expires {
			delete(c.seen, e.key)
		}
	}
	// Go maps do not shrink: rebuild after a burst has drained.
	if c.peak > 4096 && len(c.seen) < c.peak/8 {
		m := make(map[nonceKey]int64, len(c.seen))
		for k, v := range c.seen {
			m[k] = v
		}
		c.seen, c.peak = m, len(m)
	}
}

func (c *NonceCache) push(e nonceEntry) {
	c.heap = append(c.heap, e)
	i := len(c.heap) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if c.heap[parent].expires <= c.heap[i].expires {
			break
		}
		c.heap[parent], c.heap[i] = c.heap[i], c.heap[parent]
		i = parent
	}
}

func (c *NonceCache) pop() nonceEntry {
	top := c.heap[0]
	last := len(c.heap) - 1
	c.heap[0] = c.heap[last]
	c.heap = c.heap[:last]
	i := 0
	for {
		l, r, small := 2*i+1, 2*i+2, i
		if l < last && c.heap[l].expires < c.heap[small].expires {
			small = l
		}
		if r < last && c.heap[r].expires < c.heap[small].expires {
			small = r
		}
		if small == i {
			break
		}
		c.heap[i], c.heap[small] = c.heap[small], c.heap[i]
		i = small
	}
	// Give memory back after a burst.
	if cap(c.heap) > 1024 && len(c.heap) < cap(c.heap)/4 {
		c.heap = append([]nonceEntry(nil), c.heap...)
	}
	return top
}
