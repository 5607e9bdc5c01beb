package detect

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

var long = strings.Repeat("abcdefgh ", 3) // pushes a string past the short-string path

// validationCases: each row changes one thing on a valid document. err is
// the exact message; "" means valid.
var validationCases = []struct {
	name, doc, err string
}{
	{"object", `{"a": [1, 2.5, -3e10, true, false, null, "x"]}`, ""},
	{"empty object", `{}`, ""},
	{"empty array", `[]`, ""},
	{"string scalar", `"hello"`, ""},
	{"number scalar", `-0`, ""},
	{"exponent forms", `[1e5, 1E+5, 1e-5, 0.5E-0]`, ""},
	{"literal scalar", `null`, ""},
	{"surrounding whitespace", " \t\r\n{\"a\" : 1 } \n", ""},
	{"duplicate keys", `{"a":1,"a":2}`, ""},
	{"escapes", `"\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00"`, ""},
	{"lone surrogate escape", `"\ud800"`, ""},
	{"raw utf-8", `"é ✓ 😀"`, ""},
	{"DEL byte", "\"\x7f\"", ""},
	{"long string escapes", `"` + long + `\n\u0041` + long + `"`, ""},
	{"long string utf-8", `"` + long + `é` + long + `"`, ""},

	{"empty input", ``, "unexpected end of JSON input at offset 0"},
	{"only whitespace", "  \n ", "unexpected end of JSON input at offset 4"},
	{"trailing comma in array", `[1,]`, "invalid character ']' looking for beginning of value at offset 3"},
	{"trailing comma in object", `{"a":1,}`, "invalid character '}' looking for beginning of object key string at offset 7"},
	{"leading zero", `01`, "invalid character '1' after top-level value at offset 1"},
	{"leading zero in array", `[01]`, "invalid character '1' after array element at offset 2"},
	{"dot without fraction", `1.`, "unexpected end of JSON input at offset 2"},
	{"dot then letter", `[1.x]`, "invalid character 'x' after decimal point in numeric literal at offset 3"},
	{"leading dot", `.5`, "invalid character '.' looking for beginning of value at offset 0"},
	{"lone minus", `-`, "unexpected end of JSON input at offset 1"},
	{"minus then letter", `[-x]`, "invalid character 'x' in numeric literal at offset 2"},
	{"empty exponent", `[1e]`, "invalid character ']' in exponent of numeric literal at offset 3"},
	{"plus sign", `+1`, "invalid character '+' looking for beginning of value at offset 0"},
	{"unterminated string", `"abc`, "unexpected end of JSON input at offset 4"},
	{"unterminated long string", `"` + long, "unexpected end of JSON input at offset 28"},
	{"bad escape", `"\x"`, "invalid character 'x' in string escape code at offset 2"},
	{"bad escape in long string", `"` + long + `\q"`, "invalid character 'q' in string escape code at offset 29"},
	{"bad escape after escape", `"\n` + long + `\q"`, "invalid character 'q' in string escape code at offset 31"},
	{"bad unicode escape", `"\u12g4"`, `invalid character 'g' in \u hexadecimal character escape at offset 5`},
	{"short unicode escape", `"\u12"`, `invalid character '"' in \u hexadecimal character escape at offset 5`},
	{"control character", "\"a\nb\"", `invalid character '\n' in string literal at offset 2`},
	{"control character in long string", "\"" + long + "\x01\"", `invalid character '\x01' in string literal at offset 28`},
	{"control character after escape", "\"\\n" + long + "\t\"", `invalid character '\t' in string literal at offset 30`},
	{"missing colon", `{"a" 1}`, "invalid character '1' after object key at offset 5"},
	{"missing comma in object", `{"a":1 "b":2}`, `invalid character '"' after object key:value pair at offset 7`},
	{"missing comma in array", `[1 2]`, "invalid character '2' after array element at offset 3"},
	{"number key", `{1:2}`, "invalid character '1' looking for beginning of object key string at offset 1"},
	{"single quotes", `['a']`, `invalid character '\'' looking for beginning of value at offset 1`},
	{"truncated literal", `tru`, "unexpected end of JSON input at offset 3"},
	{"misspelled literal", `[trux]`, "invalid character 'x' in literal true (expecting 'e') at offset 4"},
	{"capital literal", `[Null]`, "invalid character 'N' looking for beginning of value at offset 1"},
	{"unclosed array", `[1, 2`, "unexpected end of JSON input at offset 5"},
	{"unclosed object", `{"a":`, "unexpected end of JSON input at offset 5"},
	{"two values", `1 2`, "invalid character '2' after top-level value at offset 2"},
	{"extra bracket", `[]]`, "invalid character ']' after top-level value at offset 2"},
	{"trailing garbage", `{"a":1}x`, "invalid character 'x' after top-level value at offset 7"},
	{"byte order mark", "\ufeff{}", `invalid character '\ufeff' looking for beginning of value at offset 0`},
	{"comment", `{} // no`, "invalid character '/' after top-level value at offset 3"},
}

func TestValidation(t *testing.T) {
	for _, tc := range validationCases {
		t.Run(tc.name, func(t *testing.T) {
			if want := tc.err == ""; json.Valid([]byte(tc.doc)) != want {
				t.Fatalf("test row disagrees with encoding/json.Valid (valid=%v)", !want)
			}
			_, err := ScanJSON([]byte(tc.doc), Options{})
			checkErr(t, "ScanJSON", err, tc.err)
			dst := []byte("keep")
			out, set, err := ScrubJSON(dst, []byte(tc.doc), Options{})
			checkErr(t, "ScrubJSON", err, tc.err)
			if err != nil && (string(out) != "keep" || set != 0) {
				t.Errorf("ScrubJSON on error = %q, %v; want dst unchanged and no kinds", out, set)
			}
			if err == nil && string(out) != "keep"+tc.doc {
				t.Errorf("ScrubJSON changed a document without findings: %q", out)
			}
		})
	}
}

func checkErr(t *testing.T, fn string, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("%s: unexpected error %v", fn, err)
		}
		return
	}
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("%s: error %v (%T), want *SyntaxError %q", fn, err, err, want)
	}
	if err.Error() != want {
		t.Errorf("%s: error %q, want %q", fn, err, want)
	}
	if errors.Is(err, ErrTooDeep) || errors.Is(err, ErrInvalidUTF8) {
		t.Errorf("%s: plain syntax error %q unwraps to a sentinel", fn, err)
	}
}

func TestDepth(t *testing.T) {
	nest := func(n int, open, close, inner string) string {
		return strings.Repeat(open, n) + inner + strings.Repeat(close, n)
	}
	tests := []struct {
		name     string
		doc      string
		maxDepth int
		err      string // "" means valid
	}{
		{"256 arrays", nest(256, "[", "]", "1"), 0, ""},
		{"257 arrays", nest(257, "[", "]", "1"), 0, "exceeded max nesting depth of 256 at offset 256"},
		{"256 objects", nest(256, `{"a":`, "}", "1"), 0, ""},
		{"257 objects", nest(257, `{"a":`, "}", "1"), 0, "exceeded max nesting depth of 256 at offset 1280"},
		{"257 empty arrays", nest(257, "[", "]", ""), 0, "exceeded max nesting depth of 256 at offset 256"},
		{"siblings do not add up", "[" + strings.Repeat(nest(255, "[", "]", "")+",", 3) + "1]", 0, ""},
		{"lower limit ok", nest(3, "[", "]", "1"), 3, ""},
		{"lower limit exceeded", nest(4, "[", "]", "1"), 3, "exceeded max nesting depth of 3 at offset 3"},
		{"lower limit, mixed", `{"a":[{"b":1}]}`, 3, ""},
		{"lower limit, mixed exceeded", `{"a":[{"b":[]}]}`, 3, "exceeded max nesting depth of 3 at offset 11"},
		{"higher limit", nest(1000, "[", "]", "1"), 1000, ""},
		{"higher limit exceeded", nest(1001, "[", "]", "1"), 1000, "exceeded max nesting depth of 1000 at offset 1000"},
		{"negative means default", nest(257, "[", "]", "1"), -1, "exceeded max nesting depth of 256 at offset 256"},
		{"findings past the default depth", nest(300, "[", "]", `"123-45-6789"`), 300, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ScanJSON([]byte(tc.doc), Options{MaxDepth: tc.maxDepth})
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if !errors.Is(err, ErrTooDeep) {
				t.Fatalf("error %v, want ErrTooDeep", err)
			}
			if err.Error() != tc.err {
				t.Errorf("error %q, want %q", err, tc.err)
			}
			if !json.Valid([]byte(tc.doc)) {
				t.Errorf("row is not otherwise valid JSON")
			}
		})
	}
}

func TestInvalidUTF8(t *testing.T) {
	tests := []struct {
		name, doc, err string
	}{
		{"in string", "\"\xff\"", "invalid UTF-8 byte 0xff in string literal at offset 1"},
		{"in key", "{\"a\xffb\":1}", "invalid UTF-8 byte 0xff in string literal at offset 3"},
		{"in long string", "\"" + long + "\xfe\"", "invalid UTF-8 byte 0xfe in string literal at offset 28"},
		{"after an escape", "\"\\n" + long + "\xc3\"", "invalid UTF-8 byte 0xc3 in string literal at offset 30"},
		{"truncated sequence", "[\"ab\xc3\"]", "invalid UTF-8 byte 0xc3 in string literal at offset 4"},
		{"encoded surrogate", "\"\xed\xa0\x80\"", "invalid UTF-8 byte 0xed in string literal at offset 1"},
		{"overlong encoding", "\"\xc0\xaf\"", "invalid UTF-8 byte 0xc0 in string literal at offset 1"},
		{"outside strings", "\xff", "invalid UTF-8 byte 0xff looking for beginning of value at offset 0"},
		{"between values", "[1,\xff]", "invalid UTF-8 byte 0xff looking for beginning of value at offset 3"},
		{"after top-level value", "{}\x80", "invalid UTF-8 byte 0x80 after top-level value at offset 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if utf8.ValidString(tc.doc) {
				t.Fatal("row is valid UTF-8")
			}
			_, err := ScanJSON([]byte(tc.doc), Options{})
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("error %v, want ErrInvalidUTF8", err)
			}
			var se *SyntaxError
			if !errors.As(err, &se) || err.Error() != tc.err {
				t.Errorf("error %v, want *SyntaxError %q", err, tc.err)
			}
			if _, _, err := ScrubJSON(nil, []byte(tc.doc), Options{}); !errors.Is(err, ErrInvalidUTF8) {
				t.Errorf("ScrubJSON error %v, want ErrInvalidUTF8", err)
			}
		})
	}
	// Text functions tolerate it.
	if got, set := ScrubText(nil, []byte("\xff 123-45-6789 \xfe")); string(got) != "\xff [SSN_REDACTED] \xfe" || set != Set(SSN) {
		t.Errorf("ScrubText with invalid UTF-8 = %q, %v", got, set)
	}
}
