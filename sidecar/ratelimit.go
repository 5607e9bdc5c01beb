package sidecar

import (
	"math"
	"time"

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
	buckets *lru[string, *rate.Limiter]
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
	return &rateLimiter{
		limit:   rate.Limit(float64(perMinute) / 60),
		burst:   burst,
		buckets: newLRU[string, *rate.Limiter](maxRateLimitKeys),
	}
}

// allow takes a token for key at now; when none is left it returns false and
// how many whole seconds to wait before retrying (at least 1).
func (r *rateLimiter) allow(key string, now time.Time) (ok bool, retryAfter int) {
	l := r.buckets.getOrAdd(key, func() *rate.Limiter { return rate.NewLimiter(r.limit, r.burst) })
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
