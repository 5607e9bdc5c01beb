package detect

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzScanJSON checks, on any input, that the parser never panics; that it
// accepts exactly what encoding/json.Valid accepts, except for invalid UTF-8
// and nesting deeper than the limit, which it refuses with their sentinels;
// that ScrubJSON and ParseJSON agree with ScanJSON (same errors) and with
// the byte-by-byte reference detectors, write valid JSON, and are
// idempotent; that nothing is found in their output; and that ParseJSON
// decodes what encoding/json decodes.
func FuzzScanJSON(f *testing.F) {
	for _, seed := range []string{
		`{"card": "4532-0151-1283-0366", "n": 4532015112830366}`,
		`["\u0034532015112830366", "john\u0040example.com", "a\\4532015112830366"]`,
		`{"4532015112830366": "123-45-6789", "x": [true, false, null, -1.5e3]}`,
		`"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----"`,
		`["eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "AKIAIOSFODNN7EXAMPLE"]`,
		`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		"\"\xff\"", `[1,]`, `01`, `"\ud800"`, ``,
		`[4.532015112830366e15, 4532015112830366.0, 45320151128303660e-1, 4532015112830366E+0, 4.5320151128303665e15, 1e400, -1e-999999]`,
		`{"４５３２ ０１５１ １２８３ ０３６６": "٤٥٣٢٠١٥١١٢٨٣٠٣٦٦", "n": "१२३–४५–६७८९"}`,
		"[\"4532\u00a00151\u202f1283\u20070366\", \"123\u201345\u20136789\", \"4532\u22120151\u22121283\u22120366\"]",
		`{"\u0034\u0035\u0033\u0032\u00a00151\u00a01283\u00a00366": "\uff11\uff12\uff13\u2014\uff14\uff15\u2014\uff16\uff17\uff18\uff19"}`,
		`["\ud835\udfd2532015112830366", "\uff4a\uff4f\uff48\uff4e\uff20example.com", "45320151-1283-0366-0000-123456789012"]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		set, err := ScanJSON(doc, Options{})
		out, set2, err2 := ScrubJSON(nil, doc, Options{})
		if (err == nil) != (err2 == nil) || set != set2 {
			t.Fatalf("ScanJSON = %v, %v but ScrubJSON = %v, %v", set, err, set2, err2)
		}
		pr, err3 := ParseJSON(nil, doc, Options{Value: true})
		if (err == nil) != (err3 == nil) || err != nil && err.Error() != err3.Error() || pr.Found != set || !bytes.Equal(pr.Scrubbed, out) {
			t.Fatalf("ScanJSON = %v, %v and ScrubJSON %q but ParseJSON = %q, %v, %v", set, err, out, pr.Scrubbed, pr.Found, err3)
		}
		valid, utf := json.Valid(doc), utf8.Valid(doc)
		switch {
		case err == nil:
			if !valid || !utf {
				t.Fatalf("accepted %q: json.Valid %v, utf8.Valid %v", doc, valid, utf)
			}
		case errors.Is(err, ErrTooDeep):
			// Reported at the bracket that goes too deep, whatever follows.
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < DefaultMaxDepth || (doc[se.Offset] != '[' && doc[se.Offset] != '{') ||
				bytes.Count(doc[:se.Offset], []byte("["))+bytes.Count(doc[:se.Offset], []byte("{")) < DefaultMaxDepth {
				t.Fatalf("ErrTooDeep on %q: %v", doc, err)
			}
			return
		case errors.Is(err, ErrInvalidUTF8):
			if utf {
				t.Fatalf("ErrInvalidUTF8 on valid UTF-8 %q", doc)
			}
			return
		default:
			if valid && utf {
				t.Fatalf("refused valid %q: %v", doc, err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Offset < 0 || se.Offset > int64(len(doc)) {
				t.Fatalf("error %v is not a *SyntaxError with an offset in the document", err)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("ScrubJSON(%q) = %q, not valid JSON", doc, out)
		}
		again, left, err := ScrubJSON(nil, out, Options{})
		if err != nil || left != 0 || !bytes.Equal(again, out) {
			t.Fatalf("ScrubJSON(ScrubJSON(%q)) = %q, %v, %v; want %q unchanged", doc, again, left, err, out)
		}
		checkJSONAgainstRef(t, doc)
		checkParseJSON(t, doc)
	})
}

// FuzzScrubText checks, on any input, that ScanText and ScrubText agree with
// the byte-by-byte reference detectors, and that scrubbing is idempotent and
// leaves nothing to find.
func FuzzScrubText(f *testing.F) {
	for _, seed := range []string{
		"pay with 4532 0151 1283 0366 or 3782 822463 10005",
		"ssn:123-45-6789. phone 555-123-4567, date 2024-01-15",
		"mail a.b+tag@sub.example.co.uk. or jo@localhost",
		"Authorization: Bearer " + testJWT,
		"key=AKIAIOSFODNN7EXAMPLE ghp_abc123abc123abc123abc123abc123abc123 sk-proj-Ab12Cd34Ef56Gh78Ij90",
		testPEM, "-----BEGIN PRIVATE KEY-----\nMIIEvQ",
		testEntropy + " 550e8400-e29b-41d4-a716-446655440000",
		"data: {\"n\": 4532015112830366}\n\n", "\xff\xfe 4532015112830366", "",
		"pay ４５３２ ０１５１ １２８３ ０３６６ or ٤٥٣٢٠١٥١١٢٨٣٠٣٦٦", "ssn 123–45–6789, 123 45 6789, 123\u00a045\u00a06789",
		"4532\u00a00151\u202f1283\u20070366 4532−0151−1283−0366 4532.0151.1283.0366", "\x81 4532\x810151\x811283\x810366",
		"ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ ＡＫＩＡＩＯＳＦＯＤＮＮ７ＥＸＡＭＰＬＥ", "/users/4532015112830366?card=4532%200151",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkTextAgainstRef(t, b)
	})
}

// FuzzNumber checks, on any JSON number, that the card check agrees with
// the math/big reference, and that Int64 is exact where it claims to be.
func FuzzNumber(f *testing.F) {
	for _, seed := range []string{
		"4532015112830366", "4.532015112830366e15", "4532015112830366.0", "45320151128303660e-1", "4532015112830366E+0",
		"4.5320151128303665e15", "1e400", "-1e-999999", "0.0004532015112830366e19", "-9223372036854775808", "0",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, num string) {
		if !json.Valid([]byte(num)) || strings.TrimSpace(num) != num || num[0] != '-' && !isDigit(num[0]) {
			return // not a number, or one with spaces around it
		}
		if got, want := numberIsCard([]byte(num)), refNumberIsCard(num); got != want {
			t.Fatalf("numberIsCard(%s) = %v, reference %v", num, got, want)
		}
		if i, ok := Number(num).Int64(); ok {
			mant, _, _ := strings.Cut(strings.ToLower(num), "e")
			if strings.Trim(mant, "-0.") == "" {
				if i != 0 {
					t.Fatalf("Number(%s).Int64() = %d, want 0", num, i)
				}
				return // big.Rat refuses zero with a huge exponent
			}
			r, _ := new(big.Rat).SetString(strings.ToLower(num))
			if r == nil || !r.IsInt() || r.Num().Int64() != i || !r.Num().IsInt64() {
				t.Fatalf("Number(%s).Int64() = %d, true; exact value %v", num, i, r)
			}
		}
	})
}
