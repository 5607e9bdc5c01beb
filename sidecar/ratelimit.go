package sidecar

import (
	"math"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// maxRateLimitKeys bounds the callers tracked by the rate limiter. Beyond
// it the least recently seen caller's bucket is dropped (it restarts full,
// which lets an attacker who rotates through more than this many identities
// get extra requests through, never fewer for a real caller).
const maxRateLimitKeys = 65536

// rateLimiter is a token bucket per caller.
type rateLimiter struct {
	limit   rate.Limit
	burst   int
	buckets *lru.Cache[string, *rate.Limiter]
}

// newRateLimiter allows perMinute requests per minute per caller with the
// given burst (perMinute when 0). It returns nil (no limit) when perMinute
// is 0.
func newRateLimiter(perMinute, burst int) *rateLimiter {
	if perMinute <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = perMinute
	}
	buckets, _ := lru.New[string, *rate.Limiter](maxRateLimitKeys) // the size is positive
	return &rateLimiter{limit: rate.Limit(float64(perMinute) / 60), burst: burst, buckets: buckets}
}

// Allow takes a token for key at now; when none is left it returns false and
// how many whole seconds to wait before retrying (at least 1).
func (r *rateLimiter) Allow(key string, now time.Time) (ok bool, retryAfter int) {
	l, found := r.buckets.Get(key)
	if !found {
		fresh := rate.NewLimiter(r.limit, r.burst)
		if prev, had, _ := r.buckets.PeekOrAdd(key, fresh); had {
			l = prev
		} else {
			l = fresh
		}
	}
	res := l.ReserveN(now, 1)
	if !res.OK() {
		return false, 60
	}
	delay := res.DelayFrom(now)
	if delay == 0 {
		return true, 0
	}
	res.CancelAt(now)
	return false, max(1, int(math.Ceil(delay.Seconds())))
}
