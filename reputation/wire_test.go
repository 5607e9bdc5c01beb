package reputation

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignedEventJSONRoundTrip(t *testing.T) {
	key := keyOf(t, "r")
	ev, err := signEvent(EventBody{Reporter: "r", Subject: "s\u00e9\"x", Type: TypeHallucination, Severity: SeverityLow,
		Time: t0.Add(1234 * time.Microsecond), TraceID: "t-1", DetectedBy: "v"}, []byte(`{"a":1}`), key)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(ev)
	var back SignedEvent
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyEvent(&back, key.PublicKey()); err != nil {
		t.Fatalf("round trip breaks the signature: %v\n%s", err, data)
	}
	if d, err := checkDetails(&back); err != nil || string(d) != `{"a":1}` {
		t.Fatalf("details %s, %v", d, err)
	}
	// The same event spelled with other escapes and key order verifies too:
	// the signature is over the canonical form of the values.
	respelled := strings.Replace(string(data), `"subject":"s\u00e9\"x"`, `"subject":"s\u00e9\u0022x"`, 1)
	respelled = strings.Replace(respelled, `"details":{"a":1}`, `"details":{ "a" : 1 }`, 1)
	if err := json.Unmarshal([]byte(respelled), &back); err != nil {
		t.Fatal(err)
	}
	if _, err := verifyEvent(&back, key.PublicKey()); err != nil {
		t.Fatalf("respelled: %v", err)
	}
	if _, err := checkDetails(&back); err != nil {
		t.Fatalf("respelled details: %v", err)
	}
}

func TestEventBodyValidation(t *testing.T) {
	base := EventBody{V: 1, Reporter: "r", Subject: "s", Type: TypeError, Time: t0}
	for _, tc := range []struct {
		name string
		edit func(*EventBody)
	}{
		{"version", func(b *EventBody) { b.V = 2 }},
		{"no reporter", func(b *EventBody) { b.Reporter = "" }},
		{"control in subject", func(b *EventBody) { b.Subject = "a\x00b" }},
		{"bare success", func(b *EventBody) { b.Type = TypeSuccess }},
		{"unknown type", func(b *EventBody) { b.Type = "rude" }},
		{"type case", func(b *EventBody) { b.Type = "Error" }},
		{"severity on error", func(b *EventBody) { b.Severity = SeverityHigh }},
		{"hallucination without severity", func(b *EventBody) { b.Type = TypeHallucination }},
		{"empty summary", func(b *EventBody) { b.Type = TypeSummary }},
		{"counts on error", func(b *EventBody) { b.Counts.Success = 1 }},
		{"delta on error", func(b *EventBody) { b.Delta = -10 }},
		{"import raising", func(b *EventBody) { b.Type = TypeImport; b.Delta = 10 }},
		{"import below -10", func(b *EventBody) { b.Type = TypeImport; b.Delta = -1001 }},
		{"bad trace id", func(b *EventBody) { b.TraceID = "a b" }},
		{"bad details hash", func(b *EventBody) { b.DetailsSHA256 = "XYZ" }},
		{"before 1970", func(b *EventBody) { b.Time = time.Unix(-1, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := base
			tc.edit(&b)
			if err := b.validate(); !errors.Is(err, ErrInvalidEvent) {
				t.Fatalf("got %v", err)
			}
		})
	}
	if err := base.validate(); err != nil {
		t.Fatal(err)
	}
}

// FuzzSignedEventJSON: decoding untrusted bytes never panics, and every
// event it accepts encodes to JSON that decodes to the same canonical body.
func FuzzSignedEventJSON(f *testing.F) {
	key := mustKey(make([]byte, 32))
	for _, b := range []EventBody{
		{Reporter: "r", Subject: "s", Type: TypeHallucination, Severity: SeverityCritical, Time: t0, TraceID: "t"},
		{Reporter: "r", Subject: "s", Type: TypeSummary, Time: t0, Counts: Counts{Success: 3, Error: 1}},
		{Reporter: "r", Subject: "s", Type: TypeImport, Time: t0, Delta: -150, DetectedBy: "peer"},
	} {
		ev, err := signEvent(b, []byte(`{"k":[1,2]}`), key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(ev.AppendJSON(nil))
	}
	f.Add([]byte(`{"id":"","event":{"v":1},"signature":""}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev SignedEvent
		if err := json.Unmarshal(data, &ev); err != nil {
			return
		}
		out := ev.AppendJSON(nil)
		var back SignedEvent
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("cannot decode own encoding %s: %v", out, err)
		}
		if a, b := string(ev.Body.canonical(nil)), string(back.Body.canonical(nil)); a != b {
			t.Fatalf("canonical form changed:\n%s\n%s", a, b)
		}
		_, _ = checkDetails(&ev)
	})
}
