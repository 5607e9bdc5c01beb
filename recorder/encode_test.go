package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// oracleLine is what encoding/json (HTML escaping off) writes for r, with
// payload and details compacted and strings made valid UTF-8 as the
// recorder documents.
func oracleLine(t testing.TB, r Record) []byte {
	t.Helper()
	fix := func(s string) string {
		if utf8.ValidString(s) {
			return s
		}
		var b strings.Builder
		for i := 0; i < len(s); {
			c, n := utf8.DecodeRuneInString(s[i:])
			b.WriteRune(c) // RuneError for each invalid byte
			i += n
		}
		return b.String()
	}
	r.Kind, r.TraceID, r.AgentID = Kind(fix(string(r.Kind))), fix(r.TraceID), fix(r.AgentID)
	r.CallerID, r.Decision = fix(r.CallerID), fix(r.Decision)
	reasons := make([]string, len(r.Reasons))
	for i, s := range r.Reasons {
		reasons[i] = fix(s)
	}
	if r.Reasons != nil {
		r.Reasons = reasons
	}
	r.Time = r.Time.UTC()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		t.Fatalf("oracle: %v", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// encodeRecord runs the recorder's encoder on r at seq with prev, filling in
// r's hash fields, and returns the line without its newline.
func encodeRecord(t testing.TB, r *Record, seq uint64) ([]byte, error) {
	t.Helper()
	body, err := appendBody(nil, r)
	if err != nil {
		return nil, err
	}
	prev := zeroHash
	line, h := appendLine(nil, seq, body, &prev)
	r.Seq, r.PrevHash, r.Hash = seq, string(prev[:]), string(h[:])
	return line[:len(line)-1], nil
}

func TestLineMatchesEncodingJSON(t *testing.T) {
	base := func() Record {
		return Record{Kind: KindRequest, TraceID: "t-1", AgentID: "agent", Time: time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)}
	}
	tests := []struct {
		name string
		mod  func(*Record)
	}{
		{"minimal", func(*Record) {}},
		{"all fields", func(r *Record) {
			r.CallerID, r.Authenticated, r.Attested, r.Decision = "caller", true, true, "warn"
			r.Reasons = []string{"low trust", "no reversal"}
			r.Payload, r.Status, r.LatencyMs = []byte(`{"a":[1,2,{"b":null}]}`), 449, 12.5
			r.Details = []byte(`{"k":"v"}`)
		}},
		{"empty trace id", func(r *Record) { r.TraceID = "" }},
		{"payload with white space is compacted", func(r *Record) { r.Payload = []byte("{ \"a\" :\n 1 ,\t\"b\": [ ] }") }},
		{"payload scalar", func(r *Record) { r.Payload = []byte(`"just a string"`) }},
		{"payload null", func(r *Record) { r.Payload = []byte(`null`) }},
		{"html characters stay", func(r *Record) { r.Decision = "<a href='x'>&</a>" }},
		{"control characters", func(r *Record) { r.AgentID = "a\x00b\x01\b\f\n\r\t\x1f\"\\" }},
		{"line separators", func(r *Record) { r.CallerID = "x\u2028y\u2029z" }},
		{"non-ascii", func(r *Record) { r.Reasons = []string{"größe", "日本語", "🙂"} }},
		{"invalid utf-8", func(r *Record) { r.AgentID = "a\xffb\xc3" }},
		{"tiny latency", func(r *Record) { r.LatencyMs = 1e-7 }},
		{"huge latency", func(r *Record) { r.LatencyMs = 1e21 }},
		{"negative latency", func(r *Record) { r.LatencyMs = -0.001 }},
		{"negative status", func(r *Record) { r.Status = -1 }},
		{"local time zone", func(r *Record) { r.Time = time.Date(2026, 5, 6, 7, 8, 9, 0, time.FixedZone("X", 3600)) }},
		{"empty reasons entry", func(r *Record) { r.Reasons = []string{""} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.mod(&r)
			line, err := encodeRecord(t, &r, 42)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if len(r.Payload) > 0 {
				var c bytes.Buffer
				json.Compact(&c, r.Payload)
				r.Payload = c.Bytes()
			}
			if want := oracleLine(t, r); !bytes.Equal(line, want) {
				t.Fatalf("line differs from encoding/json\n got %s\nwant %s", line, want)
			}
			if bytes.IndexByte(line, '\n') >= 0 {
				t.Fatal("line holds a raw newline")
			}
			var back Record
			if err := decodeLine(line, &back); err != nil {
				t.Fatalf("decodeLine: %v", err)
			}
			f, err := parseFrame(line)
			if err != nil || !f.hashOK || f.seq != 42 {
				t.Fatalf("parseFrame = %+v, %v", f, err)
			}
		})
	}
}

func TestAppendRejects(t *testing.T) {
	l := openTest(t, t.TempDir(), Config{MaxRecordBytes: 2048})
	valid := func() *Record {
		return &Record{Kind: KindRequest, TraceID: "trace-1", AgentID: "a", Payload: []byte(`{"x":1}`), Details: []byte(`{"d":1}`)}
	}
	if _, err := l.Append(context.Background(), valid()); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	tests := []struct {
		name    string
		mod     func(*Record)
		is      error
		message string
	}{
		{"empty kind", func(r *Record) { r.Kind = "" }, ErrInvalidRecord, `kind "" is not`},
		{"upper-case kind", func(r *Record) { r.Kind = "Request" }, ErrInvalidRecord, `kind "Request" is not`},
		{"kind with dash", func(r *Record) { r.Kind = "a-b" }, ErrInvalidRecord, `kind "a-b" is not`},
		{"kind too long", func(r *Record) { r.Kind = Kind(strings.Repeat("a", 33)) }, ErrInvalidRecord, "is not 1-32 characters"},
		{"reserved retention", func(r *Record) { r.Kind = KindRetention }, ErrInvalidRecord, `kind "retention" is reserved`},
		{"reserved recovery", func(r *Record) { r.Kind = KindRecovery }, ErrInvalidRecord, `kind "recovery" is reserved`},
		{"reserved checkpoint", func(r *Record) { r.Kind = KindCheckpoint }, ErrInvalidRecord, `kind "checkpoint" is reserved`},
		{"trace id with space", func(r *Record) { r.TraceID = "a b" }, ErrInvalidTraceID, "must be 1-128 characters"},
		{"trace id too long", func(r *Record) { r.TraceID = strings.Repeat("a", 129) }, ErrInvalidTraceID, "must be 1-128 characters"},
		{"trace id non-ascii", func(r *Record) { r.TraceID = "tr\u00e4ce" }, ErrInvalidTraceID, "must be 1-128 characters"},
		{"payload not json", func(r *Record) { r.Payload = []byte(`{"x":`) }, ErrInvalidRecord, "payload: invalid JSON"},
		{"payload two values", func(r *Record) { r.Payload = []byte(`1 2`) }, ErrInvalidRecord, "payload: invalid JSON"},
		{"details array", func(r *Record) { r.Details = []byte(`[1]`) }, ErrInvalidRecord, "details: not a JSON object"},
		{"details null", func(r *Record) { r.Details = []byte(`null`) }, ErrInvalidRecord, "details: not a JSON object"},
		{"details not json", func(r *Record) { r.Details = []byte(`{`) }, ErrInvalidRecord, "details: invalid JSON"},
		{"latency NaN", func(r *Record) { r.LatencyMs = math.NaN() }, ErrInvalidRecord, "latency_ms NaN is not a finite number"},
		{"latency Inf", func(r *Record) { r.LatencyMs = math.Inf(1) }, ErrInvalidRecord, "latency_ms +Inf is not a finite number"},
		{"year 10000", func(r *Record) { r.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, ErrInvalidRecord, "time 10000 is outside years 0-9999"},
		{"too large", func(r *Record) { r.Payload = []byte(`"` + strings.Repeat("x", 2048) + `"`) }, ErrRecordTooLarge, "limit 2048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid()
			tt.mod(r)
			before := l.Stats().NextSeq
			_, err := l.Append(context.Background(), r)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("Append error = %v, want %v containing %q", err, tt.is, tt.message)
			}
			if got := l.Stats().NextSeq; got != before {
				t.Fatalf("a refused record took seq %d", before)
			}
		})
	}
	mustVerify(t, l.dir, VerifyOptions{})
}

func TestAppendAssignsAndCopies(t *testing.T) {
	clock := newFakeClock()
	l := openTest(t, t.TempDir(), Config{Clock: clock.Now})
	ctx := context.Background()
	payload := []byte(`{"card":"[CREDIT_CARD_REDACTED]"}`)
	reasons := []string{"first"}
	r1 := &Record{Kind: KindRequest, TraceID: "tr", AgentID: "a", Payload: payload, Reasons: reasons}
	s1, err := l.Append(ctx, r1)
	if err != nil {
		t.Fatal(err)
	}
	// The caller reuses its buffers: the log must not see it.
	copy(payload, `{"card":"4532015112830366000000"}`)
	reasons[0] = "changed"
	explicit := time.Date(2025, 12, 31, 23, 0, 0, 5, time.FixedZone("Y", -7200))
	r2 := &Record{Kind: KindResponse, TraceID: "tr", AgentID: "a", Time: explicit}
	s2, err := l.Append(ctx, r2)
	if err != nil {
		t.Fatal(err)
	}
	if s1 != 1 || s2 != 2 || r1.Seq != 1 || r2.Seq != 2 {
		t.Fatalf("seqs %d %d (records %d %d), want 1 2", s1, s2, r1.Seq, r2.Seq)
	}
	if r1.PrevHash != string(zeroHash[:]) || r2.PrevHash != r1.Hash || len(r1.Hash) != 64 {
		t.Fatalf("hash chain not assigned: %q %q %q", r1.PrevHash, r1.Hash, r2.PrevHash)
	}
	if !r1.Time.Equal(clock.Now()) || r1.Time.Location() != time.UTC {
		t.Fatalf("zero time became %v, want the clock's %v in UTC", r1.Time, clock.Now())
	}
	if !r2.Time.Equal(explicit) || r2.Time.Location() != time.UTC {
		t.Fatalf("explicit time became %v", r2.Time)
	}
	got, err := l.Trace(ctx, "tr", 0)
	if err != nil || len(got) != 2 {
		t.Fatalf("Trace = %d records, %v", len(got), err)
	}
	if string(got[0].Payload) != `{"card":"[CREDIT_CARD_REDACTED]"}` || got[0].Reasons[0] != "first" {
		t.Fatalf("stored record changed with the caller's buffers: %s %v", got[0].Payload, got[0].Reasons)
	}
	if got[0].Hash != r1.Hash || got[1].Hash != r2.Hash || !got[1].Time.Equal(explicit) {
		t.Fatalf("stored records differ from what Append returned")
	}
}

// FuzzRecordRoundTrip checks, for arbitrary field values, that the encoder
// either refuses the record or writes exactly what encoding/json writes, in
// a line that decodes, re-encodes identically and hashes correctly.
func FuzzRecordRoundTrip(f *testing.F) {
	f.Add("agent", "caller", "allow", "reason", []byte(`{"a":1}`), []byte(`{"d":true}`), 1.5, 200)
	f.Add("a\xffb", "\u2028", "<&>", "\x00\n", []byte(" [1, 2] "), []byte(`{}`), 1e-9, -3)
	f.Add("", "", "", "", []byte(`"\u00e9\ud800"`), []byte(nil), 0.0, 0)
	f.Fuzz(func(t *testing.T, agent, caller, decision, reason string, payload, details []byte, latency float64, status int) {
		r := Record{Kind: KindResponse, TraceID: "fuzz-1", AgentID: agent, CallerID: caller, Decision: decision,
			Reasons: []string{reason}, Payload: payload, Details: details, LatencyMs: latency, Status: status,
			Time: time.Unix(1700000000, 123456789)}
		line, err := encodeRecord(t, &r, 7)
		if err != nil {
			if !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			if json.Valid(payload) && (len(details) == 0 || json.Valid(details)) && !math.IsNaN(latency) && !math.IsInf(latency, 0) {
				// Only a non-object details may be refused then.
				if !strings.Contains(err.Error(), "details: not a JSON object") {
					t.Fatalf("valid record refused: %v", err)
				}
			}
			return
		}
		if len(payload) > 0 {
			var c bytes.Buffer
			json.Compact(&c, payload)
			r.Payload = c.Bytes()
		}
		if len(details) > 0 {
			var c bytes.Buffer
			json.Compact(&c, details)
			r.Details = c.Bytes()
		}
		if want := oracleLine(t, r); !bytes.Equal(line, want) {
			t.Fatalf("line differs from encoding/json\n got %q\nwant %q", line, want)
		}
		var back Record
		if err := decodeLine(line, &back); err != nil {
			t.Fatalf("decodeLine(%q): %v", line, err)
		}
	})
}

// FuzzDecodeLine feeds arbitrary bytes to the line parsers (what Verify,
// Open and Trace read from disk). Whatever they accept must be canonical.
func FuzzDecodeLine(f *testing.F) {
	r := Record{Kind: KindRequest, TraceID: "t", AgentID: "a", Payload: []byte(`{"x":[1,"y"]}`), Time: time.Unix(0, 0)}
	line, err := encodeRecord(f, &r, 1)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(line)
	f.Add([]byte(`{"seq":1,"kind":"request","trace_id":"t","time":"1970-01-01T00:00:00Z","agent_id":"a","prev_hash":"` +
		strings.Repeat("0", 64) + `","hash":"` + strings.Repeat("a", 64) + `"}`))
	f.Add([]byte(`{"seq":01}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		fr, ferr := parseFrame(line)
		parseHead(line)
		recordTime(line)
		var rec Record
		if err := decodeLine(line, &rec); err == nil {
			if ferr != nil || !fr.hashOK || fr.seq != rec.Seq {
				t.Fatalf("decodeLine accepted a line whose frame fails: %+v %v", fr, ferr)
			}
			body, err := appendBody(nil, &rec)
			if err != nil {
				t.Fatal(err)
			}
			var prev [hashHexLen]byte
			copy(prev[:], rec.PrevHash)
			again, _ := appendLine(nil, rec.Seq, body, &prev)
			if !bytes.Equal(again[:len(again)-1], line) {
				t.Fatalf("accepted line is not canonical")
			}
		}
	})
}

// TestPayloadValid: a payload flagged valid skips validation but is
// compacted exactly as a checked one, and what would break a line is still
// refused.
func TestPayloadValid(t *testing.T) {
	l := openTest(t, t.TempDir(), Config{})
	ctx := context.Background()
	tests := []struct {
		name    string
		payload string
		want    string // the payload as stored; "" when refused
	}{
		{"compact object", `{"a":1,"b":[true,null,"x y"]}`, `{"a":1,"b":[true,null,"x y"]}`},
		{"pretty object", "{\n  \"a\": 1,\r\n\t\"b\": [ true , \"x y\" ]\n}\n", `{"a":1,"b":[true,"x y"]}`},
		{"escapes kept", `  "a\"b\\c\n\u0000\u2028"  `, `"a\"b\\c\n\u0000\u2028"`},
		{"raw utf-8 kept", `{"é":"日本 語"}`, `{"é":"日本 語"}`},
		{"scalar", ` 12.5e3 `, `12.5e3`},
		{"raw newline in a string", "{\"a\":\"x\ny\"}", ""},
		{"escaped raw newline", "{\"a\":\"x\\\ny\"}", ""},
		{"NUL in a string", "\"x\x00\"", ""},
		{"control byte outside strings", "[1,\x01 2]", ""},
		{"unterminated string", `{"a":"x`, ""},
		{"dangling escape", `"x\`, ""},
		{"only white space", " \n\t ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Record{Kind: KindRequest, TraceID: "valid", AgentID: "a", Payload: []byte(tt.payload), PayloadValid: true}
			_, err := l.Append(ctx, r)
			if tt.want == "" {
				if !errors.Is(err, ErrInvalidRecord) || !strings.Contains(err.Error(), "payload: flagged valid but not JSON") {
					t.Fatalf("Append = %v, want the payload refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			recs, err := l.Trace(ctx, "valid", 0)
			if err != nil || string(recs[len(recs)-1].Payload) != tt.want {
				t.Fatalf("stored payload %s (%v), want %s", recs[len(recs)-1].Payload, err, tt.want)
			}
			if json.Valid([]byte(tt.payload)) {
				// Same bytes as the checked path.
				checked, err := appendCompact(nil, []byte(tt.payload))
				if err != nil || string(checked) != tt.want {
					t.Fatalf("checked path gives %s, %v", checked, err)
				}
			}
		})
	}
	mustVerify(t, l.dir, VerifyOptions{})

	// A payload wrongly flagged valid is recorded, and Verify says so.
	if _, err := l.Append(ctx, &Record{Kind: KindRequest, TraceID: "liar", AgentID: "a", Payload: []byte(`{"a":}`), PayloadValid: true}); err != nil {
		t.Fatal(err)
	}
	_, err := Verify(ctx, l.dir, VerifyOptions{})
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Problem != ProblemEdited || !strings.Contains(ve.Detail, "not valid JSON") {
		t.Fatalf("Verify = %v, want the record reported as not valid JSON", err)
	}
}

// FuzzCompactTrusted holds the fast path to json.Compact on valid JSON, and
// to never writing a control byte whatever it is given.
func FuzzCompactTrusted(f *testing.F) {
	f.Add([]byte(`{"a": [1, "x y", {"b" : null}]}`))
	f.Add([]byte("\"a\\\"\\\\\\n\"\n"))
	f.Add([]byte("{\"a\":\"x\ny\"}"))
	f.Fuzz(func(t *testing.T, src []byte) {
		got, err := appendCompactTrusted(nil, src)
		if err == nil {
			for _, c := range got {
				if c < 0x20 {
					t.Fatalf("control byte %#x in %q", c, got)
				}
			}
		}
		if !json.Valid(src) {
			return
		}
		var want bytes.Buffer
		json.Compact(&want, src)
		if err != nil || !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("appendCompactTrusted(%q) = %q, %v; json.Compact gives %q", src, got, err, want.Bytes())
		}
	})
}

// BenchmarkEncodeValid measures encoding and hashing one record whose
// payload is flagged valid (compare BenchmarkEncode).
func BenchmarkEncodeValid(b *testing.B) {
	r := benchRecord(1)
	r.PayloadValid = true
	r.Time = time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	var body, line []byte
	var prev [hashHexLen]byte
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var err error
		if body, err = appendBody(body[:0], r); err != nil {
			b.Fatal(err)
		}
		line, prev = appendLine(line[:0], uint64(i), body, &prev)
	}
	b.SetBytes(int64(len(line)))
}
