package detect

import (
	"bytes"
	"encoding/binary"
	"math"
)

// prefixed returns the end of a secret with a well-known prefix starting at
// s[i], a letter that starts a word, or 0 when there is none. Each form
// either matches, and the scan resumes after it, or fails within a bounded
// number of bytes, except a JWT's segments, which jwtEnd scans through a
// cache.
func (d *detector) prefixed(s []byte, i int) int {
	r := s[i:]
	switch r[0] {
	case 'A': // AWS access key id: AKIA or ASIA + 16 of [0-9A-Z], ending a word.
		if len(r) >= 20 && (r[1] == 'K' || r[1] == 'S') && r[2] == 'I' && r[3] == 'A' &&
			runOf(r[4:20], fUpDig) == 16 && wordEnds(r, 20) {
			return i + 20
		}
	case 'g':
		// GitHub token: gh[pousr]_ + 36 alphanumerics, ending a word.
		if len(r) >= 40 && r[1] == 'h' && isOneOf(r[2], "pousr") && r[3] == '_' &&
			runOf(r[4:40], fAlnum) == 36 && wordEnds(r, 40) {
			return i + 40
		}
		// Fine-grained GitHub token: github_pat_ + at least 22 of [A-Za-z0-9_].
		if bytes.HasPrefix(r, []byte("github_pat_")) {
			k := 11
			for k < len(r) && (isAlnum(r[k]) || r[k] == '_') {
				k++
			}
			if k-11 >= 22 {
				return i + k
			}
		}
	case 'x': // Slack token: xox[abposr]- + at least 10 of [A-Za-z0-9-].
		if len(r) >= 15 && r[1] == 'o' && r[2] == 'x' && isOneOf(r[3], "abposr") && r[4] == '-' {
			if k := 5 + runOf(r[5:], fLabel); k-5 >= 10 {
				return i + k
			}
		}
	case 's': // API key: sk- + at least 20 of [A-Za-z0-9_-] (sk-proj-… included).
		if len(r) >= 23 && r[1] == 'k' && r[2] == '-' {
			if k := 3 + runOf(r[3:], fURL); k-3 >= 20 {
				return i + k
			}
		}
	case 'e':
		return d.jwtEnd(s, i)
	}
	return 0
}

// jwtEnd returns the end of the JWT starting at s[i] (eyJ…, then three
// base64url segments separated by dots; the signature may be empty), or 0.
func (d *detector) jwtEnd(s []byte, i int) int {
	if len(s)-i < 14 || s[i+1] != 'y' || s[i+2] != 'J' {
		return 0
	}
	k := d.urlRunEnd(s, i+3)
	if k-i < 10 || k >= len(s) || s[k] != '.' { // a header is at least {"alg":…}
		return 0
	}
	p := d.urlRunEnd(s, k+1)
	if p-k-1 < 2 || p >= len(s) || s[p] != '.' {
		return 0
	}
	return p + 1 + runOf(s[p+1:], fURL)
}

// urlRunEnd returns the end of the run of base64url bytes that s[p] starts
// or continues. Many JWT candidates ("eyJ" after a dash or an underscore) can
// sit in one run, so the last two runs scanned are remembered: each byte is
// scanned at most twice, not once per candidate.
func (d *detector) urlRunEnd(s []byte, p int) int {
	for k := range d.runs {
		if r := &d.runs[k]; r.lo <= p && p <= r.hi {
			return r.hi
		}
	}
	hi := p + runOf(s[p:], fURL)
	d.runs[d.nextRun] = span{p, hi}
	d.nextRun ^= 1
	return hi
}

// runOf returns the length of the prefix of b whose bytes all have property f.
func runOf(b []byte, f uint8) int {
	for k, c := range b {
		if props[c]&f == 0 {
			return k
		}
	}
	return len(b)
}

// wordEnds reports whether r[k] ends a word: the end, or not alphanumeric.
func wordEnds(r []byte, k int) bool { return k == len(r) || !isAlnum(r[k]) }

func isOneOf(c byte, set string) bool {
	for k := 0; k < len(set); k++ {
		if set[k] == c {
			return true
		}
	}
	return false
}

// PEM private key markers.
const (
	pemBegin  = "-----BEGIN "
	pemEnd    = "-----END "
	pemKey    = "PRIVATE KEY-----"
	pemMaxTag = 40 // longest label before PRIVATE KEY, e.g. "ENCRYPTED ", "OPENSSH "
	// pemMaxSpan bounds how far after its BEGIN line an END line is looked
	// for; the largest RSA keys take about 13 kB.
	pemMaxSpan = 64 << 10
)

// pemLine returns the length of a PEM private-key boundary line
// "<prefix>[A-Z0-9 ]*PRIVATE KEY-----" at the start of r, or 0.
func pemLine(r []byte, prefix string) int {
	if !bytes.HasPrefix(r, []byte(prefix)) {
		return 0
	}
	k := len(prefix)
	lim := min(len(r), k+pemMaxTag+len(pemKey))
	for k < lim && (props[r[k]]&fUpDig != 0 || r[k] == ' ') {
		k++
	}
	if !bytes.HasSuffix(r[:k], []byte("PRIVATE KEY")) || !bytes.HasPrefix(r[k:], []byte("-----")) {
		return 0
	}
	return k + 5
}

// pem returns the end of a PEM private key block starting at s[i], or 0.
// The block runs through the next END line when there is one within
// pemMaxSpan, otherwise through the base64 body after the BEGIN line.
func (d *detector) pem(s []byte, i int) int {
	h := pemLine(s[i:], pemBegin)
	if h == 0 {
		return 0
	}
	h += i
	if e := d.nextPEMEnd(s, h); e > 0 && e-h <= pemMaxSpan {
		return e
	}
	k := h
	for k < len(s) && (props[s[k]]&fToken != 0 || s[k] == '\n' || s[k] == '\r' || s[k] == '\\') && s[k] != '-' {
		k++
	}
	return k
}

// nextPEMEnd returns the end of the first PEM private-key END line at or
// after s[h], or 0. It remembers its last answer, so that many BEGIN lines
// without an END cost one pass over s, not one each.
func (d *detector) nextPEMEnd(s []byte, h int) int {
	if d.pemSearched && h >= d.pemFrom && (d.pemNext < 0 || d.pemAt >= h) {
		return max(d.pemNext, 0)
	}
	d.pemSearched, d.pemFrom, d.pemAt, d.pemNext = true, h, 0, -1
	if d.bounded {
		if q := bytes.IndexAny(s[h:], "\"\\"); q >= 0 {
			s = s[:h+q]
		}
	}
	for from := h; ; {
		k := bytes.Index(s[from:], []byte(pemEnd))
		if k < 0 {
			return 0
		}
		from += k
		if l := pemLine(s[from:], pemEnd); l > 0 {
			d.pemAt, d.pemNext = from, from+l
			return d.pemNext
		}
		from += len(pemEnd)
	}
}

// highEntropy reports whether tok, a run of the token alphabet, carries more
// than 4.5 bits of Shannon entropy per character.
func highEntropy(tok []byte) bool {
	// The entropy is at most log2 of the number of distinct characters, so
	// tokens of 22 distinct characters or fewer (hex digests, UUIDs, most
	// words) are settled without counting: log2(22) < 4.5 < log2(23).
	var seen [128]byte // all token bytes are ASCII
	for _, c := range tok {
		seen[c&0x7f] = 1
	}
	// Add the 16 words lane by lane (each lane ends at most 16), then add
	// the lanes up.
	var lanes uint64
	for k := 0; k < len(seen); k += 8 {
		lanes += binary.LittleEndian.Uint64(seen[k:])
	}
	if distinct := (lanes * 0x0101010101010101) >> 56; distinct <= 22 {
		return false
	}
	var counts [128]uint32
	for _, c := range tok {
		counts[c&0x7f]++
	}
	// H = log2(n) - (1/n)·Σ c·log2(c) > 4.5  ⇔  Σ c·log2(c) < n·(log2(n) - 4.5)
	n := float64(len(tok))
	sum := 0.0
	for _, c := range counts {
		switch {
		case c < 2:
		case int(c) < len(xlog2x):
			sum += xlog2x[c]
		default:
			f := float64(c)
			sum += f * math.Log2(f)
		}
	}
	return sum < n*(math.Log2(n)-4.5)
}

// xlog2x[c] is c·log2(c).
var xlog2x = func() (t [64]float64) {
	for c := 2; c < len(t); c++ {
		t[c] = float64(c) * math.Log2(float64(c))
	}
	return t
}()
