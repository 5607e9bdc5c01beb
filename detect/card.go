package detect

// alnum handles the alphanumeric run starting at s[a], which is not
// preceded by a letter or digit (or follows a finding), and returns where
// scanning resumes: after a finding that starts in the run, or after the run.
//
// Words are atomic for every detector: a finding starts at the start of a
// word or not at all. (A card or SSN glued to letters on its left is not
// one; allowing it would make scrubbing stop being idempotent, because the
// marker that replaces it would unglue whatever precedes it.) So only a run
// of digits alone can start a card or an SSN.
func (d *detector) alnum(s []byte, a int) int {
	n := len(s)
	if props[s[a]]&fTrig != 0 && (a == d.lastEnd || !isAlnum(s[a-1])) {
		if e := d.prefixed(s, a); e > a {
			d.found(s, a, e, Secret)
			return e
		}
	}
	b := a
	var seen uint8
	for b < n {
		f := props[s[b]]
		if f&fAlnum == 0 {
			break
		}
		seen |= f
		b++
	}
	if seen&fLetter == 0 { // all digits
		return d.digits(s, a, b)
	}
	return b
}

// digits handles s[i:j], a run of digits that is a whole alphanumeric run,
// and returns where scanning resumes.
func (d *detector) digits(s []byte, i, j int) int {
	switch l := j - i; {
	case l == 3:
		if e := ssnEnd(s, j); e > 0 && d.cardMayStart(s, i) {
			d.found(s, i, e, SSN)
			return e
		}
	case l == 4:
		if d.cardMayStart(s, i) {
			if e := groupedCardEnd(s, i, j); e > 0 {
				d.found(s, i, e, CreditCard)
				return e
			}
		}
	case l >= cardMinDigits && l <= cardMaxDigits:
		if d.cardMayStart(s, i) && (j == len(s) || !isAlnum(s[j])) && luhn(s[i:j]) {
			d.found(s, i, j, CreditCard)
			return j
		}
	}
	return j
}

// cardMayStart reports whether a card or an SSN may start at s[i]: it must
// not be glued to a letter or digit on its left; the end of the previous
// finding counts as a boundary.
func (d *detector) cardMayStart(s []byte, i int) bool {
	return i == d.lastEnd || !isAlnum(s[i-1])
}

// ssnEnd returns the end of an SSN whose first three digits end at s[j], or
// 0: s[j:] must read -dd-dddd, not followed by a digit.
func ssnEnd(s []byte, j int) int {
	if len(s)-j < 8 {
		return 0
	}
	t := s[j : j+8]
	if t[0] != '-' || !isDigit(t[1]) || !isDigit(t[2]) || t[3] != '-' ||
		!isDigit(t[4]) || !isDigit(t[5]) || !isDigit(t[6]) || !isDigit(t[7]) {
		return 0
	}
	if j+8 < len(s) && isDigit(s[j+8]) {
		return 0
	}
	return j + 8
}

// Limits of a card number.
const (
	cardMinDigits = 13
	cardMaxDigits = 19
)

// groupedCardEnd looks for a grouped card whose first group is s[i:j], four
// digits not glued on the left, followed by groups of 3–6 digits, each after
// the same single separator (space or dash). It returns the end of the
// longest run of whole groups holding 13–19 digits that passes Luhn, or 0.
// At most 19 digits are examined, so the work per starting group is bounded.
func groupedCardEnd(s []byte, i, j int) int {
	n := len(s)
	if j+1 >= n || (s[j] != ' ' && s[j] != '-') || !isDigit(s[j+1]) {
		return 0
	}
	sep := s[j]
	var ends [cardMaxDigits / 3]int // candidate ends (after a group), in order
	cands := 0
	total := j - i
	for k := j; k < n && s[k] == sep && total < cardMaxDigits; {
		a := k + 1
		b := a
		for b < n && b-a <= 6 && isDigit(s[b]) {
			b++
		}
		if l := b - a; l < 3 || l > 6 || (b < n && isAlnum(s[b])) {
			// Not a group, or one glued to what follows: the run ends
			// before it.
			break
		}
		total += b - a
		if total > cardMaxDigits {
			break
		}
		if total >= cardMinDigits {
			ends[cands] = b
			cands++
		}
		k = b
	}
	for c := cands - 1; c >= 0; c-- {
		if luhn(s[i:ends[c]]) {
			return ends[c]
		}
	}
	return 0
}

// luhn reports whether the digits in s can be a payment card number: the
// first digit, the major industry identifier of ISO/IEC 7812, is 2–6 (the
// banking and financial issuers: Mastercard, Amex, Diners, JCB, Visa,
// Discover, UnionPay, Maestro), and the digits pass the Luhn check. Other
// bytes (group separators) are skipped. The issuer check keeps
// millisecond and microsecond Unix timestamps (which start with 1) from
// being taken for cards one time in ten.
func luhn(s []byte) bool {
	if len(s) == 0 || s[0] < '2' || s[0] > '6' {
		return false
	}
	sum := 0
	double := false
	for k := len(s) - 1; k >= 0; k-- {
		v := int(s[k] - '0')
		if v > 9 {
			continue
		}
		if double {
			v *= 2
			if v > 9 {
				v -= 9
			}
		}
		sum += v
		double = !double
	}
	return sum%10 == 0
}

// numberIsCard reports whether the JSON number num (already validated) holds
// a card number: its integer part has 13–19 digits and passes Luhn.
func numberIsCard(num []byte) bool {
	if len(num) < cardMinDigits {
		return false
	}
	if num[0] == '-' {
		num = num[1:]
	}
	k := 0
	for k < len(num) && isDigit(num[k]) {
		k++
	}
	return k >= cardMinDigits && k <= cardMaxDigits && luhn(num[:k])
}
