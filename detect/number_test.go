package detect

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

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
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%.20s… (%d bytes) took %v", num, len(num), d)
		}
	}
}
