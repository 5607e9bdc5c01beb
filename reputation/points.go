package reputation

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/iatp/iatp/manifest"
)

// Points is a reputation quantity kept exactly, in hundredths of a point:
// Points(600) is 6.00. Scores and event deltas are both Points, so adding ten
// successes of +0.10 to 5.00 gives exactly 6.00, with none of the drift of
// binary floating point.
//
// In JSON a Points value is a number with at most two decimals (6, 5.5,
// 4.75, -0.25). Decoding rounds the decimal text of the number half away
// from zero to hundredths (see ParsePoints).
type Points int64

// Score bounds and the starting score of every agent.
const (
	// MinScore is the lowest score an agent can have (0.00).
	MinScore Points = 0
	// MaxScore is the highest score an agent can have (10.00).
	MaxScore Points = 1000
	// NeutralScore is the score of an agent with no history (5.00).
	NeutralScore Points = 500
)

// Trust levels derived from a score by Level. They are the manifest trust
// levels of the protocol (package manifest holds the one spelling of each).
const (
	LevelVerifiedPartner = string(manifest.VerifiedPartner)
	LevelTrusted         = string(manifest.Trusted)
	LevelStandard        = string(manifest.Standard)
	LevelUnknown         = string(manifest.Unknown)
	LevelUntrusted       = string(manifest.Untrusted)
)

// The trust bands: the lowest score of each level, as Points; the
// definition is the manifest package's (manifest.LevelOfScore), which the
// policy shares.
const (
	BandVerifiedPartner Points = manifest.BandVerifiedPartner
	BandTrusted         Points = manifest.BandTrusted
	BandStandard        Points = manifest.BandStandard
	BandUnknown         Points = manifest.BandUnknown
)

// ErrInvalidPoints is returned (wrapped) by ParsePoints and
// Points.UnmarshalJSON for text that is not a JSON number or does not fit.
var ErrInvalidPoints = errors.New("reputation: invalid points")

// ParsePoints accepts values below maxPoints hundredths in magnitude, those
// with at most maxPointDigits digits: they fit in an int64 and AppendJSON
// writes them back as text ParsePoints reads.
const (
	maxPointDigits = 18
	maxPoints      = 1_000_000_000_000_000_000
)

// Level returns the trust level of a score: at least 8.00 is
// verified_partner, at least 6.00 trusted, at least 4.00 standard, at least
// 2.00 unknown, anything lower untrusted.
func Level(p Points) string { return string(TrustLevel(p)) }

// TrustLevel is Level as the manifest package's type, for policy code.
func TrustLevel(p Points) manifest.TrustLevel { return manifest.LevelOfScore(int64(p)) }

// clamp limits p to [MinScore, MaxScore].
func clamp(p Points) Points {
	return max(MinScore, min(MaxScore, p))
}

// String formats p with exactly two decimals: "6.00", "-0.25".
func (p Points) String() string {
	u := uint64(p)
	sign := ""
	if p < 0 {
		u = -u
		sign = "-"
	}
	return fmt.Sprintf("%s%d.%02d", sign, u/100, u%100)
}

// Float64 returns p as a float64 number of points (600 → 6.0). The result
// is for display and for interfaces that want a float; keep computing in
// Points.
func (p Points) Float64() float64 {
	return float64(p) / 100
}

// AppendJSON appends p as the shortest JSON number that holds it exactly:
// 600 → 6, 550 → 5.5, 475 → 4.75, -25 → -0.25.
func (p Points) AppendJSON(b []byte) []byte {
	u := uint64(p)
	if p < 0 {
		u = -u
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, u/100, 10)
	frac := u % 100
	switch {
	case frac == 0:
	case frac%10 == 0:
		b = append(b, '.', byte('0'+frac/10))
	default:
		b = append(b, '.', byte('0'+frac/10), byte('0'+frac%10))
	}
	return b
}

// MarshalJSON encodes p as a JSON number with at most two decimals.
func (p Points) MarshalJSON() ([]byte, error) {
	return p.AppendJSON(make([]byte, 0, 8)), nil
}

// UnmarshalJSON decodes a JSON number, rounding it to hundredths as
// ParsePoints does. A JSON string is refused; null leaves p unchanged, as
// encoding/json does for other types.
func (p *Points) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := ParsePoints(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParsePoints parses s, which must follow the JSON number grammar, and rounds
// its exact decimal value half away from zero to hundredths:
// "5.9999999999999964" (what ten successes give in the Python package's
// floats) is 6.00, "4.675" is 4.68, "-0.125" is -0.13, "1e-3" is 0.
// Rounding works on the decimal text, never through a float64, so the result
// does not depend on binary representation. Values of 10^16 points or more
// in magnitude are refused. The error wraps ErrInvalidPoints.
func ParsePoints(s string) (Points, error) {
	neg, intDigits, fracDigits, exp, ok := splitNumber(s)
	if !ok {
		return 0, fmt.Errorf("%w: %q is not a JSON number", ErrInvalidPoints, truncate(s, 40))
	}
	digits := intDigits + fracDigits
	// point is the index in digits before which the decimal point of the
	// value times 100 stands.
	point := len(intDigits) + exp + 2
	for len(digits) > 0 && digits[0] == '0' {
		digits = digits[1:]
		point--
	}
	if digits == "" {
		return 0, nil
	}
	if point > maxPointDigits {
		return 0, fmt.Errorf("%w: %q is out of range", ErrInvalidPoints, truncate(s, 40))
	}
	var whole uint64
	for i := 0; i < point; i++ {
		d := byte('0')
		if i < len(digits) {
			d = digits[i]
		}
		whole = whole*10 + uint64(d-'0')
	}
	if point >= 0 && point < len(digits) && digits[point] >= '5' {
		whole++
	}
	if whole >= maxPoints {
		return 0, fmt.Errorf("%w: %q is out of range", ErrInvalidPoints, truncate(s, 40))
	}
	v := Points(whole)
	if neg {
		v = -v
	}
	return v, nil
}

// splitNumber checks s against the JSON number grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and returns its parts. An
// exponent beyond ±1e6 saturates there: no number this package accepts is
// that large, and no nonzero one that small rounds to anything but zero.
func splitNumber(s string) (neg bool, intDigits, fracDigits string, exp int, ok bool) {
	i := 0
	if i < len(s) && s[i] == '-' {
		neg = true
		i++
	}
	start := i
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false, "", "", 0, false
	}
	intDigits = s[start:i]
	if i < len(s) && s[i] == '.' {
		i++
		start = i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == start {
			return false, "", "", 0, false
		}
		fracDigits = s[start:i]
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		expNeg := false
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			expNeg = s[i] == '-'
			i++
		}
		start = i
		for i < len(s) && isDigit(s[i]) {
			if exp < 1_000_000 {
				exp = exp*10 + int(s[i]-'0')
			}
			i++
		}
		if i == start {
			return false, "", "", 0, false
		}
		if expNeg {
			exp = -exp
		}
	}
	if i != len(s) {
		return false, "", "", 0, false
	}
	return neg, intDigits, fracDigits, exp, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// truncate shortens s for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
