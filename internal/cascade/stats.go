package cascade

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"time"
)

// Rate returns part/whole, or NaN when whole is 0 (a rate of nothing is
// not 0 %).
func Rate(part, whole int) float64 {
	if whole == 0 {
		return math.NaN()
	}
	return float64(part) / float64(whole)
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of xs by linear
// interpolation between the closest ranks, or NaN for no values. xs is
// not modified.
func Quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	q = min(1, max(0, q))
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// Mean returns the arithmetic mean of xs, or NaN for no values.
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	sum := 0.0
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// Summary sums up a sample: its size and its mean, median, 95th
// percentile and maximum. Values are NaN (null in JSON) for an empty
// sample.
type Summary struct {
	N    int    `json:"n"`
	Mean Float  `json:"mean"`
	P50  Float  `json:"p50"`
	P95  Float  `json:"p95"`
	Max  Float  `json:"max"`
	Unit string `json:"unit"`
}

// Summarise sums up xs, in unit.
func Summarise(xs []float64, unit string) Summary {
	return Summary{N: len(xs), Mean: Float(Mean(xs)), P50: Float(Quantile(xs, 0.5)), P95: Float(Quantile(xs, 0.95)),
		Max: Float(Quantile(xs, 1)), Unit: unit}
}

// millis converts durations to milliseconds.
func millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// Float is a float64 that is null in JSON when it is NaN or infinite
// (JSON has no such numbers).
type Float float64

// MarshalJSON writes the number, or null.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, math.Round(v*1e6)/1e6, 'f', -1, 64), nil
}

// UnmarshalJSON reads a number or null (NaN).
func (f *Float) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*f = Float(math.NaN())
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// nan is a missing value.
var nan = Float(math.NaN())

func isNaN(f Float) bool { return math.IsNaN(float64(f)) }
