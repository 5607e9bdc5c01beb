package detect

import "math/bits"

// examine handles s[from:], where the fast path saw something that may start
// a finding before limit; from starts a token. Like step, it returns the
// index after the byte that ends the token in progress at limit (or the end
// of s). When quiet shows that step would find nothing there, it skips the
// bytes without stepping through them.
func (d *detector) examine(s []byte, from, limit int) int {
	n := len(s)
	e := limit
	for e < n && props[s[e]]&fToken != 0 {
		e++
	}
	// Every finding but an email, a card or an SSN starts with at least ten
	// token bytes (a 10-byte prefixed secret, a 32-byte token, a PEM line
	// of dashes and letters). A card or an SSN whose first group is a token
	// shorter than four bytes goes on after it, through a separator outside
	// the token alphabet (a space, a dot, a Unicode dash) and a digit. An
	// email shows its '@'.
	if (e-from < 4 && noAt(s[from:min(e+1, n)]) && !groupGoesOn(s, from, e)) ||
		(e-from == 36 && isUUID(s[from:e]) && (e == n || s[e] != '@')) ||
		(e-from <= quietMax && d.quiet(s, from, e)) {
		e = min(e+1, n)
		d.tokStart = e
		return e
	}
	d.tokStart = from
	return d.step(s, from, limit)
}

// quietMax is the longest span quiet looks at: its 64-byte window must
// also hold the 8 bytes after the span that an SSN needs.
const quietMax = 64 - 9

// Lanes of qTab: each byte of a uint64 entry is one property, so that eight
// table entries shifted by 0..7 and OR-ed give eight 8-bit masks at once.
const (
	qDigit  = 0  // 0-9
	qLetter = 8  // A-Z a-z
	qToken  = 16 // the token alphabet [A-Za-z0-9+/=_-]
	qTrig   = 24 // a letter that may start a prefixed secret: A e g s x
	qDash   = 32 // '-'
	qSep    = 40 // a group separator of cards and SSNs: ' ' - . _ / uDash
	qAt     = 48 // '@'
	qNotHex = 56 // a token byte outside [0-9a-f-]
)

var qTab = func() (t [256]uint64) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		f := props[b]
		set := func(lane uint, on bool) {
			if on {
				t[c] |= 1 << lane
			}
		}
		set(qDigit, f&fDigit != 0)
		set(qLetter, f&fLetter != 0)
		set(qToken, f&fToken != 0)
		set(qTrig, f&fTrig != 0)
		set(qDash, b == '-')
		set(qSep, sepClass[b] != 0)
		set(qAt, b == '@')
		set(qNotHex, f&fToken != 0 && !(b >= '0' && b <= '9' || b >= 'a' && b <= 'f' || b == '-'))
	}
	return t
}()

// quiet reports whether step, run over s[from:e] and the byte at s[e] (which
// ends a token), would find nothing. It looks at a window of at most 64
// bytes through bit masks, so that ids, dates and UUIDs cost no
// byte-by-byte stepping: only the few places where a finding could start (a
// word starting with a trigger letter, five dashes, the digit patterns of
// an SSN or a card, a long token) are checked, with the same functions step
// uses.
func (d *detector) quiet(s []byte, from, e int) bool {
	// The span, the byte ending it, and at least 8 more (an SSN's), up to a
	// whole number of chunks.
	w := s[from:min(len(s), from+(e-from+9+7)&^7)]
	var digit, letter, token, trig, dash, sep, at, notHex uint64
	for o := 0; o < len(w); o += 8 {
		var acc uint64
		if o+8 <= len(w) {
			c := w[o : o+8 : o+8]
			acc = qTab[c[0]] | qTab[c[1]]<<1 | qTab[c[2]]<<2 | qTab[c[3]]<<3 |
				qTab[c[4]]<<4 | qTab[c[5]]<<5 | qTab[c[6]]<<6 | qTab[c[7]]<<7
		} else {
			for k, c := range w[o:] {
				acc |= qTab[c] << k
			}
		}
		digit |= uint64(uint8(acc>>qDigit)) << o
		letter |= uint64(uint8(acc>>qLetter)) << o
		token |= uint64(uint8(acc>>qToken)) << o
		trig |= uint64(uint8(acc>>qTrig)) << o
		dash |= uint64(uint8(acc>>qDash)) << o
		sep |= uint64(uint8(acc>>qSep)) << o
		at |= uint64(uint8(acc>>qAt)) << o
		notHex |= uint64(uint8(acc>>qNotHex)) << o
	}
	// Bit k stands for s[from+k]; the byte before from is never alphanumeric
	// for the detectors (from starts a token), which the zeros shifted in
	// at bit 0 express.
	span := uint64(1)<<(e-from+1) - 1 // s[from:e+1]
	if at&span != 0 {
		return false // an email may be there
	}
	// Prefixed secrets and JWTs start a word with a trigger letter.
	alnum := digit | letter
	for c := alnum &^ (alnum << 1) & trig & span; c != 0; c &= c - 1 {
		if p := from + bits.TrailingZeros64(c); d.prefixed(s, p) > p {
			return false
		}
	}
	// PEM blocks start with five dashes.
	dash5 := dash & (dash >> 1) & (dash >> 2) & (dash >> 3) & (dash >> 4)
	for c := dash5 & span; c != 0; c &= c - 1 {
		if p := from + bits.TrailingZeros64(c); d.pem(s, p) > p {
			return false
		}
	}
	// An SSN, by the bit of its first group's last digit: exactly three
	// digits not glued to a letter, then a separator, two digits, a
	// separator, four digits. (In Go, & and shifts bind alike: hence the
	// brackets.)
	end := digit &^ (digit >> 1)
	d3 := digit & (digit << 1) & (digit << 2)
	ssn := end & d3 &^ (digit << 3) &^ (letter << 3) & (sep >> 1) & (digit >> 2) & (digit >> 3) & (sep >> 4) &
		(digit >> 5) & (digit >> 6) & (digit >> 7) & (digit >> 8)
	if ssn&span != 0 {
		return false
	}
	// A card is at least 13 bytes of digits and separators from a digit:
	// mark the digits that start 13 such bytes.
	ds := digit | sep
	r2 := ds & (ds >> 1)
	r4 := r2 & (r2 >> 2)
	r8 := r4 & (r4 >> 4)
	if r8&(r8>>5)&digit&span != 0 {
		return false
	}
	// The window may cut such a run short: a digit in the span whose run
	// of digits and separators reaches the end of a window that is not the
	// end of s may start a card.
	if last := len(w) - 1; from+len(w) < len(s) && ds>>last&1 != 0 {
		runStart := bits.Len64(^ds & (uint64(1)<<last - 1)) // after the last byte that is neither
		if digit&span>>runStart != 0 {
			return false
		}
	}
	// Tokens of 32 bytes or more, by the bit of their last byte, unless
	// they are lowercase hex (UUIDs, digests), which never reaches 4.5 bits.
	t2 := token & (token << 1)
	t4 := t2 & (t2 << 2)
	t8 := t4 & (t4 << 4)
	t16 := t8 & (t8 << 8)
	t32 := t16 & (t16 << 16)
	for c := t32 & token &^ (token >> 1) & span; c != 0; c &= c - 1 {
		last := bits.TrailingZeros64(c)
		first := bits.Len64(^token & (uint64(1)<<last - 1)) // after the last non-token byte before it
		if (notHex&(uint64(1)<<(last+1)-1))>>first != 0 && highEntropy(s[from+first:from+last+1]) {
			return false
		}
	}
	return true
}

// groupGoesOn reports whether the token s[from:e] ends with a digit and is
// followed by a group separator and a digit.
func groupGoesOn(s []byte, from, e int) bool {
	return e > from && e+1 < len(s) && isDigit(s[e-1]) && sepClass[s[e]] != 0 && isDigit(s[e+1])
}

// noAt reports whether b, a few bytes, holds no '@'.
func noAt(b []byte) bool {
	for _, c := range b {
		if c == '@' {
			return false
		}
	}
	return true
}

// isUUID reports whether b is a UUID in its usual form, 8-4-4-4-12 hex
// digits of one case. No finding fits in one: no card starts in a UUID (see
// inUUID), its digit runs are not shaped like an SSN, no group starts like a
// prefixed secret, and 17 distinct characters carry at most 4.1 bits each.
func isUUID(b []byte) bool {
	seen := uuidClasses(b)
	return seen&hexOther == 0 && seen&(hexLower|hexUpper) != hexLower|hexUpper
}

// uuidShape reports whether b is 8-4-4-4-12 hex digits separated by dashes.
func uuidShape(b []byte) bool {
	return uuidClasses(b)&hexOther == 0
}

// uuidClasses returns the hexClass bits of the bytes of b but for the
// dashes of a UUID, or hexOther when b is not 36 bytes with those dashes.
func uuidClasses(b []byte) uint8 {
	if len(b) != 36 || b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
		return hexOther
	}
	var seen uint8
	for _, g := range [...][]byte{b[:8], b[9:13], b[14:18], b[19:23], b[24:]} {
		for _, c := range g {
			seen |= hexClass[c]
		}
	}
	return seen
}

// Classes of hexClass.
const (
	hexDigit = 1 << iota
	hexLower
	hexUpper
	hexOther
)

var hexClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c >= '0' && c <= '9':
			t[c] = hexDigit
		case c >= 'a' && c <= 'f':
			t[c] = hexLower
		case c >= 'A' && c <= 'F':
			t[c] = hexUpper
		default:
			t[c] = hexOther
		}
	}
	return t
}()
