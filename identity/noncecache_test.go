package identity

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

func TestNonceCache(t *testing.T) {
	c := NewNonceCache(3)
	exp := t0.Add(time.Minute)
	rows := []struct {
		name         string
		keyID, nonce string
		expires, now time.Time
		want         error
	}{
		{"first use", "a", "n1", exp, t0, nil},
		{"replay", "a", "n1", exp, t0.Add(time.Second), ErrReplayedNonce},
		{"same nonce, other key id", "b", "n1", exp, t0, nil},
		{"no confusion across the separator", "a\x00n", "1", exp, t0, nil},
		{"no confusion of key id and nonce (full, not replayed)", "a\x00", "n\x001", exp, t0, ErrNonceCacheFull},
		{"full of live entries", "a", "n2", exp, t0, ErrNonceCacheFull},
		{"replay at the last instant", "a", "n1", exp, exp, ErrReplayedNonce},
		{"room again once expired", "a", "n2", exp.Add(2 * time.Minute), exp.Add(time.Nanosecond), nil},
		{"expired entry forgotten", "a", "n1", exp.Add(2 * time.Minute), exp.Add(time.Second), nil},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			wantErr(t, c.Use(r.keyID, r.nonce, r.expires, r.now), r.want)
			if c.Len() > c.Capacity() {
				t.Fatalf("%d entries, capacity %d", c.Len(), c.Capacity())
			}
		})
	}
	var zero NonceCache
	if err := zero.Use("a", "n", exp, t0); !errors.Is(err, ErrNonceCacheFull) {
		t.Fatalf("zero cache accepted: %v", err)
	}
	var nilCache *NonceCache
	if err := nilCache.Use("a", "n", exp, t0); err == nil {
		t.Fatal("nil cache accepted")
	}
	if NewNonceCache(0).Capacity() != DefaultNonceCacheSize {
		t.Fatal("default capacity")
	}
}

// TestNonceCacheBoundUnderAbuse floods the cache with distinct nonces at
// random times and expiries: it never holds more than its capacity, never
// forgets a live nonce, and drains back once time moves on.
func TestNonceCacheBoundUnderAbuse(t *testing.T) {
	const capacity = 500
	c := NewNonceCache(capacity)
	rng := rand.New(rand.NewPCG(1, 2))
	live := map[string]time.Time{}
	now := t0
	full := 0
	for i := range 20000 {
		now = now.Add(time.Duration(rng.IntN(5)) * time.Millisecond)
		nonce := fmt.Sprint("n", i)
		exp := now.Add(time.Duration(rng.IntN(120_000)) * time.Millisecond)
		err := c.Use("k", nonce, exp, now)
		switch {
		case err == nil:
			live[nonce] = exp
		case errors.Is(err, ErrNonceCacheFull):
			full++
		default:
			t.Fatalf("use %d: %v", i, err)
		}
		if n := c.Len(); n > capacity {
			t.Fatalf("cache holds %d entries, capacity %d", n, capacity)
		}
		if i%1000 == 0 {
			// Every nonce still live must still be refused.
			for n, e := range live {
				if !e.Before(now) {
					if err := c.Use("k", n, e, now); !errors.Is(err, ErrReplayedNonce) {
						t.Fatalf("live nonce %s forgotten: %v", n, err)
					}
				} else {
					delete(live, n)
				}
			}
		}
	}
	if full == 0 {
		t.Fatal("the flood never filled the cache; the test proves nothing")
	}
	// Two minutes later every entry has expired and the next use drains it.
	if err := c.Use("k", "late", now.Add(3*time.Minute), now.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := c.Len(); n != 1 {
		t.Fatalf("%d entries after every expiry, want 1", n)
	}
	if len(c.heap) != 1 {
		t.Fatalf("heap holds %d entries", len(c.heap))
	}
}

// TestNonceCacheShrinks checks that memory held after a burst is given
// back once the burst has expired (Go maps never shrink on their own).
func TestNonceCacheShrinks(t *testing.T) {
	c := NewNonceCache(10_000)
	for i := range 6000 {
		if err := c.Use("k", fmt.Sprint(i), t0.Add(time.Minute), t0); err != nil {
			t.Fatal(err)
		}
	}
	if c.peak != 6000 || cap(c.heap) < 6000 {
		t.Fatalf("peak %d, heap cap %d", c.peak, cap(c.heap))
	}
	if err := c.Use("k", "after", t0.Add(3*time.Minute), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if c.Len() != 1 || c.peak != 1 || cap(c.heap) > 1024 {
		t.Fatalf("after the burst: len %d, peak %d, heap cap %d", c.Len(), c.peak, cap(c.heap))
	}
}
