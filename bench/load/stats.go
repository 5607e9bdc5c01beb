package main

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the nearest-rank p-th percentile (0 < p ≤ 100) of
// sorted, the smallest value such that at least p % of the values are less
// than or equal to it. It returns 0 for an empty slice; p ≤ 0 gives the
// minimum and p ≥ 100 the maximum.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// Latencies summarises one attack's successful round trips.
type Latencies struct {
	P50, P90, P99, Max time.Duration
}

// Summarize sorts lat in place and returns its percentiles.
func Summarize(lat []time.Duration) Latencies {
	slices.Sort(lat)
	return Latencies{
		P50: Percentile(lat, 50),
		P90: Percentile(lat, 90),
		P99: Percentile(lat, 99),
		Max: Percentile(lat, 100),
	}
}

// Spread is one figure over several runs: its median and its range.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// NewSpread returns the median, minimum and maximum of vals; NaN values
// (a figure a run could not produce) are left out. The median of an even
// count is the mean of the two middle values.
func NewSpread(vals []float64) Spread {
	v := make([]float64, 0, len(vals))
	for _, x := range vals {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Spread{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	slices.Sort(v)
	n := len(v)
	med := v[n/2]
	if n%2 == 0 {
		med = (v[n/2-1] + v[n/2]) / 2
	}
	return Spread{Median: med, Min: v[0], Max: v[n-1], N: n}
}

// Valid reports whether the spread holds at least one value.
func (s Spread) Valid() bool { return s.N > 0 }

// Added returns the latency a proxy adds over the direct backend, measured
// at the same rate with the same body in the same run: proxy − direct, in
// microseconds. It may be negative when the machine's noise exceeds the
// proxy's cost; that is reported as it is, not clamped.
func Added(proxy, direct time.Duration) float64 {
	return micros(proxy - direct)
}

// Ratio returns a / b, or NaN when b is zero.
func Ratio(a, b float64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return a / b
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
