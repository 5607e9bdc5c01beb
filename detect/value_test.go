package detect

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// stdValue decodes doc with encoding/json, numbers as Number: the reference
// for Parsed.Value.
func stdValue(t testing.TB, doc []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("encoding/json on %q: %v", doc, err)
	}
	return toNumbers(v)
}

func toNumbers(v any) any {
	switch v := v.(type) {
	case json.Number:
		return Number(v)
	case []any:
		for k := range v {
			v[k] = toNumbers(v[k])
		}
	case map[string]any:
		for k := range v {
			v[k] = toNumbers(v[k])
		}
	}
	return v
}

// checkParseJSON checks that ParseJSON agrees with ScrubJSON on a valid
// document and decodes it as encoding/json does.
func checkParseJSON(t testing.TB, doc []byte) {
	t.Helper()
	want, wantSet, err := ScrubJSON([]byte("dst:"), doc, Options{MaxDepth: 1 << 20})
	if err != nil {
		t.Fatalf("ScrubJSON(%q): %v", doc, err)
	}
	for _, withValue := range []bool{false, true} {
		pr, err := ParseJSON([]byte("dst:"), doc, Options{MaxDepth: 1 << 20, Value: withValue})
		if err != nil || pr.Found != wantSet || !bytes.Equal(pr.Scrubbed, want) {
			t.Fatalf("ParseJSON(%q) = %q, %v, %v; ScrubJSON %q, %v", doc, pr.Scrubbed, pr.Found, err, want, wantSet)
		}
		var wantValue any
		if withValue {
			wantValue = stdValue(t, doc)
		}
		if !reflect.DeepEqual(pr.Value, wantValue) {
			t.Fatalf("ParseJSON(%q).Value = %#v\nencoding/json %#v", doc, pr.Value, wantValue)
		}
	}
}

func TestParseJSONValue(t *testing.T) {
	for _, doc := range []string{
		`null`, `true`, `false`, `0`, `-1.5e-3`, `1e400`, `""`, `"x"`, `[]`, `{}`, `[[]]`, `[{}]`, `{"a":{}}`, `{"a":[]}`,
		`{"a": [1, 2.5, -3e10, true, false, null, "x"], "b": {"c": {"d": []}}}`,
		`{"a":1,"a":2}`, `{"a":{"x":1},"b":0,"a":[2]}`,
		`["\" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00 \ud800 \udc00x \ud800\u0041"]`,
		`{"\u0061": "\u0034532015112830366", "é": "４５３２ ０１５１ １２８３ ０３６６"}`,
		`[4532015112830366, 4.532015112830366e15, "123-45-6789", {"4532015112830366": "a@b.co"}]`,
		` {"ws" : [ 1 , 2 ] } `,
		strings.Repeat("[", 300) + `{"deep": "4532015112830366"}` + strings.Repeat("]", 300),
	} {
		checkParseJSON(t, []byte(doc))
	}
	r := rand.New(rand.NewPCG(31, 32))
	for k := 0; k < 3000; k++ {
		checkParseJSON(t, []byte(randomJSON(r, 0)))
	}
}

func TestParseJSONErrors(t *testing.T) {
	for _, tc := range validationCases {
		t.Run(tc.name, func(t *testing.T) {
			_, scanErr := ScanJSON([]byte(tc.doc), Options{})
			pr, err := ParseJSON([]byte("keep"), []byte(tc.doc), Options{Value: true})
			checkErr(t, "ParseJSON", err, tc.err)
			if (err == nil) != (scanErr == nil) || err != nil && err.Error() != scanErr.Error() {
				t.Errorf("ParseJSON error %v, ScanJSON error %v", err, scanErr)
			}
			if err != nil && (string(pr.Scrubbed) != "keep" || pr.Found != 0 || pr.Value != nil) {
				t.Errorf("ParseJSON on error = %+v; want dst unchanged, nothing else", pr)
			}
		})
	}
	deep := strings.Repeat(`{"a":[`, 200) + "1" + strings.Repeat("]}", 200)
	if _, err := ParseJSON(nil, []byte(deep), Options{Value: true}); err == nil || err.Error() != "exceeded max nesting depth of 256 at offset 768" {
		t.Errorf("ParseJSON too deep: %v", err)
	}
	// A pooled parser that failed half-way through a tree leaves nothing
	// behind for the next call.
	if pr, err := ParseJSON(nil, []byte(`{"a":[1,2]}`), Options{Value: true}); err != nil || !reflect.DeepEqual(pr.Value, map[string]any{"a": []any{Number("1"), Number("2")}}) {
		t.Errorf("ParseJSON after a failure = %#v, %v", pr.Value, err)
	}
}

// TestParseJSONValueIsACopy checks that the tree does not share memory with
// the document, which the caller may reuse.
func TestParseJSONValueIsACopy(t *testing.T) {
	doc := []byte(`{"k": ["v", 12]}`)
	pr, err := ParseJSON(nil, doc, Options{Value: true})
	if err != nil {
		t.Fatal(err)
	}
	for k := range doc {
		doc[k] = 'x'
	}
	if want := map[string]any{"k": []any{"v", Number("12")}}; !reflect.DeepEqual(pr.Value, want) {
		t.Errorf("Value after the document changed = %#v", pr.Value)
	}
}

// BenchmarkParseJSON1K parses, scrubs and decodes the 1 kB request: what
// the sidecar does when a policy rule reads the body.
func BenchmarkParseJSON1K(b *testing.B) {
	doc := request1K()
	dst := make([]byte, 0, 2*len(doc))
	m := startCPU(b, len(doc))
	for b.Loop() {
		pr, err := ParseJSON(dst[:0], doc, Options{Value: true})
		if err != nil || pr.Found != set(CreditCard, Email) || pr.Value == nil {
			b.Fatal(pr.Found, err)
		}
	}
	m.stop()
}

// BenchmarkScrubThenUnmarshal1K is the two-parser way ParseJSON replaces:
// ScrubJSON, then encoding/json for the policy.
func BenchmarkScrubThenUnmarshal1K(b *testing.B) {
	doc := request1K()
	dst := make([]byte, 0, 2*len(doc))
	m := startCPU(b, len(doc))
	for b.Loop() {
		if _, _, err := ScrubJSON(dst[:0], doc, Options{}); err != nil {
			b.Fatal(err)
		}
		var v any
		if err := json.Unmarshal(doc, &v); err != nil {
			b.Fatal(err)
		}
	}
	m.stop()
}
