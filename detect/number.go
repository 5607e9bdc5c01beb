package detect

import (
	"math"
	"strconv"
)

// Number is a JSON number as written in the document, like json.Number.
// Its value is exact; Float64 and Int64 convert it.
type Number string

// Float64 returns the number as the nearest float64: ±Inf when it is too
// large (1e400), ±0 when it is too small (1e-400). It never fails on a
// Number from ParseJSON; a string that is not a JSON number gives NaN.
func (n Number) Float64() float64 {
	if _, ok := parseDecimal([]byte(n)); !ok {
		return math.NaN()
	}
	f, _ := strconv.ParseFloat(string(n), 64) // the nearest value, even out of range
	return f
}

// Int64 returns the number as an int64 and true when its exact value is an
// integer in the range of int64, whatever its form (1e3, 1000.0 and 10000e-1
// are all 1000); otherwise 0 and false.
func (n Number) Int64() (int64, bool) {
	dec, ok := parseDecimal([]byte(n))
	switch {
	case !ok:
		return 0, false
	case dec.zero:
		return 0, true
	case dec.exp < 0 || int64(dec.n)+dec.exp > 19:
		return 0, false
	}
	var u uint64
	for _, c := range dec.digits {
		if isDigit(c) {
			u = u*10 + uint64(c-'0') // at most 19 digits: no overflow
		}
	}
	for k := int64(0); k < dec.exp; k++ {
		if u > math.MaxUint64/10 {
			return 0, false
		}
		u *= 10
	}
	if dec.neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u-1) - 1, true // -(1<<63) too
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

// String returns the number as written.
func (n Number) String() string { return string(n) }

// decimal is the exact value of a JSON number: ±digits × 10^exp.
type decimal struct {
	// digits runs from the first to the last nonzero digit of the
	// number; it may hold the decimal point, which is not a digit.
	digits []byte
	n      int   // how many digits digits holds
	exp    int64 // saturated at ±expLimit
	neg    bool
	zero   bool // the value is zero; digits, n and exp are unset
}

// expLimit bounds the exponents parseDecimal works with. It is far above
// any exponent that can matter (a document is shorter than 2^40 bytes),
// far below overflow.
const expLimit = 1 << 50

// parseDecimal returns the exact value of num, or false when num is not a
// JSON number. Its work is linear in len(num), whatever the exponent.
func parseDecimal(num []byte) (decimal, bool) {
	var d decimal
	k := 0
	if k < len(num) && num[k] == '-' {
		d.neg = true
		k++
	}
	intStart := k
	for k < len(num) && isDigit(num[k]) {
		k++
	}
	intEnd := k
	if intEnd == intStart || (num[intStart] == '0' && intEnd-intStart > 1) {
		return d, false
	}
	fracStart, fracEnd := k, k
	if k < len(num) && num[k] == '.' {
		k++
		fracStart = k
		for k < len(num) && isDigit(num[k]) {
			k++
		}
		if fracEnd = k; fracEnd == fracStart {
			return d, false
		}
	}
	var e int64
	if k < len(num) && (num[k] == 'e' || num[k] == 'E') {
		k++
		neg := false
		if k < len(num) && (num[k] == '+' || num[k] == '-') {
			neg = num[k] == '-'
			k++
		}
		if k == len(num) {
			return d, false
		}
		for ; k < len(num) && isDigit(num[k]); k++ {
			if e < expLimit {
				e = e*10 + int64(num[k]-'0')
			}
		}
		if neg {
			e = -e
		}
	}
	if k != len(num) {
		return d, false
	}
	// The first and the last nonzero digits.
	first, last := -1, -1
	for p := intStart; p < fracEnd; p++ {
		if c := num[p]; c != '0' && c != '.' {
			if first < 0 {
				first = p
			}
			last = p
		}
	}
	if first < 0 {
		d.zero = true
		return d, true
	}
	d.digits = num[first : last+1]
	d.n = len(d.digits)
	if first < intEnd && last >= fracStart && fracStart != fracEnd {
		d.n-- // the decimal point
	}
	// value = digits × 10^(e + the digits after last in the integer part,
	// or − the fraction digits up to last).
	if last < intEnd {
		d.exp = e + int64(intEnd-1-last)
	} else {
		d.exp = e - int64(last+1-fracStart)
	}
	d.exp = max(-expLimit, min(expLimit, d.exp))
	return d, true
}

// numberIsCard reports whether the JSON number num (already validated)
// holds a card number: its exact value is an integer of 13–19 digits that
// passes luhn, whatever its form (4532015112830366, 4.532015112830366e15,
// 4532015112830366.0, 45320151128303660e-1) and sign.
func numberIsCard(num []byte) bool {
	dec, ok := parseDecimal(num)
	if !ok || dec.zero || dec.exp < 0 {
		return false
	}
	if l := int64(dec.n) + dec.exp; l < cardMinDigits || l > cardMaxDigits {
		return false
	}
	return luhn(dec.digits, dec.exp%2 == 1)
}
