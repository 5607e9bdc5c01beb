package pipeline

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/iatp/iatp/detect"
)

// cardForms are card numbers as people write them; the detector finds each
// when nothing glues it to further digits or letters. (It does not yet find
// the forms PROTOCOL §4 adds — dots, underscores, slashes, Unicode dashes,
// no-break spaces, full-width digits — so they are not used here.)
var cardForms = []string{
	"4532015112830366",
	"4532-0151-1283-0366",
	"4532 0151 1283 0366",
	"378282246310005",
	"3782 822463 10005",
	"5555555555554444",
}

// delimiters end a card on either side without gluing it to anything.
var delimiters = []string{" ", ",", "\n", "\"", "(", ")", ":", "\t", "; ", "[", "] "}

// filler is what random text is made of: letters, white space, the bytes
// CutSafe cuts before, characters JSON escapes, and multi-byte runes; no
// digits, so that any digit in an output comes from a card.
var filler = []string{"a", "b", "x", "Q", " ", " ", " ", "  ", ",", "\n", "\"", "{", "}", "[", "]", ":", ";", "é", "€", "—", "\\", "<", "&", "\x01", "word ", "lorem ipsum "}

// randomText returns random text of about n bytes with between 1 and 3
// cards at random offsets, and the cards it holds.
func randomText(r *rand.Rand, n int) (string, []string) {
	var b strings.Builder
	var cards []string
	k := 1 + r.IntN(3)
	at := make([]int, k)
	for i := range at {
		at[i] = r.IntN(n + 1)
	}
	for b.Len() < n || len(cards) < k {
		for len(cards) < k && b.Len() >= at[len(cards)] {
			c := cardForms[r.IntN(len(cardForms))]
			b.WriteString(delimiters[r.IntN(len(delimiters))])
			b.WriteString(c)
			b.WriteString(delimiters[r.IntN(len(delimiters))])
			cards = append(cards, c)
		}
		if b.Len() < n {
			b.WriteString(filler[r.IntN(len(filler))])
		}
	}
	return b.String(), cards
}

// checkNoCard fails when out holds a card of cards whole or any 6 of its
// consecutive digits.
func checkNoCard(t *testing.T, what string, out []byte, cards []string, in string) {
	t.Helper()
	for _, c := range cards {
		if s := leak(out, c); s != "" {
			i := bytes.Index(out, []byte(s))
			t.Fatalf("%s holds %q of card %q: …%q…\ninput (%d bytes): %.300q…", what, s, c, out[max(0, i-40):min(len(out), i+40)], len(in), in)
		}
	}
}

// properties of the payload functions over seeded random texts.
const propertyRuns = 400

func TestCutSafeProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range propertyRuns {
		text, cards := randomText(r, r.IntN(3000))
		n := r.IntN(len(text) + 10)
		out := CutSafe([]byte(text), n)
		if !strings.HasPrefix(text, string(out)) || len(out) > n {
			t.Fatalf("CutSafe(%d) of %d bytes gave %d bytes, not a prefix within the limit", n, len(text), len(out))
		}
		if len(out) < len(text) && len(out) > 0 && !safeCut[text[len(out)]] {
			t.Fatalf("CutSafe cut before %q, which a finding may hold", text[len(out)])
		}
		// A card is in the prefix whole or not at all.
		for _, c := range cards {
			for off := 0; ; {
				i := strings.Index(text[off:], c)
				if i < 0 {
					break
				}
				s, e := off+i, off+i+len(c)
				if len(out) > s && len(out) < e {
					t.Fatalf("CutSafe(%d) cut card %q at [%d,%d): …%q", n, c, s, e, out[max(0, len(out)-30):])
				}
				off = e
			}
		}
	}
	if got := CutSafe([]byte("abc"), 10); string(got) != "abc" {
		t.Errorf("CutSafe of a short text: %q", got)
	}
	if got := CutSafe([]byte("abcdef"), 3); len(got) != 0 {
		t.Errorf("CutSafe with no safe byte: %q", got)
	}
}

func TestTextPayloadProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range propertyRuns {
		text, cards := randomText(r, r.IntN(4000))
		limit := r.IntN(len(text) + 200)
		out := TextPayload([]byte(text), r.IntN(2) == 0, limit)
		if !json.Valid(out) {
			t.Fatalf("not JSON: %q", out)
		}
		if len(out) > limit+limit/4+64 {
			t.Fatalf("%d bytes for a limit of %d", len(out), limit)
		}
		checkNoCard(t, "TextPayload", out, cards, text)
	}
}

func TestAnswerPayloadProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range propertyRuns {
		text, cards := randomText(r, r.IntN(4000))
		body := []byte(text)
		ctype := "text/plain"
		if r.IntN(3) == 0 { // the text as a JSON document
			body, _ = EncodeJSON(map[string]any{"note": text, "n": []string{"x", text}})
			ctype = "application/json; charset=utf-8"
		}
		whole := r.IntN(2) == 0
		if !whole { // a prefix, cut anywhere: maybe inside a card
			body = body[:r.IntN(len(body)+1)]
		}
		limit := r.IntN(len(body) + 200)
		out := AnswerPayload(body, ctype, whole, limit, 8)
		if len(body) == 0 {
			if out != nil {
				t.Fatalf("empty body recorded as %q", out)
			}
			continue
		}
		if !json.Valid(out) {
			t.Fatalf("not JSON: %q", out)
		}
		if len(out) > limit+limit/4+64 {
			t.Fatalf("%d bytes for a limit of %d", len(out), limit)
		}
		checkNoCard(t, "AnswerPayload", out, cards, string(body))
	}
}

func TestBoundedJSONProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range propertyRuns {
		text, cards := randomText(r, r.IntN(4000))
		doc, _ := EncodeJSON([]any{text, map[string]string{"k": text}})
		scrubbed, found, err := detect.ScrubJSON(nil, doc, detect.Options{})
		if err != nil || !found.Has(detect.CreditCard) {
			t.Fatalf("ScrubJSON: %v, found %v in %.200q", err, found, doc)
		}
		limit := r.IntN(len(scrubbed) + 200)
		out := BoundedJSON(scrubbed, limit)
		if !json.Valid(out) {
			t.Fatalf("not JSON: %q", out)
		}
		if len(out) > max(limit, 64) {
			t.Fatalf("%d bytes for a limit of %d", len(out), limit)
		}
		if len(scrubbed) <= limit && !bytes.Equal(out, scrubbed) {
			t.Fatalf("a payload within the limit was changed")
		}
		checkNoCard(t, "BoundedJSON", out, cards, text)
	}
}

// TestAnswerPayloadExamples pins what is recorded of a few answers.
func TestAnswerPayloadExamples(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		ctype string
		whole bool
		limit int
		want  string
	}{
		{"empty", "", "text/plain", true, 100, ""},
		{"JSON scrubbed as JSON", `{"c":"` + card + `"}`, "application/json", true, 100, `{"c":"[CREDIT_CARD_REDACTED]"}`},
		{"JSON type, not JSON", `c=` + card, "application/json", true, 100, `"c=[CREDIT_CARD_REDACTED]"`},
		{"text", "pay " + card + " now", "text/plain", true, 100, `"pay [CREDIT_CARD_REDACTED] now"`},
		{"text kept readable", "<p>a & b</p>", "text/html", true, 100, `"<p>a & b</p>"`},
		{"JSON prefix is text", `{"c":"` + card + `","d":"` + card[:8], "application/json", false, 1000,
			`{"truncated":true,"bytes":34,"prefix":"{\"c\":\"[CREDIT_CARD_REDACTED]\",\"d\":"}`},
		{"JSON prefix, card after a newline escape", `{"note":"line one\n` + card + `","more":"` + strings.Repeat("x", 50), "application/json", false, 1000,
			`{"truncated":true,"bytes":49,"prefix":"{\"note\":\"line one\n[CREDIT_CARD_REDACTED]\",\"more\":"}`},
		{"JSON prefix, card behind a unicode escape", `["\u0034532015112830366","` + strings.Repeat("x", 50), "application/json", false, 1000,
			`{"truncated":true,"bytes":26,"prefix":"[\"[CREDIT_CARD_REDACTED]\","}`},
		{"JSON that does not parse, card after a tab escape", `{"a":"\t` + card + `"`, "application/json", true, 1000,
			`"{\"a\":\"\t[CREDIT_CARD_REDACTED]\""`},
		{"card cut by the end of a prefix", "one, two, " + card[:10], "text/plain", false, 1000,
			`{"truncated":true,"bytes":8,"prefix":"one, two"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AnswerPayload([]byte(tt.body), tt.ctype, tt.whole, tt.limit, 8)
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// FuzzAnswerPayload checks AnswerPayload never panics, always records
// valid JSON within about its limit, and never records a card number whole
// when the answer holds it set apart by commas (so that the fuzzer cannot
// glue it to further digits, which would make it no card).
func FuzzAnswerPayload(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, ctype string, whole bool, limit uint16) {
		out := AnswerPayload(body, ctype, whole, int(limit), 16)
		if len(body) == 0 {
			if out != nil {
				t.Fatalf("empty body recorded as %q", out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("not JSON: %q", out)
		}
		if n := int(limit); len(out) > n+n/4+64 {
			t.Fatalf("%d bytes for a limit of %d", len(out), n)
		}
		if bytes.Count(body, []byte(card)) == bytes.Count(body, []byte(","+card+",")) && bytes.Contains(out, []byte(card)) {
			t.Fatalf("card recorded: %q", out)
		}
	})
}
