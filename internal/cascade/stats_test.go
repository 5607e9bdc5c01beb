package cascade

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	tests := []struct{ q, want float64 }{{0, 1}, {0.5, 3}, {1, 5}, {0.25, 2}, {0.9, 4.6}, {-1, 1}, {2, 5}}
	for _, tt := range tests {
		if got := Quantile(xs, tt.q); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if xs[0] != 5 {
		t.Error("Quantile sorted its argument")
	}
	if !math.IsNaN(Quantile(nil, 0.5)) || !math.IsNaN(Mean(nil)) || !math.IsNaN(Rate(1, 0)) {
		t.Error("empty samples and rates of nothing must be NaN")
	}
	if Quantile([]float64{7}, 0.95) != 7 || Mean([]float64{1, 2, 6}) != 3 || Rate(1, 4) != 0.25 {
		t.Error("Quantile, Mean or Rate of simple samples")
	}
}

func TestSummaryJSON(t *testing.T) {
	s := Summarise(millis([]time.Duration{time.Millisecond, 3 * time.Millisecond}), "ms")
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"n":2,"mean":2,"p50":2,"p95":2.9,"max":3,"unit":"ms"}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	b, _ = json.Marshal(Summarise(nil, "s"))
	if want := `{"n":0,"mean":null,"p50":null,"p95":null,"max":null,"unit":"s"}`; string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var f struct{ A, B Float }
	if err := json.Unmarshal([]byte(`{"A":null,"B":0.125}`), &f); err != nil || !isNaN(f.A) || f.B != 0.125 {
		t.Errorf("Unmarshal: %v %v %v", f.A, f.B, err)
	}
}

func TestFormatting(t *testing.T) {
	for in, want := range map[float64]string{0: "0 %", 1: "100 %", 0.088: "8.8 %", 0.1: "10 %", 0.0049: "0.5 %", math.NaN(): "—"} {
		if got := pct(in); got != want {
			t.Errorf("pct(%v) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[float64]string{0: "0", 1.5: "1.5", 0.12345: "0.123", 10: "10", math.NaN(): "—"} {
		if got := num(in); got != want {
			t.Errorf("num(%v) = %q, want %q", in, got, want)
		}
	}
}
