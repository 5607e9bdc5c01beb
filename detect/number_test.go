package detect

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNumberConversions(t *testing.T) {
	tests := []struct {
		num    Number
		f      float64
		i      int64
		isInt  bool
		isCard bool
	}{
		{"0", 0, 0, true, false},
		{"-0", math.Copysign(0, -1), 0, true, false},
		{"0.000e-7", 0, 0, true, false},
		{"1", 1, 1, true, false},
		{"-12", -12, -12, true, false},
		{"1.5", 1.5, 0, false, false},
		{"1e3", 1000, 1000, true, false},
		{"1000.0", 1000, 1000, true, false},
		{"10000e-1", 1000, 1000, true, false},
		{"1E+3", 1000, 1000, true, false},
		{"0.1e1", 1, 1, true, false},
		{"12.5e-1", 1.25, 0, false, false},
		{"9223372036854775807", 9223372036854775807, math.MaxInt64, true, false},
		{"9223372036854775808", 9223372036854775808, 0, false, false},
		{"-9223372036854775808", -9223372036854775808, math.MinInt64, true, false},
		{"-9223372036854775809", -9223372036854775809, 0, false, false},
		{"9.223372036854775807e18", 9223372036854775807, math.MaxInt64, true, false},
		{"1e19", 1e19, 0, false, false},
		{"1e400", math.Inf(1), 0, false, false},
		{"-1e400", math.Inf(-1), 0, false, false},
		{"1e-400", 0, 0, false, false},
		{"1e-999999", 0, 0, false, false},
		{"1e99999999999999999999999", math.Inf(1), 0, false, false},
		{"4532015112830366", 4532015112830366, 4532015112830366, true, true},
		{"4.532015112830366e15", 4532015112830366, 4532015112830366, true, true},
		{"4532015112830366.0", 4532015112830366, 4532015112830366, true, true},
		{"45320151128303660e-1", 4532015112830366, 4532015112830366, true, true},
		{"4532015112830366E+0", 4532015112830366, 4532015112830366, true, true},
		{"-4532015112830366", -4532015112830366, -4532015112830366, true, true},
		{"4.5320151128303665e15", 4532015112830366.5, 0, false, false},
	}
	for _, tc := range tests {
		t.Run(string(tc.num), func(t *testing.T) {
			if f := tc.num.Float64(); f != tc.f || math.Signbit(f) != math.Signbit(tc.f) {
				t.Errorf("Float64() = %v, want %v", f, tc.f)
			}
			if i, ok := tc.num.Int64(); i != tc.i || ok != tc.isInt {
				t.Errorf("Int64() = %v, %v; want %v, %v", i, ok, tc.i, tc.isInt)
			}
			if got := numberIsCard([]byte(tc.num)); got != tc.isCard {
				t.Errorf("numberIsCard = %v, want %v", got, tc.isCard)
			}
			if tc.num.String() != string(tc.num) {
				t.Errorf("String() = %q", tc.num.String())
			}
		})
	}
	for _, bad := range []Number{"", "-", "01", "1.", ".5", "1e", "+1", "0x10", "NaN", "Inf", "1_000", " 1"} {
		if f := bad.Float64(); !math.IsNaN(f) {
			t.Errorf("Number(%q).Float64() = %v, want NaN", bad, f)
		}
		if _, ok := bad.Int64(); ok {
			t.Errorf("Number(%q).Int64() is ok", bad)
		}
	}
}

// randomNumber writes a JSON number built around card-like digits, in one
// of the forms of the grammar.
func randomNumber(r *rand.Rand) string {
	digits := strings.Repeat("0", r.IntN(3)) + strconv.FormatUint(r.Uint64N(1e19), 10) + strings.Repeat("0", r.IntN(4))
	digits = strings.TrimLeft(digits, "0")
	if digits == "" {
		digits = "0"
	}
	var b strings.Builder
	if r.IntN(4) == 0 {
		b.WriteByte('-')
	}
	point := r.IntN(len(digits) + 1)
	switch {
	case point == 0:
		b.WriteString("0." + strings.Repeat("0", r.IntN(3)) + digits)
	case point < len(digits) && r.IntN(2) == 0:
		b.WriteString(digits[:point] + "." + digits[point:])
	default:
		b.WriteString(digits)
	}
	if r.IntN(3) > 0 {
		b.WriteString([]string{"e", "E", "e+", "e-", "E-"}[r.IntN(5)])
		b.WriteString(strconv.Itoa(r.IntN(25)))
	}
	return b.String()
}

func TestNumberIsCardMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	cards := 0
	for k := 0; k < 200000; k++ {
		num := randomNumber(r)
		got, want := numberIsCard([]byte(num)), refNumberIsCard(num)
		if got != want {
			t.Fatalf("numberIsCard(%s) = %v, reference %v", num, got, want)
		}
		if got {
			cards++
		}
	}
	if cards < 100 {
		t.Errorf("only %d cards among the random numbers: the test does not test much", cards)
	}
}

// TestNumberBoundedWork checks that huge exponents and long mantissas cost
// time linear in the number's length, not in its magnitude.
func TestNumberBoundedWork(t *testing.T) {
	long := strings.Repeat("7", 1<<20)
	for _, num := range []string{
		"1e" + strings.Repeat("9", 1<<20), "1e-" + strings.Repeat("9", 1<<20),
		long + "e-" + strconv.Itoa(1<<20), "0." + strings.Repeat("0", 1<<20) + "1e99999999999999",
	} {
		start := time.Now()
		doc := []byte("[" + num + "]")
		if _, err := ScanJSON(doc, Options{}); err != nil {
			t.Fatalf("ScanJSON(%.20s…): %v", num, err)
		}
		pr, err := ParseJSON(nil, doc, Options{Value: true})
		if err != nil {
			t.Fatal(err)
		}
		n := pr.Value.([]any)[0].(Number)
		n.Float64()
		n.Int64()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%.20s… (%d bytes) took %v", num, len(num), d)
		}
	}
}
