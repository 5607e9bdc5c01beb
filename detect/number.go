package detect

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
