package pipeline

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
)

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "tab\tnl\ncr\r", "\x00\x1f\x7f", "é€😀", "bad\xffutf8", "<html>&", "\u2028"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q → %s: %v", s, b, err)
		}
		if want := perByteValid(s); got != want {
			t.Errorf("%q → %s → %q", s, b, got)
		}
	}
}

// perByteValid replaces every byte of s that is not part of valid UTF-8
// with U+FFFD, as encoding/json does (strings.ToValidUTF8 replaces a run
// of them with one).
func perByteValid(s string) string {
	var b strings.Builder
	for _, r := range s { // ranging yields U+FFFD once per invalid byte
		b.WriteRune(r)
	}
	return b.String()
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("a\"b\\c\x01\xff")
	f.Add("\x82\xcc")
	f.Fuzz(func(t *testing.T, s string) {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, s), &got); err != nil || got != perByteValid(s) {
			t.Fatalf("%q: %q %v", s, got, err)
		}
	})
}

func TestRequestDetailsIsJSON(t *testing.T) {
	m := &manifest.Manifest{Identity: manifest.Identity{AgentID: "a"}}
	x := &Exchange{Kind: Egress, Method: "POST", RecordedPath: "/proxy/\"x\"", RecordedQuery: "q=[CREDIT_CARD_REDACTED]",
		TargetID: "b", Origin: "http://b:80", Proven: "unreachable: \x01", Target: policy.Target{Manifest: m},
		Decision: policy.Decision{TrustScore: 7, Rule: "r"}, Quarantined: true, Found: detect.Set(detect.CreditCard),
		Where: []string{"query"}, OTelTraceID: "abc"}
	var d map[string]any
	if err := json.Unmarshal(requestDetails(x, Blocked), &d); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"exchange": "egress", "method": "POST", "path": "/proxy/\"x\"", "query": "q=[CREDIT_CARD_REDACTED]",
		"target": "b", "origin": "http://b:80", "proven": "unreachable: \x01", "trust_score": 7.0, "quarantined": true,
		"rule": "r", "sensitive": []any{"credit_card"}, "found_in": []any{"query"}, "outcome": "blocked", "otel_trace_id": "abc"}
	for k, v := range want {
		if got, _ := json.Marshal(d[k]); string(got) != mustJSON(v) {
			t.Errorf("%s = %s, want %s", k, got, mustJSON(v))
		}
	}
	if len(d) != len(want) {
		t.Errorf("details %v", d)
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }
