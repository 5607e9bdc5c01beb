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
// and returns where scanning resumes. A run of three digits may start an
// SSN, which is looked for first; any run of at most 19 digits may start a
// card.
func (d *detector) digits(s []byte, i, j int) int {
	if !d.cardMayStart(s, i) {
		return j
	}
	if j-i == 3 {
		if e := ssnEnd(s, j); e > 0 {
			d.found(s, i, e, SSN)
			return e
		}
	}
	if j-i <= cardMaxDigits {
		if e := cardEnd(s, i, j); e > 0 {
			d.found(s, i, e, CreditCard)
			return e
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

// Classes of group separators. A card number or an SSN uses separators of
// one class throughout: mixing them would join dates, times, phone numbers,
// IP addresses and versions written next to each other into runs of 13–19
// digits, one in ten of which passes the Luhn check.
const (
	sepSpace = 1 + iota // ' ' (and what normalises to it: U+00A0, U+2007, U+202F…)
	sepDash             // '-' and the Unicode dashes (uDash)
	sepDot              // '.'
	sepUnder            // '_'
	sepSlash            // '/'
)

// sepClass gives the class of each byte that separates groups, 0 for others.
var sepClass = func() (t [256]uint8) {
	t[' '], t['-'], t[uDash], t['.'], t['_'], t['/'] = sepSpace, sepDash, sepDash, sepDot, sepUnder, sepSlash
	return t
}()

// ssnEnd returns the end of an SSN whose first three digits end at s[j], or
// 0: s[j:] must read -dd-dddd, the two separators being of one class, dashes
// or spaces, and not be followed by a digit.
func ssnEnd(s []byte, j int) int {
	if len(s)-j < 8 {
		return 0
	}
	t := s[j : j+8]
	c := sepClass[t[0]]
	if (c != sepDash && c != sepSpace) || sepClass[t[3]] != c || !isDigit(t[1]) || !isDigit(t[2]) ||
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

// cardEnd looks for a card whose first group is s[i:j], digits not glued on
// either side. The groups that follow are digit runs of any length, each
// after one separator of the class of the first, and not glued to a letter
// on their right (the run ends before such a group). It returns the end of
// the longest run of whole groups from s[i] that holds 13–19 digits and
// passes luhn, or 0. At most 19 digits are examined, so the work per
// starting group is bounded.
func cardEnd(s []byte, i, j int) int {
	n := len(s)
	total := j - i
	var ends [cardMaxDigits - cardMinDigits + 1]int // candidate ends (after a group), in order
	cands := 0
	if total >= cardMinDigits {
		ends[0], cands = j, 1
	}
	if j+1 < n && sepClass[s[j]] != 0 {
		cls := sepClass[s[j]]
		for k := j; k+1 < n && sepClass[s[k]] == cls && isDigit(s[k+1]); {
			a := k + 1
			b := a
			for b < n && b-a+total < cardMaxDigits && isDigit(s[b]) {
				b++
			}
			if b < n && isAlnum(s[b]) {
				// Glued to a letter, or too many digits: the run ends
				// before this group.
				break
			}
			total += b - a
			if total >= cardMinDigits {
				ends[cands] = b
				cands++
			}
			k = b
		}
	}
	for c := cands - 1; c >= 0; c-- {
		if luhn(s[i:ends[c]], false) {
			if inUUID(s, i) {
				return 0
			}
			return ends[c]
		}
	}
	return 0
}

// inUUID reports whether the group starting at s[i] lies in a UUID
// (8-4-4-4-12 hex digits, a token on its own). The groups of a random UUID
// are all digits and join into 16 (8-4-4 or 4-12) in about one UUID in 900,
// and one in twenty of those starts with 2–6 and passes the Luhn check: no
// card starts in a UUID.
func inUUID(s []byte, i int) bool {
	for _, off := range [...]int{0, 9, 14, 19, 24} {
		a := i - off
		if a >= 0 && a+36 <= len(s) && uuidShape(s[a:a+36]) &&
			(a == 0 || props[s[a-1]]&fToken == 0) && (a+36 == len(s) || props[s[a+36]]&fToken == 0) {
			return true
		}
	}
	return false
}

// luhn reports whether the digits in s, followed by one more zero when odd
// is set, can be a payment card number: the first digit, the major
// industry identifier of ISO/IEC 7812, is 2–6 (the banking and financial
// issuers: Mastercard, Amex, Diners, JCB, Visa, Discover, UnionPay,
// Maestro), and the digits pass the Luhn check. Other bytes (group
// separators, a decimal point) are skipped. The issuer check keeps
// millisecond and microsecond Unix timestamps (which start with 1) from
// being taken for cards one time in ten.
func luhn(s []byte, odd bool) bool {
	if len(s) == 0 || s[0] < '2' || s[0] > '6' {
		return false
	}
	sum := 0
	double := odd
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
