package detect

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// SWAR constants for scanning eight string bytes at a time: a byte is
// special when it is below 0x20, a quote, a backslash or not ASCII. In
// ((x - space) | ((x ^ quote) - lsb) | ((x ^ bslas) - lsb) | x) & msb the
// lowest flagged byte is always a special one (borrows only run upwards).
const (
	lsb   = 0x0101010101010101
	msb   = 0x8080808080808080
	quote = '"' * lsb
	bslas = '\\' * lsb
	space = ' ' * lsb
)

// minFinding is the length of the shortest possible finding ("a@b.co").
const minFinding = 6

// strTab classifies bytes for str, eight at a time: bit 0 marks the token
// alphabet, bit 8 the bytes that call for the detectors (digits, '@', and
// the symbols of the token alphabet), bit 16 the bytes a string scan must
// stop at: '"', '\\', control bytes and non-ASCII bytes.
var strTab = func() (t [256]uint32) {
	for c := 0; c < 256; c++ {
		t[c] = chunkTab[c]
		if c == '"' || c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			t[c] |= 1 << 16
		}
	}
	return t
}()

// str validates the string starting with the quote at doc[i], runs the
// detectors over its content and returns the index after the closing quote.
func (p *parser) str(i int) (int, error) {
	doc := p.doc
	start := i + 1
	// Short strings (keys, ids, words) are common: find their end with a
	// cheaper scan of at most 16 bytes, then look at them only when a finding
	// fits (6 bytes, or 11 without an '@').
	if start+16 <= len(doc) {
		x := binary.LittleEndian.Uint64(doc[start:])
		m := ((x - space) | ((x ^ quote) - lsb) | ((x ^ bslas) - lsb) | x) & msb
		k := 0
		if m == 0 {
			x = binary.LittleEndian.Uint64(doc[start+8:])
			m = ((x - space) | ((x ^ quote) - lsb) | ((x ^ bslas) - lsb) | x) & msb
			k = 8
		}
		if m != 0 {
			end := start + k + bits.TrailingZeros64(m)>>3
			if doc[end] == '"' {
				if l := end - start; l >= minFinding && (l >= 11 || bytes.IndexByte(doc[start:end], '@') >= 0) {
					d := &p.det
					d.base = start
					d.run(doc[start:end], false) // ASCII, nothing to check
				}
				return end + 1, nil
			}
		}
	}
	return p.longStr(start)
}

// longStr validates the string whose content starts at doc[start] and runs
// the detectors over it, in one pass: eight bytes at a time, strTab tells
// where the string may end and whether the detectors need to look (see
// detector.run). The detectors work on the raw bytes until a backslash shows
// that the string has escapes, or a non-ASCII character that must be
// normalised (a digit, a space, a dash…) shows up; then what they found in
// it is undone, and once the string is validated they run again over its
// decoded, normalised content. Other non-ASCII characters separate words,
// as they would in the normalised content.
func (p *parser) longStr(start int) (int, error) {
	doc := p.doc
	s := doc[start:] // the content, then the rest of the document
	m := len(s)
	d := &p.det
	d.enter(start)
	tok := 0  // start of the token in progress
	done := 0 // s[:done] has been examined
	for j := 0; ; {
		var v uint32
		if j+8 <= m {
			c := s[j : j+8 : j+8]
			v = strTab[c[0]] | strTab[c[1]]<<1 | strTab[c[2]]<<2 | strTab[c[3]]<<3 |
				strTab[c[4]]<<4 | strTab[c[5]]<<5 | strTab[c[6]]<<6 | strTab[c[7]]<<7
			if v&0xffff00 == 0 && j >= done {
				// The common case: plain bytes, none calling the detectors.
				if t := uint8(v); t != 0xff {
					if l := j + bits.TrailingZeros8(^t) - tok; l >= attnToken && (l >= minTokenLen || s[tok] == 'A' || s[tok] == 'e') {
						done = d.examine(s, tok, j+8)
						tok = done
					} else {
						tok = j + 8 - bits.LeadingZeros8(^t)
					}
				}
				j += 8
				continue
			}
		} else {
			for k, c := range s[j:] {
				v |= strTab[c] << k
			}
			v |= 0xff << 16 << (m - j) // the end of the document stops the scan
		}
		// k plain bytes, then (when k < 8) a byte to stop at.
		k := 8
		if stop := uint8(v >> 16); stop != 0 {
			k = bits.TrailingZeros8(stop)
		}
		if j+k > done {
			keep := uint8(1<<k - 1) // the stop byte and those after it end tokens
			if j < done {
				// Bytes before done were examined already, and the one
				// just before it ended a token.
				keep &^= uint8(1<<(done-j) - 1)
			}
			if t := fastChunk(s, j, tok, uint8(v)&keep, uint8(v>>8)&keep); t >= 0 {
				tok = t
			} else {
				done = d.examine(s, tok, j+k)
				tok = done
			}
		}
		if k == 8 {
			j += 8
			continue
		}
		j += k
		if j >= m {
			return 0, unexpectedEOF(doc)
		}
		switch c := s[j]; {
		case c == '"':
			if j >= done && j-tok >= minTokenLen {
				d.tokStart = tok
				d.boundary(s, j)
			}
			return start + j + 1, nil
		case c == '\\':
			p.escaped = true
			return p.restStr(start, start+j)
		case c < 0x20:
			return 0, badChar(doc, start+j, "in string literal")
		default: // not ASCII: a separator for the detectors, unless it must be normalised
			r, size := utf8.DecodeRune(s[j:])
			if r == utf8.RuneError && size <= 1 {
				return 0, invalidUTF8(doc, start+j, "in string literal")
			}
			if normRune(r) != uOther {
				return p.restStr(start, start+j)
			}
			if j+size > done {
				if j >= done && j-tok >= minTokenLen {
					d.tokStart = tok
					d.boundary(s, j)
				}
				done, tok = j+size, j+size
			}
			j += size
		}
	}
}

// restStr is longStr's slow path, from doc[j] on, where the string whose
// content starts at doc[start] turned out to need decoding: it undoes what
// the detectors found in the raw bytes, validates the rest of the string and
// runs the detectors over its normalised content. It returns the index
// after the closing quote.
func (p *parser) restStr(start, j int) (int, error) {
	p.det.undo()
	end, err := p.scanStr(j)
	if err != nil {
		return 0, err
	}
	p.detectDecoded(start, end)
	return end + 1, nil
}

// scanStr validates the rest of a string from doc[j], a backslash or the
// start of a character, and returns the index of its closing quote.
func (p *parser) scanStr(j int) (int, error) {
	doc := p.doc
	n := len(doc)
	for {
		if j < n && doc[j] == '\\' {
			p.escaped = true
			e, err := escapeEnd(doc, j)
			if err != nil {
				return 0, err
			}
			j = e
		}
		for j+8 <= n {
			x := binary.LittleEndian.Uint64(doc[j:])
			if m := ((x - space) | ((x ^ quote) - lsb) | ((x ^ bslas) - lsb) | x) & msb; m != 0 {
				j += bits.TrailingZeros64(m) >> 3
				break
			}
			j += 8
		}
		for j < n && doc[j] >= 0x20 && doc[j] < utf8.RuneSelf && doc[j] != '"' && doc[j] != '\\' {
			j++
		}
		if j >= n {
			return 0, unexpectedEOF(doc)
		}
		switch c := doc[j]; {
		case c == '"':
			return j, nil
		case c == '\\':
			continue
		case c < 0x20:
			return 0, badChar(doc, j, "in string literal")
		default:
			r, size := utf8.DecodeRune(doc[j:])
			if r == utf8.RuneError && size <= 1 {
				return 0, invalidUTF8(doc, j, "in string literal")
			}
			j += size
		}
	}
}

// escapeEnd validates the escape sequence at doc[j] ('\\') and returns the
// index after it.
func escapeEnd(doc []byte, j int) (int, error) {
	if j+1 >= len(doc) {
		return 0, unexpectedEOF(doc)
	}
	switch doc[j+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return j + 2, nil
	case 'u':
		for k := j + 2; k < j+6; k++ {
			if k >= len(doc) {
				return 0, unexpectedEOF(doc)
			}
			if unhex(doc[k]) < 0 {
				return 0, badChar(doc, k, `in \u hexadecimal character escape`)
			}
		}
		return j + 6, nil
	}
	return 0, badChar(doc, j+1, "in string escape code")
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// detectDecoded runs the detectors over the normalised content of the
// valid string doc[start:end].
func (p *parser) detectDecoded(start, end int) {
	raw := p.doc[start:end]
	p.buf = normJSON(p.buf[:0], raw)
	d := &p.det
	d.base, d.raw, d.rawJSON = start, raw, true
	d.run(p.buf, false)
	d.raw = nil
}
