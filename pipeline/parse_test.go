package pipeline

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/internal/wire"
)

func TestParse(t *testing.T) {
	base := Parse{MaxDepth: 8, MaxRecordPayload: 4096}
	tests := []struct {
		name     string
		parse    func(p *Parse)
		body     string
		ctype    string
		status   int
		msg      string
		found    detect.Set
		payload  string // the recorded payload, exactly
		forwards string // the body forwarded; "" means the body as sent
	}{
		{name: "object", body: `{"task":"hello"}`, payload: `{"task":"hello"}`},
		{name: "scalar", body: `42`, payload: `42`},
		{name: "array", body: `[1,"a"]`, payload: `[1,"a"]`},
		{name: "card in a string", body: `{"c":"` + card + `"}`, found: detect.Set(detect.CreditCard),
			payload: `{"c":"[CREDIT_CARD_REDACTED]"}`},
		{name: "card as a number", body: `{"c":4532015112830366}`, found: detect.Set(detect.CreditCard),
			payload: `{"c":"[CREDIT_CARD_REDACTED]"}`},
		{name: "card as a key", body: `{"\u0034532015112830366":1}`, found: detect.Set(detect.CreditCard),
			payload: `{"[CREDIT_CARD_REDACTED]":1}`},
		{name: "ssn and email", body: `{"s":"` + ssn + `","e":"alice@example.com"}`, found: detect.Set(detect.SSN) | detect.Set(detect.Email),
			payload: `{"s":"[SSN_REDACTED]","e":"[EMAIL_REDACTED]"}`},
		{name: "redact forwarded", parse: func(p *Parse) { p.RedactForwarded = true }, body: `{"c":"` + card + `"}`,
			found: detect.Set(detect.CreditCard), payload: `{"c":"[CREDIT_CARD_REDACTED]"}`, forwards: `{"c":"[CREDIT_CARD_REDACTED]"}`},
		{name: "invalid JSON", body: `{"task": `, status: 400, msg: "Invalid JSON payload: unexpected end of JSON input at offset 9",
			payload: `"{\"task\": "`},
		{name: "invalid JSON with a card", body: `card ` + card + ` not json`, status: 400, msg: "Invalid JSON payload: invalid character 'c'",
			payload: `"card [CREDIT_CARD_REDACTED] not json"`},
		{name: "invalid JSON with a card after an escape", body: `{"a":"line\n` + card + `"`, status: 400, msg: "Invalid JSON payload",
			payload: `"{\"a\":\"line\n[CREDIT_CARD_REDACTED]\""`},
		{name: "form body with an encoded card", ctype: "application/x-www-form-urlencoded", body: `card=%34532+0151+1283+0366&x=1`,
			status: 400, msg: "Invalid JSON payload", payload: `"card=[CREDIT_CARD_REDACTED]&x=1"`},
		{name: "form body with an encoded card and a bad escape", ctype: "application/x-www-form-urlencoded", body: `card=%34532015112830366&x=%zz`,
			status: 400, msg: "Invalid JSON payload", payload: `"card=[CREDIT_CARD_REDACTED]&x=%zz"`},
		{name: "too deep", body: strings.Repeat("[", 9) + strings.Repeat("]", 9), status: 400, msg: "exceeded max nesting depth of 8",
			payload: `"[[[[[[[[[]]]]]]]]]"`},
		{name: "trailing data", body: `{} {}`, status: 400, msg: "Invalid JSON payload", payload: `"{} {}"`},
		{name: "empty", body: ``, status: 400, msg: "Invalid JSON payload", payload: `""`},
		{name: "invalid UTF-8", body: "\"\xff\"", status: 400, msg: "invalid UTF-8", payload: `"\"` + "\ufffd" + `\""`},
		{name: "large payload summarised", parse: func(p *Parse) { p.MaxRecordPayload = 300 },
			body: `{"a":"` + strings.Repeat("x", 400) + `","c":"` + card + `"}`, found: detect.Set(detect.CreditCard),
			payload: `{"truncated":true,"bytes":437,"prefix":"{\"a\":"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := base
			if tt.parse != nil {
				tt.parse(&p)
			}
			x := baseExchange()
			x.Body = []byte(tt.body)
			if tt.ctype != "" {
				x.ContentType = tt.ctype
			}
			r := p.Run(context.Background(), x)
			defer x.releaseScrub()
			if tt.status == 0 {
				if r != nil {
					t.Fatalf("refused: %v", r)
				}
			} else if r == nil || r.Status != tt.status || r.Reason != BadBody || !strings.HasPrefix(r.Msg, tt.msg) && !strings.Contains(r.Msg, tt.msg) {
				t.Fatalf("refusal %+v; want %d with %q", r, tt.status, tt.msg)
			}
			if x.Found != tt.found {
				t.Errorf("found %v, want %v", x.Found, tt.found)
			}
			if wantWhere := tt.found != 0; wantWhere != slices.Equal(x.Where, []string{"body"}) {
				t.Errorf("where %q", x.Where)
			}
			if string(x.Payload) != tt.payload {
				t.Errorf("payload %s\n   want %s", x.Payload, tt.payload)
			}
			if !json.Valid(x.Payload) {
				t.Errorf("payload is not JSON: %s", x.Payload)
			}
			want := tt.forwards
			if want == "" {
				want = tt.body
			}
			if string(x.Body) != want {
				t.Errorf("forwarded body %s, want %s", x.Body, want)
			}
			if s := leak(x.Payload, card); s != "" {
				t.Errorf("payload holds %q", s)
			}
			if r != nil && strings.Contains(r.Error(), card) {
				t.Errorf("message quotes the card: %s", r.Msg)
			}
		})
	}
}

// TestParseValue checks the value operator rules read is the one parse's,
// numbers kept as their text (1e400 is not lost to float64).
func TestParseValue(t *testing.T) {
	x := baseExchange()
	x.Body = []byte(`{"n":1e400,"s":"a","l":[true,null]}`)
	if r := (Parse{MaxDepth: 8, MaxRecordPayload: 4096, Value: true}).Run(context.Background(), x); r != nil {
		t.Fatal(r)
	}
	got, _ := json.Marshal(x.Value)
	if string(got) != `{"l":[true,null],"n":"1e400","s":"a"}` {
		t.Errorf("value %s", got)
	}
	if n, _ := x.Value.(map[string]any)["n"].(detect.Number); n != "1e400" {
		t.Errorf("the number is %#v, want detect.Number(\"1e400\")", x.Value.(map[string]any)["n"])
	}
	x = baseExchange()
	if r := (Parse{MaxDepth: 8, MaxRecordPayload: 4096}).Run(context.Background(), x); r != nil || x.Value != nil {
		t.Errorf("value built though no rule reads it: %v %v", x.Value, r)
	}
}

func TestDetect(t *testing.T) {
	cc := detect.Set(detect.CreditCard)
	tests := []struct {
		name      string
		edit      func(x *Exchange)
		found     detect.Set
		where     []string
		path, qry string // recorded path and query
	}{
		{name: "nothing", edit: func(*Exchange) {}, path: "/proxy"},
		{name: "card in the path", edit: func(x *Exchange) { x.Path = "/proxy/cards/" + card },
			found: cc, where: []string{"path"}, path: "/proxy/cards/[CREDIT_CARD_REDACTED]"},
		{name: "percent-encoded card in the path", edit: func(x *Exchange) { x.Path = "/proxy/%34%35%33%32%30%31%35%31%31%32%38%33%30%33%36%36" },
			found: cc, where: []string{"path"}, path: "/proxy/[CREDIT_CARD_REDACTED]"},
		{name: "card with encoded spaces in the path", edit: func(x *Exchange) { x.Path = "/proxy/4532%200151%201283%200366" },
			found: cc, where: []string{"path"}, path: "/proxy/[CREDIT_CARD_REDACTED]"},
		// Decoded, "%34321112860366" is thirteen digits and no card; as
		// sent, the fourteen after '%' are one (Luhn-valid, from a 3).
		{name: "card only in the path as sent", edit: func(x *Exchange) { x.Path = "/proxy/cards/%34321112860366/" },
			found: cc, where: []string{"path"}, path: "/proxy/cards/4321112860366/"},
		{name: "card only in the query as sent", edit: func(x *Exchange) { x.RawQuery = "q=%34321112860366" },
			found: cc, where: []string{"query"}, path: "/proxy", qry: "q=4321112860366"},
		{name: "ssn in the path", edit: func(x *Exchange) { x.Path = "/proxy/p/" + ssn },
			found: detect.Set(detect.SSN), where: []string{"path"}, path: "/proxy/p/[SSN_REDACTED]"},
		{name: "card in the query", edit: func(x *Exchange) { x.RawQuery = "card=" + card + "&x=1" },
			found: cc, where: []string{"query"}, path: "/proxy", qry: "card=[CREDIT_CARD_REDACTED]&x=1"},
		{name: "percent-encoded card in the query", edit: func(x *Exchange) { x.RawQuery = "card=%34%35%33%32015112830366" },
			found: cc, where: []string{"query"}, path: "/proxy", qry: "card=[CREDIT_CARD_REDACTED]"},
		{name: "form-encoded card in the query", edit: func(x *Exchange) { x.RawQuery = "card=4532+0151+1283+0366" },
			found: cc, where: []string{"query"}, path: "/proxy", qry: "card=[CREDIT_CARD_REDACTED]"},
		{name: "form-encoded card with encoded dashes", edit: func(x *Exchange) { x.RawQuery = "q=4532%2D0151%2D1283%2D0366" },
			found: cc, where: []string{"query"}, path: "/proxy", qry: "q=[CREDIT_CARD_REDACTED]"},
		{name: "card in a query with a bad escape", edit: func(x *Exchange) { x.RawQuery = "card=" + card + "&x=%zz" },
			found: cc, where: []string{"query"}, path: "/proxy", qry: "card=[CREDIT_CARD_REDACTED]&x=%zz"},
		{name: "form-encoded card in a query with a bad escape", edit: func(x *Exchange) { x.RawQuery = "card=4532+0151+1283+0366&x=%zz" },
			found: cc, where: []string{"query"}, path: "/proxy", qry: "card=[CREDIT_CARD_REDACTED]&x=%zz"},
		{name: "encoded card in a query with a truncated escape", edit: func(x *Exchange) { x.RawQuery = "card=%34532015112830366&x=%4" },
			found: cc, where: []string{"query"}, path: "/proxy", qry: "card=[CREDIT_CARD_REDACTED]&x=%4"},
		{name: "card in a header value", edit: func(x *Exchange) { x.Header = append(x.Header, Field{"X-Note", "pay with " + card}) },
			found: cc, where: []string{"header:x-note"}, path: "/proxy"},
		{name: "card in a header name", edit: func(x *Exchange) { x.Header = append(x.Header, Field{"X-" + card, "1"}) },
			found: cc, where: []string{"header:x-[CREDIT_CARD_REDACTED]"}, path: "/proxy"},
		{name: "email in a header value", edit: func(x *Exchange) { x.Header = append(x.Header, Field{"From", "alice@example.com"}) },
			found: detect.Set(detect.Email), where: []string{"header:from"}, path: "/proxy"},
		{name: "card in a trailer", edit: func(x *Exchange) { x.Trailer = Fields{{"X-Checksum", card}} },
			found: cc, where: []string{"trailer:x-checksum"}, path: "/proxy"},
		{name: "card in the override token", edit: func(x *Exchange) { x.Header = append(x.Header, Field{wire.Override, card}) }, path: "/proxy"},
		{name: "card in the override token, underscores", edit: func(x *Exchange) { x.Header = append(x.Header, Field{"x_user_override", card}) }, path: "/proxy"},
		{name: "card in Authorization", edit: func(x *Exchange) { x.Header = append(x.Header, Field{"Authorization", "Bearer " + card}) }, path: "/proxy"},
		{name: "card in Signature", edit: func(x *Exchange) { x.Header = append(x.Header, Field{wire.Signature, "iatp=:" + card + ":"}) }, path: "/proxy"},
		{name: "card in Signature-Input", edit: func(x *Exchange) {
			x.Header = append(x.Header, Field{wire.SignatureInput, `iatp=();nonce="` + card + `"`})
		}, path: "/proxy"},
		{name: "card in the attestation", edit: func(x *Exchange) { x.Header = append(x.Header, Field{wire.Attestation, card}) }, path: "/proxy"},
		{name: "Content-Digest is not scanned", edit: func(x *Exchange) {
			x.Header = append(x.Header, Field{wire.ContentDigest, "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"})
		}, path: "/proxy"},
		{name: "everywhere", edit: func(x *Exchange) {
			x.Path = "/proxy/" + card
			x.RawQuery = "s=" + ssn
			x.Header = append(x.Header, Field{"X-Note", card})
			x.Trailer = Fields{{"X-T", card}}
		}, found: cc | detect.Set(detect.SSN), where: []string{"path", "query", "header:x-note", "trailer:x-t"},
			path: "/proxy/[CREDIT_CARD_REDACTED]", qry: "s=[SSN_REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := baseExchange()
			tt.edit(x)
			if r := (Detect{}).Run(context.Background(), x); r != nil {
				t.Fatalf("Detect refused: %v", r)
			}
			if x.Found != tt.found || !slices.Equal(x.Where, tt.where) {
				t.Errorf("found %v in %q, want %v in %q", x.Found, x.Where, tt.found, tt.where)
			}
			if x.RecordedPath != tt.path || x.RecordedQuery != tt.qry {
				t.Errorf("recorded %q ? %q, want %q ? %q", x.RecordedPath, x.RecordedQuery, tt.path, tt.qry)
			}
			if s := leak([]byte(x.RecordedPath+"?"+x.RecordedQuery), card); s != "" {
				t.Errorf("the recorded path or query holds %q: %q ? %q", s, x.RecordedPath, x.RecordedQuery)
			}
			if strings.Contains(x.RecordedPath+x.RecordedQuery, ssn) {
				t.Errorf("the recorded path or query holds the SSN")
			}
		})
	}
}
