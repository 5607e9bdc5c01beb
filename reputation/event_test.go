package reputation

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDelta(t *testing.T) {
	tests := []struct {
		reason, severity string
		want             Points
		wantSev          string
	}{
		{"hallucination", "critical", -200, SeverityCritical},
		{"hallucination", "high", -100, SeverityHigh},
		{"hallucination", "medium", -50, SeverityMedium},
		{"hallucination", "low", -25, SeverityLow},
		{"hallucination", "", -50, SeverityMedium},            // missing counts as medium
		{"hallucination", "catastrophic", -100, SeverityHigh}, // unknown costs as much as high
		{"hallucination", " CRITICAL ", -200, SeverityCritical},
		{"Hallucination", "Low", -25, SeverityLow},
		{"failure", "critical", -50, SeverityCritical},
		{"failure", "low", -50, SeverityLow},
		{"failure", "", -50, SeverityMedium},
		{"timeout", "high", -50, SeverityHigh},
		{"timeout", "whatever", -50, SeverityHigh},
		{"error", "", -50, SeverityMedium},
		{"error", "low", -50, SeverityLow},
		{"success", "", 10, SeverityMedium},
		{"success", "critical", 10, SeverityCritical},
		{" SUCCESS ", "low", 10, SeverityLow},
	}
	for _, tt := range tests {
		t.Run(tt.reason+"/"+tt.severity, func(t *testing.T) {
			got, sev, err := Delta(tt.reason, tt.severity)
			if err != nil {
				t.Fatalf("Delta error: %v", err)
			}
			if got != tt.want || sev != tt.wantSev {
				t.Fatalf("Delta(%q, %q) = %s, %q; want %s, %q", tt.reason, tt.severity, got, sev, tt.want, tt.wantSev)
			}
		})
	}
}

func TestDeltaUnknownReason(t *testing.T) {
	for _, reason := range []string{"", "import", "slash", "hallucinations", "succes"} {
		t.Run(reason, func(t *testing.T) {
			_, _, err := Delta(reason, "high")
			want := `reputation: unknown reason "` + reason + `": want one of hallucination, failure, timeout, error, success`
			if !errors.Is(err, ErrUnknownReason) || err.Error() != want {
				t.Fatalf("Delta(%q) error = %v, want %q", reason, err, want)
			}
		})
	}
}

func TestEventJSON(t *testing.T) {
	ev := Event{
		ID: "e1", AgentID: "a", Type: TypeHallucination, Severity: SeverityHigh, Delta: -100,
		Time:    time.Date(2026, 1, 25, 10, 0, 0, 123456000, time.FixedZone("x", 3600)),
		TraceID: "t-1", Details: json.RawMessage(`{"claim":"x"}`), DetectedBy: "verifier",
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"event_id":"e1","agent_id":"a","event_type":"hallucination","severity":"high","score_delta":-1,` +
		`"timestamp":"2026-01-25T09:00:00.123456Z","trace_id":"t-1","details":{"claim":"x"},"detected_by":"verifier"}`
	if string(b) != want {
		t.Fatalf("Marshal =\n%s\nwant\n%s", b, want)
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != ev.ID || back.Delta != ev.Delta || !back.Time.Equal(ev.Time) || string(back.Details) != string(ev.Details) ||
		back.TraceID != ev.TraceID || back.DetectedBy != ev.DetectedBy || back.Severity != ev.Severity || back.Type != ev.Type {
		t.Fatalf("round trip = %+v, want %+v", back, ev)
	}

	bare := Event{ID: "e2", AgentID: "a", Type: TypeSuccess, Severity: SeverityMedium, Delta: 10,
		Time: time.Date(2026, 1, 25, 10, 0, 0, 0, time.UTC)}
	b, _ = json.Marshal(bare)
	want = `{"event_id":"e2","agent_id":"a","event_type":"success","severity":"medium","score_delta":0.1,` +
		`"timestamp":"2026-01-25T10:00:00Z","trace_id":null,"details":null,"detected_by":null}`
	if string(b) != want {
		t.Fatalf("Marshal =\n%s\nwant\n%s", b, want)
	}
}

// pythonEvent is an event as the Python package exports it: a float delta
// and a naive ISO 8601 timestamp.
const pythonEvent = `{"event_id":"5f0c","agent_id":"a","event_type":"success","severity":"low","score_delta":0.1,` +
	`"timestamp":"2026-01-25T10:00:00.123456","trace_id":null,"details":null,"detected_by":null}`

func TestEventUnmarshalPython(t *testing.T) {
	var ev Event
	if err := json.Unmarshal([]byte(pythonEvent), &ev); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 25, 10, 0, 0, 123456000, time.UTC); !ev.Time.Equal(want) || ev.Time.Location() != time.UTC {
		t.Fatalf("Time = %v, want %v UTC", ev.Time, want)
	}
	if ev.Delta != 10 || ev.TraceID != "" || ev.Details != nil || ev.DetectedBy != "" {
		t.Fatalf("decoded %+v", ev)
	}
}

func TestEventUnmarshalErrors(t *testing.T) {
	tests := []struct {
		name, from, to, want string
	}{
		{"event_id missing", `"event_id":"5f0c",`, ``, "event_id: missing"},
		{"event_id number", `"event_id":"5f0c"`, `"event_id":5`, "cannot unmarshal number"},
		{"event_type missing", `"event_type":"success",`, ``, "event_type: missing"},
		{"timestamp missing", `,"timestamp":"2026-01-25T10:00:00.123456"`, ``, "timestamp: missing"},
		{"timestamp bad", `2026-01-25T10:00:00.123456`, `yesterday`, `timestamp: "yesterday" is not an ISO 8601 timestamp`},
		{"score_delta missing", `"score_delta":0.1,`, ``, "score_delta: missing"},
		{"score_delta null", `"score_delta":0.1`, `"score_delta":null`, "score_delta: missing"},
		{"score_delta string", `"score_delta":0.1`, `"score_delta":"0.1"`, `score_delta: reputation: invalid points: "\"0.1\"" is not a JSON number`},
		{"details array", `"details":null`, `"details":[1]`, "details: not a JSON object"},
		{"details string", `"details":null`, `"details":"x"`, "details: not a JSON object"},
		{"severity number", `"severity":"low"`, `"severity":1`, "cannot unmarshal number"},
		{"not an object", pythonEvent, `[1]`, "cannot unmarshal array"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(pythonEvent, tt.from, tt.to, 1)
			if in == pythonEvent {
				t.Fatalf("replacement %q not found", tt.from)
			}
			var ev Event
			err := json.Unmarshal([]byte(in), &ev)
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want ErrInvalidEvent containing %q", err, tt.want)
			}
		})
	}
}

func TestParseTime(t *testing.T) {
	want := time.Date(2026, 1, 25, 10, 0, 0, 0, time.UTC)
	frac := want.Add(123456 * time.Microsecond)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-01-25T10:00:00Z", want},
		{"2026-01-25T10:00:00+00:00", want},
		{"2026-01-25T11:00:00+01:00", want},
		{"2026-01-25T10:00:00", want},
		{"2026-01-25 10:00:00", want},
		{"2026-01-25 10:00:00+00:00", want},
		{"2026-01-25T10:00:00.123456", frac},
		{"2026-01-25T10:00:00.123456Z", frac},
		{"2026-01-25T10:00:00.123456+00:00", frac},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTime(tt.in)
			if err != nil || !got.Equal(tt.want) || got.Location() != time.UTC {
				t.Fatalf("parseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "2026-01-25", "10:00:00", "2026-13-25T10:00:00Z", "2026-01-25T10:00:00 UTC",
		"2026-01-25T10:00:00." + strings.Repeat("1", 60)} {
		t.Run("bad/"+truncate(bad, 30), func(t *testing.T) {
			if got, err := parseTime(bad); err == nil {
				t.Fatalf("parseTime(%q) = %v, want error", bad, got)
			}
		})
	}
}
