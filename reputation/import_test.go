package reputation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// pythonExport is a snapshot as the Python package exports it: float scores
// with drift, naive ISO 8601 timestamps, nulls.
const pythonExport = `{
  "reputation_data": {
    "a": {
      "agent_id": "a",
      "score": 3.5,
      "initial_score": 5.0,
      "total_events": 3,
      "positive_events": 0,
      "negative_events": 3,
      "last_updated": "2026-01-25T10:00:00.123456",
      "recent_events": [` + pythonEvent + `]
    },
    "b": {"agent_id": "b", "score": 5.9999999999999964, "initial_score": 5.0, "total_events": 10,
          "positive_events": 10, "negative_events": 0, "last_updated": "2026-01-25T10:00:00", "recent_events": []}
  },
  "timestamp": "2026-01-25T10:00:01.5"
}`

// exportJSON returns the store's export as JSON, for before/after comparisons.
func exportJSON(t testing.TB, s *Store) string {
	t.Helper()
	b, err := json.Marshal(s.Export())
	if err != nil {
		t.Fatal(err)
	}
	// The export timestamp reads the clock; leave it out.
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return string(m["reputation_data"])
}

func TestImportPython(t *testing.T) {
	s := newTestStore(t, Config{})
	for range 20 {
		record(t, s, "b", TypeSuccess, "") // b stands at 7.00 locally
	}
	record(t, s, "c", TypeFailure, "")
	n, err := s.Import(context.Background(), "peer-1", []byte(pythonExport))
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("agents updated = %d, want 2 (a created at 3.50, b lowered to 6.00)", n)
	}
	a := mustGet(t, s, "a")
	if a.Score != 350 || a.TotalEvents != 1 || a.NegativeEvents != 1 || a.PositiveEvents != 0 || len(a.RecentEvents) != 1 {
		t.Fatalf("a = %+v, want 3.50 with one import event (the peer's counts are not taken)", a.AgentScore)
	}
	ev := a.RecentEvents[0]
	if ev.Type != TypeImport || ev.Delta != -150 || ev.DetectedBy != "peer-1" || ev.Severity != "" ||
		string(ev.Details) != `{"imported_score":3.5,"previous_score":5}` {
		t.Fatalf("import event = %+v", ev)
	}
	b := mustGet(t, s, "b")
	if b.Score != 600 || b.TrustLevel != LevelTrusted || b.TotalEvents != 21 || b.PositiveEvents != 20 || b.NegativeEvents != 1 {
		t.Fatalf("b = %+v, want 6.00 (5.9999999999999964 rounded) with local counts plus the import", b.AgentScore)
	}
	if ev := b.RecentEvents[len(b.RecentEvents)-1]; ev.Delta != -100 || string(ev.Details) != `{"imported_score":6,"previous_score":7}` {
		t.Fatalf("b's import event = %+v", ev)
	}
	if c := mustGet(t, s, "c"); c.Score != 450 || c.TotalEvents != 1 {
		t.Fatalf("c, absent from the import, changed: %+v", c.AgentScore)
	}
	// Importing the same snapshot again changes nothing.
	before := exportJSON(t, s)
	if n, err := s.Import(context.Background(), "peer-1", []byte(pythonExport)); err != nil || n != 0 {
		t.Fatalf("second import: %d, %v; want 0, nil", n, err)
	}
	if after := exportJSON(t, s); after != before {
		t.Fatal("a repeated import changed the store")
	}
	checkInvariants(t, s)
}

func TestImportMerge(t *testing.T) {
	tests := []struct {
		name         string
		local        []string // reasons recorded for "x" before the import
		imported     string
		want         Points
		wantN        int
		wantNotFound bool
	}{
		{"lower import wins", []string{"success", "success"}, "4", 400, 1, false},
		{"lower local wins", []string{"failure", "failure"}, "4.5", 400, 0, false},
		{"equal is no change", []string{"failure"}, "4.5", 450, 0, false},
		{"higher import cannot raise", []string{"failure"}, "10", 450, 0, false},
		{"unknown agent capped at 5", nil, "9.5", 0, 0, true},
		{"unknown agent at 5 is not created", nil, "5", 0, 0, true},
		{"unknown agent lowered", nil, "4.99", 499, 1, false},
		{"unknown agent to zero", nil, "0", 0, 1, false},
		{"rounded before merging", []string{"success"}, "5.0949999", 509, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, Config{})
			for _, r := range tt.local {
				record(t, s, "x", r, "")
			}
			n, err := s.Import(context.Background(), "", []byte(`{"reputation_data":{"x":{"score":`+tt.imported+`}}}`))
			if err != nil || n != tt.wantN {
				t.Fatalf("Import = %d, %v; want %d, nil", n, err, tt.wantN)
			}
			p, ok := s.Score("x")
			if tt.wantNotFound {
				if ok {
					t.Fatalf("x created at %s, want no entry", p)
				}
				return
			}
			if !ok || p != tt.want {
				t.Fatalf("x = %s, %v; want %s", p, ok, tt.want)
			}
		})
	}
}

// validEntry is the baseline for TestImportInvalid.
const validEntry = `{"agent_id":"a","score":3.5,"initial_score":5,"total_events":3,"positive_events":0,` +
	`"negative_events":3,"last_updated":"2026-01-25T10:00:00","recent_events":[` + pythonEvent + `]}`

func TestImportInvalid(t *testing.T) {
	doc := func(entry string) string {
		return `{"reputation_data":{"ok":{"score":1},"a":` + entry + `},"timestamp":"2026-01-25T10:00:00Z"}`
	}
	entry := func(from, to string) string {
		e := strings.Replace(validEntry, from, to, 1)
		if e == validEntry {
			panic("replacement not found: " + from)
		}
		return doc(e)
	}
	const p = "reputation: invalid import: "
	tests := []struct {
		name, body, want string
	}{
		{"not JSON", `{`, p + "unexpected EOF"},
		{"empty", ``, p + "unexpected EOF"},
		{"array", `[]`, p + "not a JSON object"},
		{"NaN", `{"reputation_data":{"a":{"score":NaN}}}`, p + `agent "a": invalid character 'N' looking for beginning of value`},
		{"trailing data", doc(validEntry) + `{}`, p + "data after the JSON object"},
		{"reputation_data missing", `{"timestamp":"2026-01-25T10:00:00Z"}`, p + "reputation_data: missing"},
		{"reputation_data array", `{"reputation_data":[]}`, p + "reputation_data: not a JSON object"},
		{"reputation_data twice", `{"reputation_data":{},"reputation_data":{}}`, p + `key "reputation_data" appears twice`},
		{"timestamp bad", `{"reputation_data":{},"timestamp":"now"}`, p + `timestamp: "now" is not an ISO 8601 timestamp`},
		{"timestamp null is fine, a bad entry is not", `{"timestamp":null,"reputation_data":{"a":{"score":-1}}}`, p + `agent "a": score: -1 is outside [0, 10]`},
		{"timestamp number", `{"reputation_data":{},"timestamp":1}`, p + `timestamp: not a string`},
		{"agent twice", `{"reputation_data":{"a":{"score":1},"a":{"score":9}}}`, p + `reputation_data: key "a" appears twice`},
		{"agent key empty", `{"reputation_data":{"":{"score":1}}}`, p + `agent_id: empty`},
		{"agent key control", `{"reputation_data":{"a\u0007":{"score":1}}}`, p + `agent "a\a": agent_id: control character U+0007`},
		{"entry not object", doc(`4`), p + `agent "a": not a JSON object`},
		{"entry field twice", entry(`"score":3.5`, `"score":3.5,"score":9`), p + `agent "a": key "score" appears twice`},
		{"agent_id differs", entry(`"agent_id":"a"`, `"agent_id":"b"`), p + `agent "a": agent_id: "b" differs from the key`},
		{"agent_id number", entry(`"agent_id":"a"`, `"agent_id":1`), p + `agent "a": agent_id: not a string`},
		{"score missing", entry(`"score":3.5,`, ``), p + `agent "a": score: missing`},
		{"score null", entry(`"score":3.5`, `"score":null`), p + `agent "a": score: not a number`},
		{"score string", entry(`"score":3.5`, `"score":"3.5"`), p + `agent "a": score: not a number`},
		{"score above 10", entry(`"score":3.5`, `"score":10.005`), p + `agent "a": score: 10.005 is outside [0, 10]`},
		{"score negative", entry(`"score":3.5`, `"score":-0.005`), p + `agent "a": score: -0.005 is outside [0, 10]`},
		{"score huge", entry(`"score":3.5`, `"score":1e300`), p + `agent "a": score: reputation: invalid points: "1e300" is out of range`},
		{"initial_score above 10", entry(`"initial_score":5`, `"initial_score":11`), p + `agent "a": initial_score: 11 is outside [0, 10]`},
		{"total_events negative", entry(`"total_events":3`, `"total_events":-1`), p + `agent "a": total_events: -1 is not a non-negative integer`},
		{"positive_events fraction", entry(`"positive_events":0`, `"positive_events":0.5`), p + `agent "a": positive_events: 0.5 is not a non-negative integer`},
		{"negative_events string", entry(`"negative_events":3`, `"negative_events":"3"`), p + `agent "a": negative_events: "3" is not a non-negative integer`},
		{"negative_events null", entry(`"negative_events":3`, `"negative_events":null`), p + `agent "a": negative_events: null is not a non-negative integer`},
		{"last_updated bad", entry(`"last_updated":"2026-01-25T10:00:00"`, `"last_updated":"soon"`), p + `agent "a": last_updated: "soon" is not an ISO 8601 timestamp`},
		{"recent_events object", entry(`"recent_events":[`+pythonEvent+`]`, `"recent_events":{}`), p + `agent "a": recent_events: not an array`},
		{"recent_events bad event", entry(`"score_delta":0.1`, `"score_delta":"x"`), p + `agent "a": recent_events[0]: reputation: invalid event: score_delta: reputation: invalid points: "\"x\"" is not a JSON number`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, Config{})
			record(t, s, "ok", TypeSuccess, "")
			before := exportJSON(t, s)
			n, err := s.Import(context.Background(), "peer", []byte(tt.body))
			if err == nil || err.Error() != tt.want || !errors.Is(err, ErrInvalidImport) {
				t.Fatalf("Import error = %v, want %q wrapping ErrInvalidImport", err, tt.want)
			}
			if n != 0 || exportJSON(t, s) != before {
				t.Fatal("a refused import changed the store")
			}
		})
	}
}

func TestImportLimits(t *testing.T) {
	ctx := context.Background()
	t.Run("too many entries", func(t *testing.T) {
		s := newTestStore(t, Config{MaxImportAgents: 3})
		body := `{"reputation_data":{"a":{"score":1},"b":{"score":1},"c":{"score":1},"d":{"score":1}}}`
		_, err := s.Import(ctx, "", []byte(body))
		want := "reputation: invalid import: reputation_data: more than 3 entries"
		if err == nil || err.Error() != want {
			t.Fatalf("error = %v, want %q", err, want)
		}
		if s.Len() != 0 {
			t.Fatal("changed the store")
		}
		if n, err := s.Import(ctx, "", []byte(strings.Replace(body, `,"d":{"score":1}`, "", 1))); err != nil || n != 3 {
			t.Fatalf("at the limit: %d, %v", n, err)
		}
	})
	t.Run("store full refuses the whole import", func(t *testing.T) {
		s := newTestStore(t, Config{MaxAgents: 3})
		record(t, s, "bad", TypeFailure, "")
		record(t, s, "good", TypeSuccess, "")
		before := exportJSON(t, s)
		// "good" is lowered (and so stops being evictable); that leaves room
		// for one new agent, and the import brings two.
		body := `{"reputation_data":{"good":{"score":4},"n1":{"score":1},"n2":{"score":1}}}`
		_, err := s.Import(ctx, "", []byte(body))
		want := "reputation: store full: import needs 2 new agents, room for 1"
		if err == nil || err.Error() != want || !errors.Is(err, ErrStoreFull) {
			t.Fatalf("error = %v, want %q", err, want)
		}
		if exportJSON(t, s) != before {
			t.Fatal("a refused import changed the store")
		}
	})
	t.Run("evicts evictable agents for room", func(t *testing.T) {
		s := newTestStore(t, Config{MaxAgents: 3})
		record(t, s, "bad", TypeFailure, "")
		record(t, s, "good", TypeSuccess, "")
		record(t, s, "fine", TypeSuccess, "")
		n, err := s.Import(ctx, "", []byte(`{"reputation_data":{"good":{"score":4},"n1":{"score":1}}}`))
		if err != nil || n != 2 {
			t.Fatalf("Import = %d, %v", n, err)
		}
		if got := fmt.Sprint(ids(s)); got != "[bad good n1]" {
			t.Fatalf("agents = %s, want [bad good n1]: fine evicted, good lowered and kept", got)
		}
		checkInvariants(t, s)
	})
	t.Run("canceled context", func(t *testing.T) {
		s := newTestStore(t, Config{})
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Import(cctx, "", []byte(pythonExport)); !errors.Is(err, context.Canceled) || s.Len() != 0 {
			t.Fatalf("error = %v, len %d", err, s.Len())
		}
	})
	t.Run("bad source", func(t *testing.T) {
		s := newTestStore(t, Config{})
		_, err := s.Import(ctx, "peer\n", []byte(pythonExport))
		if err == nil || err.Error() != "reputation: import source: control character U+000A" || s.Len() != 0 {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("bad id generator", func(t *testing.T) {
		s := newTestStore(t, Config{NewID: func() string { return "" }})
		_, err := s.Import(ctx, "", []byte(pythonExport))
		if err == nil || err.Error() != "reputation: import: new event id: empty" || s.Len() != 0 {
			t.Fatalf("error = %v", err)
		}
	})
}

// TestExportGolden pins the export format the Python package and peers read.
// Regenerate with: go test ./reputation -run TestExportGolden -update
func TestExportGolden(t *testing.T) {
	s := newTestStore(t, Config{})
	ctx := context.Background()
	for range 10 {
		record(t, s, "coder", TypeSuccess, "")
	}
	_, err := s.Record(ctx, Event{ID: "7d7f5c3e-0000-4000-8000-000000000001", AgentID: "liar", Type: "hallucination",
		Severity: "HIGH", TraceID: "trace-42", Details: json.RawMessage(`{"claim": "2+2=5", "confidence": 0.97}`),
		DetectedBy: "fact-checker"})
	if err != nil {
		t.Fatal(err)
	}
	record(t, s, "liar", TypeTimeout, "")
	if _, err := s.Import(ctx, "peer-eu", []byte(`{"reputation_data":{"liar":{"score":3.25},"spammer":{"score":1.5}}}`)); err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(s.Export(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "export.golden.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("export differs from %s (run with -update after checking):\n%s", path, got)
	}

	// What we export, a peer (or we) can import.
	peer := newTestStore(t, Config{})
	n, err := peer.Import(ctx, "", want)
	if err != nil || n != 2 {
		t.Fatalf("importing our own export: %d, %v; want 2 (liar and spammer; coder is above 5)", n, err)
	}
	if p, _ := peer.Score("liar"); p != 325 {
		t.Fatalf("liar on the peer = %s, want 3.25", p)
	}

	// GET /reputation/{id} serves a Snapshot: the same shape plus trust_level.
	snap, _ := s.Get("coder")
	b, _ := json.Marshal(snap)
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	keys := sortedIDs(m)
	if fmt.Sprint(keys) != "[agent_id initial_score last_updated negative_events positive_events recent_events score total_events trust_level]" ||
		string(m["score"]) != "6" || string(m["trust_level"]) != `"trusted"` {
		t.Fatalf("snapshot JSON = %s", b)
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil || back.Score != 600 || len(back.RecentEvents) != 10 || back.TrustLevel != LevelTrusted {
		t.Fatalf("snapshot does not decode back: %v %+v", err, back)
	}
}
