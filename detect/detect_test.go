package detect

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

// Sample secrets used across the tests. None of them is a live credential.
const (
	testJWT     = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	testGHP     = "ghp_" + "abc123abc123abc123abc123abc123abc123" // low entropy: found by its form
	testAWS     = "AKIA" + "IOSFODNN7EXAMPLE"
	testEntropy = "q8Zr+T3vX/p1Lk9Wm2Yb7Nc4Hd6Jf0Gs5Qa" // 35 chars, ~5 bits per char
	testPEMBody = "MIIEowIBAAKCAQEAx\nK3nq\n"
	testPEM     = "-----BEGIN RSA PRIVATE KEY-----\n" + testPEMBody + "-----END RSA PRIVATE KEY-----"
)

type detectCase struct {
	name string
	in   string
	want Set
	out  string // scrubbed; "" means unchanged
}

func set(kinds ...Kind) Set {
	var s Set
	for _, k := range kinds {
		s |= Set(k)
	}
	return s
}

var (
	cc  = CreditCard.Redaction()
	ssn = SSN.Redaction()
	em  = Email.Redaction()
	sec = Secret.Redaction()
)

// detectCases holds text-level cases; each also runs inside a JSON string.
var detectCases = []detectCase{
	// Credit cards: the brief's examples.
	{"card dashes", "4532-0151-1283-0366", set(CreditCard), cc},
	{"card contiguous", "4532015112830366", set(CreditCard), cc},
	{"card spaces", "4532 0151 1283 0366", set(CreditCard), cc},
	{"amex grouped", "3782 822463 10005", set(CreditCard), cc},
	{"amex contiguous", "378282246310005", set(CreditCard), cc},
	{"diners grouped", "3056 930902 5904", set(CreditCard), cc},
	{"diners dashes", "3056-930902-5904", set(CreditCard), cc},
	{"card fails luhn", "1234-5678-9012-3456", 0, ""},
	{"card one digit groups", "1 2 3 4 5 6 7 8 9 0 1 2 3", 0, ""},
	{"card glued letter left", "x4532015112830366", 0, ""},
	{"card glued digit right", "45320151128303661", 0, ""},
	{"card glued letter right", "4532015112830366x", 0, ""},
	{"card in punctuation", "card:4532015112830366,", set(CreditCard), "card:" + cc + ","},
	// More card edges.
	{"visa 13 digits", "4222222222222", set(CreditCard), cc},
	{"19 digits", "4532015112830366005", set(CreditCard), cc},
	{"20 digits passing luhn", "45320151128303660000", 0, ""},
	{"12 digits", "453201511283", 0, ""},
	{"card last digit changed", "4532015112830367", 0, ""},
	{"mixed separators", "4532-0151 1283-0366", 0, ""},
	{"double space", "4532  0151  1283  0366", 0, ""},
	{"first group of 3", "453 2015 1128 30366", set(CreditCard), cc},
	{"grouped glued left", "x4532 0151 1283 0366", 0, ""},
	{"grouped glued right", "4532 0151 1283 0366x", 0, ""},
	{"grouped last group too long", "4532 0151 1283 0366123", 0, ""},
	{"grouped then trailing dash", "4532-0151-1283-0366-", set(CreditCard), cc + "-"},
	{"grouped run of 20 digits", "4532 0151 1283 0366 1234", set(CreditCard), cc + " 1234"},
	{"grouped run, card starts at 2nd group", "1111 4532 0151 1283 0366", set(CreditCard), "1111 " + cc},
	{"grouped run, leftmost card wins", "2222 4532 0151 1283 0366", set(CreditCard), cc + " 0366"},
	{"grouped then short digits", "4532 0151 1283 0366 12", set(CreditCard), cc + " 12"},
	{"card after dash", "id-4532015112830366", set(CreditCard), "id-" + cc},
	{"card in sentence", "pay with 4532 0151 1283 0366 today", set(CreditCard), "pay with " + cc + " today"},
	{"ms timestamp failing luhn", "1716912345678", 0, ""},
	// One 13-digit millisecond timestamp in ten passes Luhn; the issuer
	// check (first digit 2–6) keeps it from being taken for a card.
	{"ms timestamp passing luhn", "1716912345675", 0, ""},
	{"us timestamp passing luhn", "1716912345678907", 0, ""},
	{"luhn-valid number of a non-payment issuer", "7532015112830369", 0, ""},
	{"visa 13 digits", "4222222222222", set(CreditCard), cc},
	{"mastercard 2-series", "2223003122003222", set(CreditCard), cc},
	{"discover", "6011111111111117", set(CreditCard), cc},
	// SSNs.
	{"ssn", "123-45-6789", set(SSN), ssn},
	{"ssn in punctuation", "ssn:123-45-6789.", set(SSN), "ssn:" + ssn + "."},
	{"ssn no dashes", "123456789", 0, ""},
	{"phone", "555-123-4567", 0, ""},
	{"date", "2024-01-15", 0, ""},
	{"ssn glued digit right", "123-45-67890", 0, ""},
	{"ssn glued digit left", "0123-45-6789", 0, ""},
	{"ssn glued to letters on the left", "SSN123-45-6789", 0, ""},
	{"ssn after punctuation", "SSN#123-45-6789", set(SSN), "SSN#" + ssn},
	{"ssn followed by letters", "123-45-6789abc", set(SSN), ssn + "abc"},
	{"ssn short last group", "123-45-678", 0, ""},
	{"ssn then dash digit", "123-45-6789-1", set(SSN), ssn + "-1"},
	// Emails.
	{"email", "john.doe@example.com", set(Email), em},
	{"email in sentence", "mail a.b+tag@sub.example.co.uk.", set(Email), "mail " + em + "."},
	{"email hyphen domain", "x_y%z@ex-ample.io", set(Email), em},
	{"email no dot", "user@localhost", 0, ""},
	{"email no local part", "@example.com", 0, ""},
	{"email one letter tld", "user@example.c", 0, ""},
	{"email numeric tld", "user@example.123", 0, ""},
	{"email tld glued digit", "user@example.com1", 0, ""},
	{"email trailing dash", "user@example.com-", set(Email), em + "-"},
	{"email partial domain", "user@example.com.x1", set(Email), em + ".x1"},
	{"email empty label", "user@example..com", 0, ""},
	{"email twice glued", "a@b.com@c.org", set(Email), em + "@c.org"},
	{"email in angle brackets", "Jo <jo@ex.org>", set(Email), "Jo <" + em + ">"},
	// Secrets with well-known forms.
	{"aws key", testAWS, set(Secret), sec},
	{"aws key assigned", "aws_access_key_id=" + testAWS, set(Secret), "aws_access_key_id=" + sec},
	{"aws key glued left", "x" + testAWS, 0, ""},
	{"aws key too long", testAWS + "X", 0, ""},
	{"aws key lowercase body", "AKIAiosfodnn7example", 0, ""},
	{"github token", "token " + testGHP, set(Secret), "token " + sec},
	{"github token short", testGHP[:39], 0, ""},
	{"github fine grained", "github_pat_" + strings.Repeat("ab_1", 6), set(Secret), sec},
	{"github fine grained short", "github_pat_" + strings.Repeat("ab_1", 5), 0, ""},
	{"slack token", "xoxb-1234567890-abcdefghij", set(Secret), sec},
	{"slack token short", "xoxb-123456789", 0, ""},
	{"slack bad letter", "xoxz-1234567890-abcdefghij", 0, ""},
	{"sk key", "Bearer sk-proj-Ab12Cd34Ef56Gh78Ij90", set(Secret), "Bearer " + sec},
	{"sk short", "sk-learn-rocks", 0, ""},
	{"jwt", "Authorization: Bearer " + testJWT, set(Secret), "Authorization: Bearer " + sec},
	{"jwt unsigned", "eyJhbGciOiJub25lIn0.e30.", set(Secret), sec},
	{"jwt one segment", "eyJhbGciOiJub25lIn0", 0, ""},
	{"pem", testPEM, set(Secret), sec},
	{"pem in text", "key:\n" + testPEM + "\nend", set(Secret), "key:\n" + sec + "\nend"},
	{"pem without end", "-----BEGIN PRIVATE KEY-----\nMIIEvQ\nIBAD more", set(Secret), sec + " more"},
	{"pem certificate", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----", 0, ""},
	// High-entropy tokens.
	{"entropy token", testEntropy, set(Secret), sec},
	{"entropy token in text", "key=" + testEntropy + " ok", set(Secret), sec + " ok"},
	{"entropy token 31 chars", testEntropy[:31], 0, ""},
	{"hex digest", "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", 0, ""},
	{"uuid", "550e8400-e29b-41d4-a716-446655440000", 0, ""},
	{"uppercase uuid", "550E8400-E29B-41D4-A716-446655440000", 0, ""},
	{"mixed-case uuid", "550E8400-e29b-41D4-a716-446655440000", 0, ""},
	{"uuid as local part", "550e8400-e29b-41d4-a716-446655440000@example.com", set(Email), em},
	{"uuid-shaped card groups", "4532-0151-1283-0366-446655440000", set(CreditCard), cc + "-446655440000"},
	{"repeated letters", strings.Repeat("ab", 30), 0, ""},
	{"long identifier", "some_long_variable_name_with_many_words_in_it", 0, ""},
	// Positions and neighbours.
	{"empty", "", 0, ""},
	{"plain text", "hello world, nothing to see here", 0, ""},
	{"at start and end", "4532015112830366 and 123-45-6789", set(CreditCard, SSN), cc + " and " + ssn},
	{"adjacent findings", "4532015112830366,123-45-6789,a@b.co", set(CreditCard, SSN, Email), cc + "," + ssn + "," + em},
	{"card then email", "4532015112830366@example.com", set(CreditCard), cc + "@example.com"},
	{"ssn then aws key", "123-45-6789" + testAWS, set(SSN, Secret), ssn + sec},
	{"entropy cut by card", testEntropy + "-4532-0151-1283-0366", set(Secret, CreditCard), sec + cc},
	{"all four", "a@b.co 123-45-6789 4532015112830366 " + testAWS, set(CreditCard, SSN, Email, Secret), em + " " + ssn + " " + cc + " " + sec},
	{"non-ascii separates", "é4532015112830366é", set(CreditCard), "é" + cc + "é"},

	// Cards in any grouping, with every separator of section 4.
	{"card dots", "4532.0151.1283.0366", set(CreditCard), cc},
	{"card underscores", "4532_0151_1283_0366", set(CreditCard), cc},
	{"card slashes", "4532/0151/1283/0366", set(CreditCard), cc},
	{"card single-digit groups", "4 5 3 2 0 1 5 1 1 2 8 3 0 3 6 6", set(CreditCard), cc},
	{"card uneven groups", "45-3201511-28-30366", set(CreditCard), cc},
	{"card 12 + 4", "453201511283 0366", set(CreditCard), cc},
	{"amex 4-6-5 dots", "3782.822463.10005", set(CreditCard), cc},
	{"card no-break spaces", "4532\u00a00151\u00a01283\u00a00366", set(CreditCard), cc},
	{"card narrow no-break spaces", "4532\u202f0151\u202f1283\u202f0366", set(CreditCard), cc},
	{"card figure spaces", "4532\u20070151\u20071283\u20070366", set(CreditCard), cc},
	{"card ideographic spaces", "4532\u30000151\u30001283\u30000366", set(CreditCard), cc},
	{"card spaces and no-break spaces", "4532 0151\u00a01283 0366", set(CreditCard), cc},
	{"card hyphens", "4532\u20100151\u20101283\u20100366", set(CreditCard), cc},
	{"card non-breaking hyphens", "4532\u20110151\u20111283\u20110366", set(CreditCard), cc},
	{"card figure dashes", "4532\u20120151\u20121283\u20120366", set(CreditCard), cc},
	{"card en dashes", "4532–0151–1283–0366", set(CreditCard), cc},
	{"card em dashes", "4532—0151—1283—0366", set(CreditCard), cc},
	{"card horizontal bars", "4532\u20150151\u20151283\u20150366", set(CreditCard), cc},
	{"card minus signs", "4532−0151−1283−0366", set(CreditCard), cc},
	{"card small em dashes", "4532﹘0151﹘1283﹘0366", set(CreditCard), cc},
	{"card small hyphen-minus", "4532﹣0151﹣1283﹣0366", set(CreditCard), cc},
	{"card full-width hyphen-minus", "4532－0151－1283－0366", set(CreditCard), cc},
	{"card hyphen and en dash", "4532-0151–1283-0366", set(CreditCard), cc},
	{"card dash then space", "4532-0151 1283 0366", 0, ""},
	{"card dot then slash", "4532.0151/1283.0366", 0, ""},
	{"card two no-break spaces", "4532\u00a0\u00a00151 1283 0366", 0, ""},
	{"card soft hyphen is no separator", "4532\u00ad0151\u00ad1283\u00ad0366", 0, ""},
	{"card full-width digits", "４５３２０１５１１２８３０３６６", set(CreditCard), cc},
	{"card full-width digits grouped", "pay ４５３２ ０１５１ １２８３ ０３６６ now", set(CreditCard), "pay " + cc + " now"},
	{"card arabic-indic digits", "٤٥٣٢٠١٥١١٢٨٣٠٣٦٦", set(CreditCard), cc},
	{"card extended arabic-indic digits", "۴۵۳۲۰۱۵۱۱۲۸۳۰۳۶۶", set(CreditCard), cc},
	{"card devanagari digits", "४५३२ ०१५१ १२८३ ०३६६", set(CreditCard), cc},
	{"card mathematical digits", "𝟒𝟓𝟑𝟐𝟎𝟏𝟓𝟏𝟏𝟐𝟖𝟑𝟎𝟑𝟔𝟔", set(CreditCard), cc},
	{"card mixed scripts of digits", "45３２٠١5१1283०३66", set(CreditCard), cc},
	{"card full-width digits failing luhn", "４５３２０１５１１２８３０３６７", 0, ""},
	{"card glued to a full-width letter", "ｘ４５３２０１５１１２８３０３６６", 0, ""},
	{"card glued to a unicode digit", "٣4532015112830366", 0, ""},
	{"card between unicode letters", "é4532 0151 1283 0366中", set(CreditCard), "é" + cc + "中"},
	{"card in a uuid", "45320151-1283-0366-0000-123456789012", 0, ""},
	{"card in an uppercase uuid", "ABCDEF01-4532-0151-1283-036600000000", 0, ""},
	{"card in uuid-like 40 bytes", "45320151-1283-0366-0000-1234567890123456", set(CreditCard), cc + "-0000-1234567890123456"},
	{"card 13 digits of groups", "4222 2222 22222", set(CreditCard), cc},
	{"card after a decimal", "1.4532015112830366", set(CreditCard), "1." + cc},
	{"dates and times are no card", "2024-01-15 12:30:45 2024-01-16", 0, ""},
	{"ip addresses are no card", "192.168.100.200 172.16.254.254", 0, ""},

	// SSNs with every separator of section 4.
	{"ssn spaces", "123 45 6789", set(SSN), ssn},
	{"ssn en dashes", "123–45–6789", set(SSN), ssn},
	{"ssn em dashes", "123—45—6789", set(SSN), ssn},
	{"ssn minus signs", "123−45−6789", set(SSN), ssn},
	{"ssn full-width hyphen-minus", "123－45－6789", set(SSN), ssn},
	{"ssn hyphen and en dash", "123-45–6789", set(SSN), ssn},
	{"ssn no-break spaces", "123\u00a045\u00a06789", set(SSN), ssn},
	{"ssn full-width digits", "１２３－４５－６７８９", set(SSN), ssn},
	{"ssn dash then space", "123-45 6789", 0, ""},
	{"ssn space then dash", "123 45-6789", 0, ""},
	{"ssn dots", "123.45.6789", 0, ""},
	{"ssn slashes", "123/45/6789", 0, ""},
	{"ssn spaces glued digit right", "123 45 67890", 0, ""},
	{"ssn in sentence", "my ssn is 123 45 6789.", set(SSN), "my ssn is " + ssn + "."},

	// NFKC for emails and secrets.
	{"full-width email", "ｊｏｈｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", set(Email), em},
	{"email with a full-width at sign", "john＠example.com", set(Email), em},
	{"full-width aws key", "ＡＫＩＡＩＯＳＦＯＤＮＮ７ＥＸＡＭＰＬＥ", set(Secret), sec},
	{"email after an em dash", "write—john@example.com", set(Email), "write—" + em},
}

func TestScanScrubText(t *testing.T) {
	for _, tc := range detectCases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.out
			if want == "" {
				want = tc.in
			}
			if got := ScanText([]byte(tc.in)); got != tc.want {
				t.Errorf("ScanText(%q) = %v, want %v", tc.in, got, tc.want)
			}
			out, got := ScrubText(nil, []byte(tc.in))
			if got != tc.want || string(out) != want {
				t.Errorf("ScrubText(%q) = %q, %v; want %q, %v", tc.in, out, got, want, tc.want)
			}
			// Scrubbing is idempotent and leaves nothing behind.
			again, left := ScrubText(nil, out)
			if left != 0 || !bytes.Equal(again, out) {
				t.Errorf("ScrubText(scrubbed %q) = %q, %v; want unchanged, none", out, again, left)
			}
		})
	}
}

// jsonString encodes s as a JSON string without HTML escaping.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(err) // strings always encode
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// jsonEscaped encodes s as a JSON string with \u escapes: for every
// non-ASCII character (surrogate pairs above U+FFFF) when all is false, for
// every character when it is true; the redaction markers are kept as they
// are, as scrubbing writes them.
func jsonEscaped(s string, all bool) string {
	var b strings.Builder
	b.WriteByte('"')
	for len(s) > 0 {
		if marker := markerPrefix(s); marker != "" {
			b.WriteString(marker)
			s = s[len(marker):]
			continue
		}
		r, size := utf8.DecodeRuneInString(s)
		s = s[size:]
		switch {
		case r > 0xffff:
			hi, lo := utf16.EncodeRune(r)
			fmt.Fprintf(&b, `\u%04x\u%04x`, hi, lo)
		case all || r >= utf8.RuneSelf || r < 0x20 || r == '"' || r == '\\':
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func markerPrefix(s string) string {
	for _, k := range allKinds {
		if strings.HasPrefix(s, k.Redaction()) {
			return k.Redaction()
		}
	}
	return ""
}

// TestScanScrubJSONStrings runs every text case inside a JSON string value
// and inside a key, as it is and escaped.
func TestScanScrubJSONStrings(t *testing.T) {
	for _, tc := range detectCases {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.out
			if want == "" {
				want = tc.in
			}
			forms := [][2]string{
				{jsonString(tc.in), jsonString(want)},
				{jsonEscaped(tc.in, false), jsonEscaped(want, false)}, // non-ASCII escaped
				{jsonEscaped(tc.in, true), jsonEscaped(want, true)},   // everything escaped
			}
			for _, form := range forms {
				in, out := form[0], form[1]
				for _, shape := range []string{`{"v": %s}`, `{%s: true}`, `[1, {"a": [%s]}]`, `%s`, `{%s: %s}`} {
					doc := strings.ReplaceAll(shape, "%s", in)
					wantDoc := strings.ReplaceAll(shape, "%s", out)
					got, err := ScanJSON([]byte(doc), Options{})
					if err != nil || got != tc.want {
						t.Errorf("ScanJSON(%s) = %v, %v; want %v", doc, got, err, tc.want)
					}
					scrubbed, got, err := ScrubJSON(nil, []byte(doc), Options{})
					if err != nil || got != tc.want || string(scrubbed) != wantDoc {
						t.Errorf("ScrubJSON(%s) = %s, %v, %v; want %s, %v", doc, scrubbed, got, err, wantDoc, tc.want)
					}
				}
			}
		})
	}
}

// TestScrubJSONSpecific covers what only JSON has: numbers, escapes, keys,
// depth.
func TestScrubJSONSpecific(t *testing.T) {
	deep := strings.Repeat("[", 250) + `"123-45-6789"` + strings.Repeat("]", 250)
	deepOut := strings.Repeat("[", 250) + `"` + ssn + `"` + strings.Repeat("]", 250)
	tests := []struct {
		name, in string
		want     Set
		out      string
	}{
		{"card number", `{"n": 4532015112830366}`, set(CreditCard), `{"n": "` + cc + `"}`},
		{"negative card number", `[-4532015112830366]`, set(CreditCard), `["` + cc + `"]`},
		{"card number with fraction", `[4532015112830366.5]`, 0, ""},
		{"card number times 100", `[4532015112830366e2,1]`, set(CreditCard), `["` + cc + `",1]`},
		{"card number times 10", `[4532015112830366e1]`, 0, ""}, // 45320151128303660 fails Luhn
		{"card number as 4.5…e15", `[4.532015112830366e15]`, set(CreditCard), `["` + cc + `"]`},
		{"card number as ….0", `[4532015112830366.0]`, set(CreditCard), `["` + cc + `"]`},
		{"card number as ….000", `[4532015112830366.000]`, set(CreditCard), `["` + cc + `"]`},
		{"card number as …0e-1", `[45320151128303660e-1]`, set(CreditCard), `["` + cc + `"]`},
		{"card number as …E+0", `[4532015112830366E+0]`, set(CreditCard), `["` + cc + `"]`},
		{"card number as …e-0", `[4532015112830366e-0]`, set(CreditCard), `["` + cc + `"]`},
		{"card number as 0.000…e19", `[0.0004532015112830366e19]`, set(CreditCard), `["` + cc + `"]`},
		{"card number as …00e-2", `[453201511283036600E-2]`, set(CreditCard), `["` + cc + `"]`},
		{"negative card number with exponent", `[-4.532015112830366E+15]`, set(CreditCard), `["` + cc + `"]`},
		{"card digits not an integer", `[4.5320151128303665e15]`, 0, ""},
		{"card digits over a power of ten", `[4532015112830366e-1]`, 0, ""},
		{"amex as exponent", `{"n": 3.78282246310005e14}`, set(CreditCard), `{"n": "` + cc + `"}`},
		{"short number with exponent is a card", `[2.6e15]`, set(CreditCard), `["` + cc + `"]`}, // 2600000000000000
		{"short number with exponent, no card", `[2e15]`, 0, ""},
		{"huge exponent", `[1e400, -1E+400, 4532015112830366e999999999999999999999]`, 0, ""},
		{"tiny exponent", `[1e-999999, 4532015112830366e-99999999999999999999]`, 0, ""},
		{"zero with huge exponent", `[0e999999999999, 0.000e-7]`, 0, ""},
		{"long mantissa", `[` + strings.Repeat("9", 5000) + `e-4990]`, 0, ""},
		{"long zeros then card", `[0.` + strings.Repeat("0", 5000) + `4532015112830366e5016]`, set(CreditCard), `["` + cc + `"]`},
		{"card digits in fraction", `[0.4532015112830366]`, 0, ""},
		{"number failing luhn", `[4532015112830367]`, 0, ""},
		{"20-digit number", `[45320151128303660000]`, 0, ""},
		{"top-level card number", ` 4532015112830366 `, set(CreditCard), ` "` + cc + `" `},
		{"card key", `{"4532015112830366": 1}`, set(CreditCard), `{"` + cc + `": 1}`},
		{"escaped card key", `{"\u0034\u0035\u0033\u0032 0151 1283 0366": 1}`, set(CreditCard), `{"` + cc + `": 1}`},
		{"escaped full-width key", `{"\uff14\uff15\uff13\uff12\uff10\uff11\uff15\uff11\uff11\uff12\uff18\uff13\uff10\uff13\uff16\uff16": 1}`, set(CreditCard), `{"` + cc + `": 1}`},
		{"escaped no-break spaces", `["4532\u00a00151\u00A01283\u00a00366"]`, set(CreditCard), `["` + cc + `"]`},
		{"escaped en dashes in an ssn", `["123\u201345\u20136789"]`, set(SSN), `["` + ssn + `"]`},
		{"escaped surrogate pair digits", `["\ud835\udfd2532015112830366"]`, set(CreditCard), `["` + cc + `"]`},
		{"escape after a finding kept", `["4532015112830366\u00a0\u00e9 x"]`, set(CreditCard), `["` + cc + `\u00a0\u00e9 x"]`},
		{"raw and escaped unicode around a finding", `["é\u00a0４５３２ ０１５１ １２８３ ０３６６\u2013x"]`, set(CreditCard), `["é\u00a0` + cc + `\u2013x"]`},
		{"lone surrogate separates", `["\ud8004532015112830366\udc00"]`, set(CreditCard), `["\ud800` + cc + `\udc00"]`},
		{"escaped first digit", `["\u0034532015112830366"]`, set(CreditCard), `["` + cc + `"]`},
		{"escaped separator", `["4532\u002d0151-1283-0366"]`, set(CreditCard), `["` + cc + `"]`},
		{"escaped at sign", `["john\u0040example.com"]`, set(Email), `["` + em + `"]`},
		{"newline escape before card", `["x\n4532015112830366"]`, set(CreditCard), `["x\n` + cc + `"]`},
		{"backslash before card", `["a\\4532015112830366"]`, set(CreditCard), `["a\\` + cc + `"]`},
		{"escapes kept around finding", `["\u00e9 john@example.com \ud800 \"q\""]`, set(Email), `["\u00e9 ` + em + ` \ud800 \"q\""]`},
		{"non-ascii escape separates", `["\u00e94532015112830366"]`, set(CreditCard), `["\u00e9` + cc + `"]`},
		{"letter escape glues", `["\u00784532015112830366"]`, 0, ""},
		{"pem with escaped newlines", `{"key": "` + strings.ReplaceAll(testPEM, "\n", `\n`) + `"}`, set(Secret), `{"key": "` + sec + `"}`},
		{"deep nesting", deep, set(SSN), deepOut},
		{"findings in many places", `{"a@b.co": [4222222222222, {"x": "123-45-6789"}], "k": "` + testAWS + `"}`,
			set(CreditCard, SSN, Email, Secret), `{"` + em + `": ["` + cc + `", {"x": "` + ssn + `"}], "k": "` + sec + `"}`},
		{"nothing", `{"id": 42, "ok": true, "name": "Ada", "tags": [null, false, -1.5e3]}`, 0, ""},
		{"short strings skipped", `["a@b.c", "12345"]`, 0, ""},
		{"short email", `["a@b.co"]`, set(Email), `["` + em + `"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.out
			if want == "" {
				want = tc.in
			}
			got, err := ScanJSON([]byte(tc.in), Options{})
			if err != nil || got != tc.want {
				t.Errorf("ScanJSON = %v, %v; want %v", got, err, tc.want)
			}
			prefix := []byte("prefix:")
			out, got, err := ScrubJSON(prefix, []byte(tc.in), Options{})
			if err != nil || got != tc.want || string(out) != "prefix:"+want {
				t.Errorf("ScrubJSON = %s, %v, %v; want prefix:%s, %v", out, got, err, want, tc.want)
			}
			out = out[len(prefix):]
			if !json.Valid(out) {
				t.Errorf("ScrubJSON output is not valid JSON: %s", out)
			}
			again, left, err := ScrubJSON(nil, out, Options{})
			if err != nil || left != 0 || !bytes.Equal(again, out) {
				t.Errorf("ScrubJSON(scrubbed) = %s, %v, %v; want unchanged, none", again, left, err)
			}
		})
	}
}

func TestKindAndSet(t *testing.T) {
	kinds := []struct {
		k          Kind
		name, mark string
	}{
		{CreditCard, "credit_card", "[CREDIT_CARD_REDACTED]"},
		{SSN, "ssn", "[SSN_REDACTED]"},
		{Email, "email", "[EMAIL_REDACTED]"},
		{Secret, "secret", "[SECRET_REDACTED]"},
		{0, "Kind(0x0)", "[REDACTED]"},
		{CreditCard | SSN, "Kind(0x3)", "[REDACTED]"},
	}
	for _, tc := range kinds {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.k.String(); got != tc.name {
				t.Errorf("String() = %q, want %q", got, tc.name)
			}
			if got := tc.k.Redaction(); got != tc.mark {
				t.Errorf("Redaction() = %q, want %q", got, tc.mark)
			}
		})
	}
	sets := []struct {
		s     Set
		names []string
		str   string
	}{
		{0, []string{}, "none"},
		{set(Secret, CreditCard), []string{"credit_card", "secret"}, "credit_card,secret"},
		{set(Email, SSN, Secret, CreditCard), []string{"credit_card", "ssn", "email", "secret"}, "credit_card,ssn,email,secret"},
	}
	for _, tc := range sets {
		t.Run(tc.str, func(t *testing.T) {
			got := tc.s.Names()
			if got == nil || strings.Join(got, ",") != strings.Join(tc.names, ",") {
				t.Errorf("Names() = %#v, want %#v", got, tc.names)
			}
			if s := tc.s.String(); s != tc.str {
				t.Errorf("String() = %q, want %q", s, tc.str)
			}
		})
	}
	s := set(SSN)
	if !s.Has(SSN) || s.Has(CreditCard) || s.Has(0) || s.Has(SSN|Email) {
		t.Errorf("Has on %v is wrong", s)
	}
}
