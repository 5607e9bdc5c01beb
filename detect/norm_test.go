package detect

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// refDashes are the dashes of section 4 that NFKC does not map to '-'.
var refDashes = map[rune]bool{0x2010: true, 0x2011: true, 0x2012: true, 0x2013: true, 0x2014: true, 0x2015: true, 0x2212: true, 0xfe58: true}

// refRead is the reference for normRune, written from the rules rather
// than from the table: NFKC; then an ASCII character stands for itself, a
// listed dash for uDash, a decimal digit for its value; anything else is
// uOther.
func refRead(r rune) byte {
	if r < utf8.RuneSelf {
		return byte(r)
	}
	s := norm.NFKC.String(string(r))
	n, size := utf8.DecodeRuneInString(s)
	switch {
	case size != len(s):
		return uOther
	case n >= 0x20 && n < 0x7f:
		return byte(n)
	case refDashes[n]:
		return uDash
	case unicode.IsDigit(n):
		// Unicode puts each set of decimal digits in ten contiguous code
		// points: count back to the set's zero.
		v := byte(0)
		for unicode.IsDigit(n-1) && v < 9 {
			n--
			v++
		}
		return '0' + v%10
	}
	return uOther
}

// TestNormTable checks the generated table against the rules for every
// rune. When it fails after a Go or golang.org/x/text upgrade, run go
// generate in this directory.
func TestNormTable(t *testing.T) {
	if normUnicode != unicode.Version || norm.Version != unicode.Version {
		t.Fatalf("normtab.go is for Unicode %s, package unicode is %s and x/text/unicode/norm %s: run go generate",
			normUnicode, unicode.Version, norm.Version)
	}
	bad := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if got, want := normRune(r), refRead(r); got != want {
			if bad++; bad < 20 {
				t.Errorf("normRune(%U) = %#x, want %#x", r, got, want)
			}
		}
	}
	// A few by hand, to show what the table means.
	for _, tc := range []struct {
		r    rune
		want byte
	}{
		{'٣', '3'}, {'३', '3'}, {'３', '3'}, {'𝟑', '3'}, {'³', '3'}, {'③', '3'},
		{0xa0, ' '}, {0x2007, ' '}, {0x202f, ' '}, {0x3000, ' '},
		{'‐', uDash}, {'–', uDash}, {'—', uDash}, {'−', uDash}, {'﹘', uDash}, {'﹣', '-'}, {'－', '-'},
		{'Ａ', 'A'}, {'ｚ', 'z'}, {'＠', '@'}, {'．', '.'}, {'＿', '_'}, {'／', '/'},
		{'é', uOther}, {'ß', uOther}, {'中', uOther}, {'😀', uOther}, {0xad, uOther}, {0x200b, uOther}, {utf8.RuneError, uOther},
	} {
		if got := normRune(tc.r); got != tc.want {
			t.Errorf("normRune(%q) = %#x, want %#x", tc.r, got, tc.want)
		}
	}
}

// refNormalise is the reference normalisation of a text (json false) or of
// the decoded value of a JSON string (json true: s is already decoded,
// UTF-8): one byte per character as refRead reads it, and where each
// character starts in s.
func refNormalise(s []byte) (out []byte, starts []int) {
	for k := 0; k < len(s); {
		r, size := utf8.DecodeRune(s[k:])
		b := refRead(r)
		if r == utf8.RuneError && size == 1 {
			b = uOther
		}
		out = append(out, b)
		starts = append(starts, k)
		k += size
	}
	return out, append(starts, len(s))
}

func TestPlainNonASCII(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool // needs no normalisation
	}{
		{"", true}, {"plain ascii 4532015112830366", true}, {"Müller é ß 中文 😀", true},
		{"\xff\xfe", true}, {"\xe2\x80", true}, // invalid, not uDash
		{"x\u00a0y", false}, {"４", false}, {"a–b", false}, {"Ａ", false}, {"\x81", false},
	} {
		got := plainNonASCII([]byte(tc.in), 0, len(tc.in)) >= 0
		if got != tc.want {
			t.Errorf("plainNonASCII(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	// A character that straddles the end is looked at whole.
	s := []byte("abcdefg４")
	if got := plainNonASCII(s, 0, 8); got != -1 {
		t.Errorf("plainNonASCII over a straddling character = %d, want -1", got)
	}
	if got := plainNonASCII([]byte(strings.Repeat("é", 5)), 0, 3); got != 4 {
		t.Errorf("plainNonASCII stopped at %d, want 4 (after the second character)", got)
	}
}
