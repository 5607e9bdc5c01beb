package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
)

// refScrub is the reference the fast paths must agree with: the detectors
// stepped through the reference normalisation of s (refNormalise) byte by
// byte, with no skipping, each finding mapped back to the characters it
// came from. (The fast path scans text that needs no normalisation as it
// is; the two differ only in how far a PEM END line is looked for, 64 KiB
// of bytes or of characters, which no test here comes near.)
func refScrub(dst, s []byte) ([]byte, Set) {
	nb, starts := refNormalise(s)
	var spans []span
	var kinds []Kind
	d := detector{onFound: func(lo, hi int, k Kind) {
		spans, kinds = append(spans, span{lo, hi}), append(kinds, k)
	}}
	d.runs = [2]span{{-1, -1}, {-1, -1}}
	d.step(nb, 0, len(nb))
	prev := 0
	for k, sp := range spans {
		dst = append(dst, s[prev:starts[sp.lo]]...)
		dst = append(dst, kinds[k].Redaction()...)
		prev = starts[sp.hi]
	}
	return append(dst, s[prev:]...), d.set
}

// refNumberIsCard is the reference for numberIsCard, through math/big: the
// number's exact value is an integer of 13–19 digits, the first 2–6, that
// passes the Luhn check.
func refNumberIsCard(num string) bool {
	mant, exp, _ := strings.Cut(strings.ToLower(strings.TrimPrefix(num, "-")), "e")
	e := 0
	if exp != "" {
		v, err := strconv.Atoi(exp)
		if err != nil || v > len(mant)+20 || v < -len(mant)-20 {
			// The mantissa has too few digits to bring the value
			// back to 13–19 integer digits.
			return false
		}
		e = v
	}
	r, ok := new(big.Rat).SetString(mant)
	if !ok {
		panic("bad number " + num)
	}
	p := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(max(e, -e))), nil))
	if e >= 0 {
		r.Mul(r, p)
	} else {
		r.Quo(r, p)
	}
	if !r.IsInt() {
		return false
	}
	digits := r.Num().String()
	if len(digits) < 13 || len(digits) > 19 || digits[0] < '2' || digits[0] > '6' {
		return false
	}
	sum := 0
	for k := 0; k < len(digits); k++ {
		v := int(digits[len(digits)-1-k] - '0')
		if k%2 == 1 {
			v = v * 2 % 9
			if v == 0 && digits[len(digits)-1-k] == '9' {
				v = 9
			}
		}
		sum += v
	}
	return sum%10 == 0
}

// checkTextAgainstRef fails when ScanText or ScrubText disagree with the
// reference, or when scrubbing is not idempotent.
func checkTextAgainstRef(t *testing.T, in []byte) {
	t.Helper()
	want, wantSet := refScrub(nil, in)
	got, gotSet := ScrubText(nil, in)
	if !bytes.Equal(got, want) || gotSet != wantSet {
		t.Fatalf("ScrubText(%q)\n = %q, %v\nreference %q, %v", in, got, gotSet, want, wantSet)
	}
	if s := ScanText(in); s != wantSet {
		t.Fatalf("ScanText(%q) = %v, reference %v", in, s, wantSet)
	}
	again, left := ScrubText(nil, got)
	if left != 0 || !bytes.Equal(again, got) {
		t.Fatalf("ScrubText is not idempotent on %q: %q then %q (%v)", in, got, again, left)
	}
}

// snippets are fragments that are, or nearly are, findings.
var snippets = []string{
	"4532015112830366", "4532-0151-1283-0366", "4532 0151 1283 0366", "3782 822463 10005",
	"3056-930902-5904", "1234-5678-9012-3456", "4222222222222", "453201511283036",
	"123-45-6789", "123-45-678", "2024-01-15", "555-123-4567", "12:30:45",
	"john.doe@example.com", "a@b.co", "x@localhost", "@@", "a.b@c-d.e.org",
	testAWS, "ASIAIOSFODNN7EXAMPLE", testGHP, "github_pat_" + strings.Repeat("a1_", 9),
	"xoxb-1234567890-abc", "sk-proj-" + strings.Repeat("x9", 12), testJWT, "eyJhbGciOiJub25lIn0.e30.",
	"-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n",
	testEntropy, "550e8400-e29b-41d4-a716-446655440000", "9f86d081884c7d659a2feaa0c55ad015",
	"é", "\xff", "\u00e9t\u00e9", "\\n", "\\u0034",
	// The Unicode forms.
	"４５３２０１５１１２８３０３６６", "٤٥٣٢٠١٥١١٢٨٣٠٣٦٦", "4532\u00a00151\u00a01283\u00a00366", "4532\u202f0151 1283\u20070366",
	"4532–0151-1283—0366", "453−201511283036−6", "4532.0151.1283.0366", "4532_0151_1283_0366", "4532/0151/1283/0366",
	"4 5 3 2 0 1 5 1 1 2 8 3 0 3 6 6", "123–45–6789", "123 45 6789", "１２３－４５－６７８９", "123\u00a045\u00a06789",
	"ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", "ＡＫＩＡ" + "IOSFODNN7EXAMPLE", "𝟒𝟓𝟑𝟐", "12345678-1234-5678-9012-123456789012",
	"\x81", "\u2013", "\u00a0", "\uff14", "\ufeff",
}

const textAlphabet = "0123456789012345678901234567890123456789abcdefghijklmnopqrstuvwxyzAEGSXKIJ    ---..@_+/=:,\n\"\\"

// unicodeAlphabet holds characters that read as digits, separators and
// letters, and some that read as nothing.
var unicodeAlphabet = []string{"４", "٣", "७", "𝟗", "³", "\u00a0", "\u202f", "\u2007", "\u3000", "‐", "–", "—", "−", "﹘", "﹣", "－",
	"Ａ", "ｅ", "＠", "．", "＿", "／", "é", "中", "😀", "\u00ad", "\u200b"}

// randomText builds a string of random bytes, Unicode characters and
// snippets.
func randomText(r *rand.Rand) string {
	var b strings.Builder
	for n := r.IntN(12); n >= 0; n-- {
		switch r.IntN(3) {
		case 0:
			b.WriteString(snippets[r.IntN(len(snippets))])
		default:
			for k := r.IntN(20); k >= 0; k-- {
				if r.IntN(8) == 0 {
					b.WriteString(unicodeAlphabet[r.IntN(len(unicodeAlphabet))])
				} else {
					b.WriteByte(textAlphabet[r.IntN(len(textAlphabet))])
				}
			}
		}
	}
	return b.String()
}

func TestTextMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for k := 0; k < 20000; k++ {
		checkTextAgainstRef(t, []byte(randomText(r)))
	}
	// Every snippet, and every pair, on its own and at a chunk boundary.
	for _, a := range snippets {
		for _, b := range snippets {
			for _, pad := range []string{"", " ", "x", "1234567", "- "} {
				checkTextAgainstRef(t, []byte(pad+a+b))
				checkTextAgainstRef(t, []byte(pad+a+" "+b))
			}
		}
	}
}

// refScrubJSON is the reference for ScanJSON and ScrubJSON on a valid
// document: the tokens of doc as encoding/json decodes them, with every string
// and key scrubbed by refScrub and every number holding a card replaced.
func refScrubJSON(t *testing.T, doc []byte) ([]any, Set) {
	t.Helper()
	var set Set
	toks := jsonTokens(t, doc)
	for k, tok := range toks {
		switch v := tok.(type) {
		case string:
			out, s := refScrub(nil, []byte(v))
			toks[k], set = string(out), set|s
		case json.Number:
			if refNumberIsCard(string(v)) {
				toks[k], set = CreditCard.Redaction(), set|Set(CreditCard)
			}
		}
	}
	return toks, set
}

func jsonTokens(t *testing.T, doc []byte) []any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var toks []any
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return toks
		}
		if err != nil {
			t.Fatalf("decoding %q: %v", doc, err)
		}
		toks = append(toks, tok)
	}
}

// checkJSONAgainstRef fails when ScanJSON or ScrubJSON disagree with the
// reference on a valid document.
func checkJSONAgainstRef(t *testing.T, doc []byte) {
	t.Helper()
	wantToks, wantSet := refScrubJSON(t, doc)
	set, err := ScanJSON(doc, Options{MaxDepth: 1 << 20})
	if err != nil || set != wantSet {
		t.Fatalf("ScanJSON(%q) = %v, %v; reference %v", doc, set, err, wantSet)
	}
	out, set, err := ScrubJSON(nil, doc, Options{MaxDepth: 1 << 20})
	if err != nil || set != wantSet {
		t.Fatalf("ScrubJSON(%q) = %v, %v; reference %v", doc, set, err, wantSet)
	}
	if got := jsonTokens(t, out); fmt.Sprint(got) != fmt.Sprint(wantToks) {
		t.Fatalf("ScrubJSON(%q)\n = %s\ntokens %q\nreference %q", doc, out, got, wantToks)
	}
}

// randomJSON builds a random document whose strings hold random text,
// sometimes with escapes.
func randomJSON(r *rand.Rand, depth int) string {
	str := func() string {
		s := randomText(r)
		if r.IntN(2) == 0 {
			return jsonString(strings.ToValidUTF8(s, "\uFFFD"))
		}
		// Escape every character that must be, and some that need not be.
		var b strings.Builder
		b.WriteByte('"')
		for _, c := range strings.ToValidUTF8(s, "?") {
			switch {
			case c == '"' || c == '\\':
				b.WriteString(`\` + string(c))
			case c < 0x20 || r.IntN(8) == 0:
				if c > 0xffff {
					hi, lo := utf16.EncodeRune(c)
					fmt.Fprintf(&b, `\u%04x\u%04X`, hi, lo)
				} else {
					fmt.Fprintf(&b, `\u%04x`, c)
				}
			default:
				b.WriteRune(c)
			}
		}
		if r.IntN(20) == 0 {
			b.WriteString(`\ud800`) // a lone surrogate
		}
		b.WriteByte('"')
		return b.String()
	}
	switch k := r.IntN(10); {
	case depth > 4 || k < 4:
		return str()
	case k < 6:
		nums := []string{"4532015112830366", "-4532015112830366", "4532015112830366.5", "0.4532015112830366", "12", "1e9", "4222222222222",
			"4.532015112830366e15", "4532015112830366.0", "45320151128303660e-1", "4532015112830366E+0", "4.5320151128303665e15",
			"1e400", "-1e-999999", "0.0004532015112830366e19", "4532015112830366e2", "4532015112830366e1", "2e15", "0e99999999999999999999"}
		return nums[r.IntN(len(nums))]
	case k < 8:
		var parts []string
		for n := r.IntN(4); n > 0; n-- {
			parts = append(parts, randomJSON(r, depth+1))
		}
		return "[" + strings.Join(parts, ",") + "]"
	default:
		var parts []string
		for n := r.IntN(4); n > 0; n-- {
			parts = append(parts, str()+":"+randomJSON(r, depth+1))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
}

func TestJSONMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for k := 0; k < 5000; k++ {
		checkJSONAgainstRef(t, []byte(randomJSON(r, 0)))
	}
}
