package main

import (
	"math"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one value", ms(7), 99, 7 * time.Millisecond},
		{"p0 is the minimum", ms(1, 2, 3), 0, time.Millisecond},
		{"p100 is the maximum", ms(1, 2, 3), 100, 3 * time.Millisecond},
		{"over 100 is the maximum", ms(1, 2, 3), 150, 3 * time.Millisecond},
		{"median of odd count", ms(1, 2, 3), 50, 2 * time.Millisecond},
		{"median of even count is the lower middle", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p50 of 1..100", hundred, 50, 50 * time.Millisecond},
		{"p90 of 1..100", hundred, 90, 90 * time.Millisecond},
		{"p99 of 1..100", hundred, 99, 99 * time.Millisecond},
		{"p99.9 of 1..100 rounds up", hundred, 99.9, 100 * time.Millisecond},
		{"p1 of 1..100", hundred, 1, time.Millisecond},
		{"p99 of ten takes the top", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
		{"p90 of ten", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestSummarizeSortsAndOrders(t *testing.T) {
	lat := []time.Duration{9, 1, 5, 3, 7, 2, 8, 4, 6, 10}
	s := Summarize(lat)
	if s.P50 != 5 || s.P90 != 9 || s.P99 != 10 || s.Max != 10 {
		t.Fatalf("Summarize = %+v, want p50 5, p90 9, p99 10, max 10", s)
	}
	if !(s.P50 <= s.P90 && s.P90 <= s.P99 && s.P99 <= s.Max) {
		t.Fatalf("percentiles out of order: %+v", s)
	}
}

func TestSpread(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name             string
		vals             []float64
		median, min, max float64
		n                int
	}{
		{"one", []float64{4}, 4, 4, 4, 1},
		{"odd", []float64{3, 1, 2}, 2, 1, 3, 3},
		{"even takes the mean of the middle", []float64{4, 1, 3, 2}, 2.5, 1, 4, 4},
		{"NaN left out", []float64{nan, 5, 1, nan}, 3, 1, 5, 2},
		{"negative", []float64{-3, 10, 2}, 2, -3, 10, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSpread(tt.vals)
			if s.Median != tt.median || s.Min != tt.min || s.Max != tt.max || s.N != tt.n {
				t.Errorf("NewSpread(%v) = %+v, want median %v min %v max %v n %d", tt.vals, s, tt.median, tt.min, tt.max, tt.n)
			}
		})
	}
	if s := NewSpread([]float64{nan}); s.Valid() || !math.IsNaN(s.Median) {
		t.Errorf("NewSpread of only NaN = %+v, want invalid", s)
	}
}

func TestAdded(t *testing.T) {
	tests := []struct {
		name          string
		proxy, direct time.Duration
		want          float64
	}{
		{"proxy slower", 450 * time.Microsecond, 300 * time.Microsecond, 150},
		{"equal", time.Millisecond, time.Millisecond, 0},
		{"noise makes it negative, kept", 290 * time.Microsecond, 300 * time.Microsecond, -10},
		{"sub-microsecond", 1500 * time.Nanosecond, 1000 * time.Nanosecond, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Added(tt.proxy, tt.direct); got != tt.want {
				t.Errorf("Added(%v, %v) = %v, want %v", tt.proxy, tt.direct, got, tt.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	if got := Ratio(8600, 17200); got != 0.5 {
		t.Errorf("Ratio = %v, want 0.5", got)
	}
	if got := Ratio(1, 0); !math.IsNaN(got) {
		t.Errorf("Ratio by zero = %v, want NaN", got)
	}
}
