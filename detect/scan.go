package detect

import (
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// Character property bits, for the detectors' inner loops.
const (
	fLetter = 1 << iota // A-Z a-z
	fDigit              // 0-9
	fToken              // A-Z a-z 0-9 + / = _ -  (high-entropy token alphabet)
	fLocal              // A-Z a-z 0-9 . _ % + -  (email local part)
	fLabel              // A-Z a-z 0-9 -          (email domain label)
	fURL                // A-Z a-z 0-9 _ -        (base64url)
	fUpDig              // A-Z 0-9                (AWS key id body)
	fTrig               // a letter that may start a prefixed secret: A e g s x

	fAlnum = fLetter | fDigit
)

// props holds the property bits of every byte. (A function value, not
// init, so that the tables built from it are built after it.)
var props = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		var f uint8
		switch {
		case c >= 'A' && c <= 'Z':
			f = fLetter | fToken | fLocal | fLabel | fURL | fUpDig
		case c >= 'a' && c <= 'z':
			f = fLetter | fToken | fLocal | fLabel | fURL
		case c >= '0' && c <= '9':
			f = fDigit | fToken | fLocal | fLabel | fURL | fUpDig
		}
		switch c {
		case '+':
			f = fToken | fLocal
		case '/', '=':
			f = fToken
		case '_':
			f = fToken | fLocal | fURL
		case '-':
			f = fToken | fLocal | fLabel | fURL
		case '.', '%':
			f = fLocal
		case 'A', 'e', 'g', 's', 'x':
			f |= fTrig
		}
		t[c] = f
	}
	return t
}()

func isDigit(c byte) bool { return c-'0' < 10 }
func isAlnum(c byte) bool { return props[c]&fAlnum != 0 }

// minTokenLen is the shortest token that pays for the entropy computation.
const minTokenLen = 32

// detector runs the detectors over one piece of content at a time (a JSON
// string after decoding its escapes, or a whole text) and accumulates the
// kinds found. When scrubbing, it copies its source to out, replacing each
// finding with its marker as soon as the finding is taken.
type detector struct {
	set Set

	// Per-content state.
	lastEnd  int // end of the last finding taken: a word boundary, and the local part's left limit
	tokStart int // start of the pending high-entropy token candidate
	// The last search for a PEM END line: it started at pemFrom and found
	// one at s[pemAt:pemNext], or none when pemNext < 0.
	pemSearched             bool
	pemFrom, pemAt, pemNext int
	// runs caches the last two base64url runs scanned by jwtEnd in this
	// content (see urlRunEnd).
	runs    [2]span
	nextRun int
	// bounded is set while scanning the raw bytes of a JSON string, which
	// run on to the end of the document: the content ends at the first '"'
	// or '\\' (with a backslash, the string is scanned again, decoded).
	bounded bool

	// The state to restore when a string turns out to have escapes,
	// recorded by the first finding after enter (none while fresh).
	fresh      bool
	undoSet    Set
	undoOut    int
	undoCopied int

	// onFound, when not nil, is told each finding's span in the content
	// (the tests' reference maps spans back on its own).
	onFound func(lo, hi int, k Kind)

	// Scrubbing state; scrub is false when only scanning.
	scrub   bool
	out     []byte
	src     []byte // the whole input being copied to out
	copied  int    // src[:copied] has been written to out
	base    int    // offset in src of the content (or of its raw form)
	raw     []byte // the content as it came, when what is scanned is its normalised form
	rawJSON bool   // raw is the body of a JSON string, with escapes
	rawPos  int    // walker over raw: raw[:rawPos] normalises to content[:decPos]
	decPos  int
}

// run scans s: a whole text, the content of a JSON string without escapes,
// or the normalised form of either. When scrubbing, s lies at d.base in
// d.src, or stands for d.raw (at d.base) when d.raw is not nil.
//
// Most text holds nothing to find, so run looks at it eight bytes at a time
// (fastChunk) and steps through it byte by byte (step) only where a finding
// may start.
//
// When raw is set, s is a text as it came, and run checks its non-ASCII
// characters as it goes: if one must be normalised (see plainNonASCII), it
// stops and returns false, and the caller scans the normalised text instead
// and drops what this run found. Otherwise non-ASCII bytes separate words,
// which is how the normalised text would read them.
func (d *detector) run(s []byte, raw bool) bool {
	d.lastEnd, d.tokStart, d.pemSearched, d.bounded, d.fresh = 0, 0, false, false, false
	d.runs = [2]span{{-1, -1}, {-1, -1}}
	d.rawPos, d.decPos = 0, 0
	n := len(s)
	tok := 0 // start of the token in progress
	// When raw, the characters starting before chk were checked; so were
	// those of the chunks without non-ASCII bytes, which nonASCII picks out.
	chk := 0
	nonASCII := uint32(0)
	if raw {
		nonASCII = 0xff << 16
	}
	for j := 0; j < n; {
		var v uint32
		w := 8
		if j+8 <= n {
			c := s[j : j+8 : j+8]
			v = chunkTab[c[0]] | chunkTab[c[1]]<<1 | chunkTab[c[2]]<<2 | chunkTab[c[3]]<<3 |
				chunkTab[c[4]]<<4 | chunkTab[c[5]]<<5 | chunkTab[c[6]]<<6 | chunkTab[c[7]]<<7
		} else {
			// The tail, as if followed by separators: the end ends the
			// last token.
			w = n - j
			for k, c := range s[j:] {
				v |= chunkTab[c] << k
			}
		}
		if v&nonASCII != 0 && chk < j+w {
			if chk = plainNonASCII(s, max(chk, j), j+w); chk < 0 {
				return false
			}
		}
		if t := fastChunk(s, j, tok, uint8(v), uint8(v>>8)); t >= 0 {
			tok = t
			j += w
			continue
		}
		limit := j + w
		j = d.examine(s, tok, limit)
		tok = j
		if nonASCII != 0 && j > limit && chk < j {
			// examine moved past bytes the chunks did not see: usually a
			// few ASCII bytes, which one word shows.
			if j-limit > 8 || limit+8 > n || binary.LittleEndian.Uint64(s[limit:])&msb&(1<<(8*(j-limit))-1) != 0 {
				if chk = plainNonASCII(s, max(chk, limit), j); chk < 0 {
					return false
				}
			}
		}
	}
	return true
}

// fastChunk looks at the eight bytes at s[j:] through two masks: t marks
// the bytes of the token alphabet [A-Za-z0-9+/=_-], a the bytes that call
// for the detectors (digits, '@', and + / = _ -). Given tok, the start of the
// token in progress, it returns the start of the token in progress after the
// chunk, or -1 when the chunk must be stepped through.
//
// A finding always holds a digit, an '@' or a symbol of the token alphabet,
// except in a token of letters only, which may be a high-entropy secret
// (32 letters or more), an AWS key id (AKIA…) or a JWT (eyJ…).
func fastChunk(s []byte, j, tok int, t, a uint8) int {
	if a != 0 {
		return -1
	}
	if t == 0xff { // the token goes on
		return tok
	}
	// Only the token that ends first in the chunk can be long; the others
	// lie inside it.
	if l := j + bits.TrailingZeros8(^t) - tok; l >= attnToken && (l >= minTokenLen || s[tok] == 'A' || s[tok] == 'e') {
		return -1
	}
	return j + 8 - bits.LeadingZeros8(^t)
}

// attnToken is the shortest token of letters only that may be a finding:
// a JWT's first segment (eyJ + at least 7).
const attnToken = 10

// chunkTab has bit 0 set for the token alphabet, bit 8 for the bytes that
// call for the detectors (digits, '@', and the token alphabet's symbols) and
// bit 16 for the bytes that are not ASCII.
var chunkTab = func() (t [256]uint32) {
	for c := 0; c < 256; c++ {
		f := props[c]
		if f&fToken != 0 {
			t[c] |= 1
		}
		if f&fDigit != 0 || c == '@' || f&(fToken|fAlnum) == fToken {
			t[c] |= 1 << 8
		}
		if c >= utf8.RuneSelf {
			t[c] |= 1 << 16
		}
	}
	return t
}()

// step runs the detectors from s[i], which starts a token, through limit
// and on to the end of the token in progress there: it stops after a byte
// outside the token alphabet (which ends the token), or at the end of s,
// and returns where it stopped.
func (d *detector) step(s []byte, i, limit int) int {
	n := len(s)
	for i < limit || (i < n && props[s[i-1]]&fToken != 0) {
		c := s[i]
		f := props[c]
		switch {
		case f&fAlnum != 0:
			i = d.alnum(s, i)
		case c == '-':
			if i+4 < n && s[i+4] == '-' {
				if e := d.pem(s, i); e > i {
					d.found(s, i, e, Secret)
					i = e
					continue
				}
			}
			i++
		case c == '@':
			if e := d.email(s, i); e > i {
				i = e
				continue
			}
			d.boundary(s, i)
			i++
		case f&fToken == 0:
			d.boundary(s, i)
			i++
		default: // + / = _
			i++
		}
	}
	if i >= n {
		d.boundary(s, n)
	}
	return i
}

// span is a half-open range of offsets.
type span struct{ lo, hi int }

// enter prepares to scan the raw bytes of the JSON string whose content
// starts at d.src[start] (when scrubbing).
func (d *detector) enter(start int) {
	d.lastEnd, d.tokStart, d.pemSearched, d.bounded = 0, 0, false, true
	d.base, d.fresh = start, true
	d.runs = [2]span{{-1, -1}, {-1, -1}}
}

// undo forgets what was found since enter.
func (d *detector) undo() {
	if !d.fresh {
		d.set, d.out, d.copied = d.undoSet, d.out[:d.undoOut], d.undoCopied
	}
	d.fresh = false
}

// boundary ends the pending token at i, a byte outside the token alphabet
// (or the end of the content).
func (d *detector) boundary(s []byte, i int) {
	if i-d.tokStart >= minTokenLen {
		d.token(s, d.tokStart, i)
	}
	d.tokStart = i + 1
}

// token takes s[a:b], a maximal run of the token alphabet, as a secret when
// it is long enough and its entropy is high enough.
func (d *detector) token(s []byte, a, b int) {
	if b-a >= minTokenLen && highEntropy(s[a:b]) {
		d.found(s, a, b, Secret)
	}
}

// found takes s[ms:me] as a finding of kind k. The pending token before it,
// cut short by the finding, is judged on its own first.
func (d *detector) found(s []byte, ms, me int, k Kind) {
	if d.fresh {
		d.fresh = false
		d.undoSet, d.undoOut, d.undoCopied = d.set, len(d.out), d.copied
	}
	if ms-d.tokStart >= minTokenLen {
		d.token(s, d.tokStart, ms)
	}
	d.set |= Set(k)
	if d.onFound != nil {
		d.onFound(ms, me, k)
	}
	if d.scrub {
		d.emit(d.srcPos(ms), d.srcPos(me), k.Redaction(), "")
	}
	d.lastEnd, d.tokStart = me, me
}

// emit copies the source up to rs, then the marker (between quote and quote),
// and skips the source up to re.
func (d *detector) emit(rs, re int, marker, quote string) {
	d.out = append(d.out, d.src[d.copied:rs]...)
	d.out = append(d.out, quote...)
	d.out = append(d.out, marker...)
	d.out = append(d.out, quote...)
	d.copied = re
}

// srcPos maps an offset in the content being scanned to an offset in d.src.
// Offsets only grow within one content, so the walker over the characters
// of raw moves forward only.
func (d *detector) srcPos(p int) int {
	if d.raw == nil {
		return d.base + p
	}
	for d.decPos < p {
		var size int
		if d.rawJSON {
			_, size = jsonUnit(d.raw, d.rawPos)
		} else {
			_, size = textUnit(d.raw, d.rawPos)
		}
		d.rawPos += size
		d.decPos++
	}
	return d.base + d.rawPos
}

// ScanText reports the kinds of sensitive data found in b, which may be any
// bytes: a path, a query value, a header, a response body that is not JSON,
// server-sent events, a log line. Characters are read as described in the
// package documentation (Unicode digits, spaces and dashes, NFKC); invalid
// UTF-8 is tolerated and separates words.
func ScanText(b []byte) Set {
	var d detector
	if !d.run(b, true) {
		d = detector{}
		d.scanNormalised(b)
	}
	return d.set
}

// ScrubText appends to dst a copy of b in which every finding is replaced by
// its redaction marker, and reports the kinds found. Bytes outside findings,
// invalid UTF-8 included, are copied unchanged. dst must not overlap b.
func ScrubText(dst, b []byte) ([]byte, Set) {
	d := detector{scrub: true, out: dst, src: b}
	if !d.run(b, true) {
		d = detector{scrub: true, out: dst, src: b}
		d.scanNormalised(b)
	}
	return append(d.out, b[d.copied:]...), d.set
}
