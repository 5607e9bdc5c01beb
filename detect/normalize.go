package detect

import (
	"encoding/binary"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

//go:generate go run gen_normtab.go

// How a non-ASCII character reads to the detectors. The detectors work on
// bytes: content holding a character that reads as something else than a
// separator is first normalised, one byte per character, and these two
// bytes stand for what has no ASCII reading. (In raw text the byte uDash can
// only be a stray byte of invalid UTF-8; it sends the text to be normalised,
// where it reads as uOther.)
const (
	uOther = 0x80 // any other character: it separates words
	uDash  = 0x81 // a Unicode dash: a group separator in card numbers and SSNs, nothing else
)

// normRange maps the runes lo..hi to the bytes to, to+step, … (step 0 or 1).
type normRange struct {
	lo, hi   uint32
	to, step byte
}

// normRune returns how r reads to the detectors: itself when it is ASCII;
// otherwise its NFKC form when that is one ASCII character, the value of a
// decimal digit (category Nd, after NFKC), uDash for a Unicode dash (U+2010
// to U+2015, U+2212, and what NFKC maps onto them), uOther for anything
// else. The table is generated from golang.org/x/text/unicode/norm and
// package unicode (gen_normtab.go); TestNormTable checks it against them.
func normRune(r rune) byte {
	if uint32(r) < uint32(len(normLow)) {
		return normLow[r]
	}
	b := uint32(r) >> 8
	if b >= uint32(len(normBlocks))*64 || normBlocks[b>>6]&(1<<(b&63)) == 0 {
		return uOther
	}
	lo, hi := 0, len(normRanges)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if normRanges[m].hi < uint32(r) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(normRanges) {
		if g := &normRanges[lo]; g.lo <= uint32(r) {
			return g.to + g.step*byte(uint32(r)-g.lo)
		}
	}
	return uOther
}

// normLow holds normRune for the runes below U+0800 (ASCII, Latin, Greek,
// Cyrillic, Hebrew, Arabic…), which need no search.
var normLow = func() (t [0x800]byte) {
	for r := range t {
		t[r] = uOther
		if r < utf8.RuneSelf {
			t[r] = byte(r)
		}
	}
	for _, g := range normRanges {
		for r := g.lo; r <= g.hi && r < uint32(len(t)); r++ {
			t[r] = g.to + g.step*byte(r-g.lo)
		}
	}
	return t
}()

// plainNonASCII reports whether every character of s[k:to], which starts
// at a character boundary, reads as ASCII itself or as uOther, and returns
// the index after the last character it looked at (to, or up to three bytes
// past it). It returns -1 when a character must be normalised: it reads as
// a digit, a space, a dash or another ASCII character, or it is the stray
// byte uDash.
func plainNonASCII(s []byte, k, to int) int {
	for k < to {
		for k+8 <= to && binary.LittleEndian.Uint64(s[k:])&msb == 0 {
			k += 8
		}
		if k >= to {
			break
		}
		c := s[k]
		if c < utf8.RuneSelf {
			k++
			continue
		}
		r, size := utf8.DecodeRune(s[k:])
		if size == 1 {
			if c == uDash {
				return -1
			}
		} else if normRune(r) != uOther {
			return -1
		}
		k += size
	}
	return k
}

// textUnit returns the character at raw[k] of a text and its length:
// invalid UTF-8 reads one byte at a time, as utf8.RuneError.
func textUnit(raw []byte, k int) (rune, int) {
	if c := raw[k]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRune(raw[k:])
}

// jsonUnit returns the character at raw[k] of the body of a valid JSON
// string and its length in raw: a byte, a UTF-8 sequence, an escape, or two
// \u escapes that form a surrogate pair. A lone surrogate reads as
// utf8.RuneError, as in encoding/json.
func jsonUnit(raw []byte, k int) (rune, int) {
	c := raw[k]
	if c >= utf8.RuneSelf {
		return utf8.DecodeRune(raw[k:])
	}
	if c != '\\' {
		return rune(c), 1
	}
	switch raw[k+1] {
	case 'u':
		r := hex4(raw[k+2:])
		if !utf16.IsSurrogate(r) {
			return r, 6
		}
		if r < 0xdc00 && k+12 <= len(raw) && raw[k+6] == '\\' && raw[k+7] == 'u' {
			if r2 := hex4(raw[k+8:]); r2 >= 0xdc00 && r2 <= 0xdfff {
				return utf16.DecodeRune(r, r2), 12
			}
		}
		return utf8.RuneError, 6
	case 'b':
		return '\b', 2
	case 'f':
		return '\f', 2
	case 'n':
		return '\n', 2
	case 'r':
		return '\r', 2
	case 't':
		return '\t', 2
	}
	return rune(raw[k+1]), 2 // " \ /
}

// hex4 decodes the four hexadecimal digits at b (already validated).
func hex4(b []byte) rune {
	return rune(unhex(b[0])<<12 | unhex(b[1])<<8 | unhex(b[2])<<4 | unhex(b[3]))
}

// normJSON appends to buf the content of raw, the body of a valid JSON
// string, one byte per character (see jsonUnit) as normRune reads it, so
// that offsets map back to raw through jsonUnit.
func normJSON(buf, raw []byte) []byte {
	for k := 0; k < len(raw); {
		p := asciiEnd(raw, k)
		for p < len(raw) && raw[p] < utf8.RuneSelf && raw[p] != '\\' {
			p++
		}
		buf = append(buf, raw[k:p]...)
		if k = p; k == len(raw) {
			break
		}
		r, size := jsonUnit(raw, k)
		buf = append(buf, normRune(r))
		k += size
	}
	return buf
}

// normText appends to buf the text raw, one byte per character (see
// textUnit) as normRune reads it.
func normText(buf, raw []byte) []byte {
	for k := 0; k < len(raw); {
		p := asciiEnd(raw, k)
		for p < len(raw) && raw[p] < utf8.RuneSelf {
			p++
		}
		buf = append(buf, raw[k:p]...)
		if k = p; k == len(raw) {
			break
		}
		r, size := textUnit(raw, k)
		buf = append(buf, normRune(r))
		k += size
	}
	return buf
}

// asciiEnd skips ASCII bytes other than '\\' from b[k], eight at a time,
// and returns where it stopped: at most 7 bytes before the first other byte.
func asciiEnd(b []byte, k int) int {
	for k+8 <= len(b) {
		x := binary.LittleEndian.Uint64(b[k:])
		if (x|((x^bslas)-lsb))&msb != 0 {
			break
		}
		k += 8
	}
	return k
}

// textBufs holds the buffers for normalised texts.
var textBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// scanNormalised runs the detectors over the normalised form of the text b,
// mapping findings back to b.
func (d *detector) scanNormalised(b []byte) {
	bp := textBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	if cap(buf) < len(b) {
		buf = make([]byte, 0, len(b)) // the normalised text is never longer
	}
	buf = normText(buf, b)
	d.raw, d.rawJSON, d.base = b, false, 0
	d.run(buf, false)
	d.raw = nil
	if cap(buf) <= poolMaxBuf {
		*bp = buf[:0]
	}
	textBufs.Put(bp) // with the buffer it held if the text's was too big to keep
}
