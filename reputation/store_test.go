package reputation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// testClock starts at a fixed time and advances one second per reading.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 1, 25, 10, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.t
	c.t = c.t.Add(time.Second)
	return t
}

// seqIDs makes ids "id-1", "id-2", …
func seqIDs() func() string {
	var n atomic.Int64
	return func() string { return fmt.Sprintf("id-%d", n.Add(1)) }
}

func newTestStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Clock == nil {
		cfg.Clock = newTestClock().Now
	}
	if cfg.NewID == nil {
		cfg.NewID = seqIDs()
	}
	s, err := NewStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func record(t testing.TB, s *Store, agentID, reason, severity string) Result {
	t.Helper()
	r, err := s.Record(context.Background(), Event{AgentID: agentID, Type: reason, Severity: severity})
	if err != nil {
		t.Fatalf("Record(%s, %s, %s): %v", agentID, reason, severity, err)
	}
	return r
}

func mustGet(t testing.TB, s *Store, agentID string) Snapshot {
	t.Helper()
	snap, ok := s.Get(agentID)
	if !ok {
		t.Fatalf("Get(%q): not found", agentID)
	}
	return snap
}

func TestRecordDeltas(t *testing.T) {
	tests := []struct {
		reason, severity string
		score            Points
		level            string
		positive, neg    int64
	}{
		{"hallucination", "critical", 300, LevelUnknown, 0, 1},
		{"hallucination", "high", 400, LevelStandard, 0, 1},
		{"hallucination", "medium", 450, LevelStandard, 0, 1},
		{"hallucination", "low", 475, LevelStandard, 0, 1},
		{"hallucination", "", 450, LevelStandard, 0, 1},
		{"hallucination", "bogus", 400, LevelStandard, 0, 1},
		{"failure", "critical", 450, LevelStandard, 0, 1},
		{"timeout", "", 450, LevelStandard, 0, 1},
		{"error", "low", 450, LevelStandard, 0, 1},
		{"success", "", 510, LevelStandard, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.reason+"/"+tt.severity, func(t *testing.T) {
			s := newTestStore(t, Config{})
			r := record(t, s, "a", tt.reason, tt.severity)
			if r.PreviousScore != NeutralScore || r.Score != tt.score || r.TrustLevel != tt.level {
				t.Fatalf("Result = %s → %s %s, want 5.00 → %s %s", r.PreviousScore, r.Score, r.TrustLevel, tt.score, tt.level)
			}
			snap := mustGet(t, s, "a")
			if snap.Score != tt.score || snap.TrustLevel != tt.level || snap.InitialScore != NeutralScore ||
				snap.TotalEvents != 1 || snap.PositiveEvents != tt.positive || snap.NegativeEvents != tt.neg {
				t.Fatalf("snapshot = %+v", snap)
			}
			if len(snap.RecentEvents) != 1 || snap.RecentEvents[0].Delta != tt.score-NeutralScore ||
				snap.RecentEvents[0].ID != r.Event.ID || snap.RecentEvents[0].Type != tt.reason {
				t.Fatalf("recent events = %+v, want the one applied (%+v)", snap.RecentEvents, r.Event)
			}
		})
	}
}

func TestTenSuccessesAreExactlySix(t *testing.T) {
	s := newTestStore(t, Config{})
	for range 10 {
		record(t, s, "a", TypeSuccess, "")
	}
	snap := mustGet(t, s, "a")
	if snap.Score != 600 || snap.TrustLevel != LevelTrusted {
		t.Fatalf("after ten successes: %s %s, want 6.00 trusted", snap.Score, snap.TrustLevel)
	}
	b, _ := json.Marshal(snap.Score)
	if string(b) != "6" {
		t.Fatalf("score JSON = %s, want 6", b)
	}
}

func TestClamp(t *testing.T) {
	t.Run("floor", func(t *testing.T) {
		s := newTestStore(t, Config{})
		want := []Points{300, 100, 0, 0}
		for i, w := range want {
			if r := record(t, s, "a", TypeHallucination, SeverityCritical); r.Score != w {
				t.Fatalf("critical #%d: score %s, want %s", i+1, r.Score, w)
			}
		}
		if snap := mustGet(t, s, "a"); snap.NegativeEvents != 4 || snap.TrustLevel != LevelUntrusted {
			t.Fatalf("snapshot = %+v", snap)
		}
		if r := record(t, s, "a", TypeSuccess, ""); r.Score != 10 {
			t.Fatalf("success after floor: %s, want 0.10", r.Score)
		}
	})
	t.Run("ceiling", func(t *testing.T) {
		s := newTestStore(t, Config{})
		for range 60 {
			record(t, s, "a", TypeSuccess, "")
		}
		snap := mustGet(t, s, "a")
		if snap.Score != MaxScore || snap.PositiveEvents != 60 || snap.TrustLevel != LevelVerifiedPartner {
			t.Fatalf("after 60 successes: %+v, want 10.00", snap.AgentScore)
		}
		if r := record(t, s, "a", TypeFailure, ""); r.Score != 950 {
			t.Fatalf("failure after ceiling: %s, want 9.50", r.Score)
		}
	})
}

func TestRecordValidation(t *testing.T) {
	base := func() Event {
		return Event{
			ID: "ev-1", AgentID: "agent-a", Type: "hallucination", Severity: "high",
			TraceID: "trace-1", Details: json.RawMessage(`{"claim": "the moon is cheese"}`), DetectedBy: "verifier-1",
		}
	}
	tests := []struct {
		name   string
		change func(*Event)
		want   string // "" for success
		is     error
	}{
		{"valid", func(*Event) {}, "", nil},
		{"delta given and right", func(e *Event) { e.Delta = -100 }, "", nil},
		{"details null", func(e *Event) { e.Details = json.RawMessage("null") }, "", nil},
		{"no id", func(e *Event) { e.ID = "" }, "", nil},
		{"details at limit", func(e *Event) {
			e.Details = json.RawMessage(`{"k":"` + strings.Repeat("x", MaxDetailsBytes-8) + `"}`)
		}, "", nil},
		{"agent id empty", func(e *Event) { e.AgentID = "" },
			"reputation: invalid event: agent_id: empty", ErrInvalidEvent},
		{"agent id long", func(e *Event) { e.AgentID = strings.Repeat("a", MaxAgentIDLen+1) },
			"reputation: invalid event: agent_id: 257 bytes exceeds the limit of 256", ErrInvalidEvent},
		{"agent id control", func(e *Event) { e.AgentID = "a\nb" },
			"reputation: invalid event: agent_id: control character U+000A", ErrInvalidEvent},
		{"agent id not utf-8", func(e *Event) { e.AgentID = "a\xffb" },
			"reputation: invalid event: agent_id: not valid UTF-8", ErrInvalidEvent},
		{"reason unknown", func(e *Event) { e.Type = "rudeness" },
			`reputation: unknown reason "rudeness": want one of hallucination, failure, timeout, error, success`, ErrUnknownReason},
		{"reason import", func(e *Event) { e.Type = "import" },
			`reputation: unknown reason "import": want one of hallucination, failure, timeout, error, success`, ErrUnknownReason},
		{"delta wrong", func(e *Event) { e.Delta = -200 },
			"reputation: invalid event: score_delta: -2.00 given, hallucination high costs -1.00", ErrInvalidEvent},
		{"id bad character", func(e *Event) { e.ID = "ev 1" },
			`reputation: invalid event: event_id: character ' ' at 2 is not one of [A-Za-z0-9._:-]`, ErrInvalidEvent},
		{"id long", func(e *Event) { e.ID = strings.Repeat("e", MaxEventIDLen+1) },
			"reputation: invalid event: event_id: 129 characters exceeds the limit of 128", ErrInvalidEvent},
		{"trace id bad", func(e *Event) { e.TraceID = "trace/1" },
			`reputation: invalid event: trace_id: holds '/' at position 5; only 1–128 characters of [A-Za-z0-9._:-] are allowed`, ErrInvalidEvent},
		{"detected_by control", func(e *Event) { e.DetectedBy = "v\x00" },
			"reputation: invalid event: detected_by: control character U+0000", ErrInvalidEvent},
		{"details too big", func(e *Event) {
			e.Details = json.RawMessage(`{"k":"` + strings.Repeat("x", MaxDetailsBytes-7) + `"}`)
		}, "reputation: invalid event: details: 4097 bytes exceeds the limit of 4096", ErrInvalidEvent},
		{"details array", func(e *Event) { e.Details = json.RawMessage(`[1]`) },
			"reputation: invalid event: details: not a JSON object", ErrInvalidEvent},
		{"details broken", func(e *Event) { e.Details = json.RawMessage(`{"a":`) },
			"reputation: invalid event: details: not valid JSON: unexpected end of JSON input", ErrInvalidEvent},
		{"time before 1970", func(e *Event) { e.Time = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) },
			"reputation: invalid event: timestamp: 1969-12-31T00:00:00Z is outside 1970–9999", ErrInvalidEvent},
		{"time after 9999", func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
			"reputation: invalid event: timestamp: 10000-01-01T00:00:00Z is outside 1970–9999", ErrInvalidEvent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, Config{})
			ev := base()
			tt.change(&ev)
			r, err := s.Record(context.Background(), ev)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Record error: %v", err)
				}
				if r.Score != 400 || r.Event.Delta != -100 || r.Event.Severity != SeverityHigh || r.Event.ID == "" {
					t.Fatalf("Result = %+v", r)
				}
				return
			}
			if err == nil || err.Error() != tt.want || !errors.Is(err, tt.is) {
				t.Fatalf("Record error = %v, want %q wrapping %v", err, tt.want, tt.is)
			}
			if s.Len() != 0 {
				t.Fatalf("a refused event created an agent")
			}
		})
	}
}

func TestRecordStoresCompactCopy(t *testing.T) {
	s := newTestStore(t, Config{})
	details := json.RawMessage(`{ "a" : 1 }`)
	r, err := s.Record(context.Background(), Event{AgentID: "a", Type: TypeFailure, Details: details, TraceID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	details[3] = 'X' // the caller reuses its buffer
	snap := mustGet(t, s, "a")
	if got := string(snap.RecentEvents[0].Details); got != `{"a":1}` {
		t.Fatalf("stored details = %s, want the compacted original", got)
	}
	snap.RecentEvents[0].Details[2] = 'Z' // a reader scribbles on its copy
	if got := string(mustGet(t, s, "a").RecentEvents[0].Details); got != `{"a":1}` {
		t.Fatalf("stored details changed through a snapshot: %s", got)
	}
	if r.Event.Time != time.Date(2026, 1, 25, 10, 0, 0, 0, time.UTC) || r.Event.ID != "id-1" {
		t.Fatalf("defaults: %+v", r.Event)
	}
}

func TestRecordIdempotent(t *testing.T) {
	s := newTestStore(t, Config{})
	ev := Event{ID: "slash-1", AgentID: "a", Type: TypeHallucination, Severity: SeverityCritical}
	if _, err := s.Record(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	before := mustGet(t, s, "a")
	r, err := s.Record(context.Background(), ev)
	if !errors.Is(err, ErrDuplicateEvent) || err.Error() != `reputation: duplicate event: "slash-1" for agent "a"` {
		t.Fatalf("replay error = %v, want ErrDuplicateEvent", err)
	}
	if r.Score != 300 || r.PreviousScore != 300 || r.TrustLevel != LevelUnknown {
		t.Fatalf("replay Result = %+v, want the unchanged 3.00", r)
	}
	after := mustGet(t, s, "a")
	if after.Score != before.Score || after.TotalEvents != 1 || len(after.RecentEvents) != 1 || !after.LastUpdated.Equal(before.LastUpdated) {
		t.Fatalf("replay changed the agent: before %+v after %+v", before.AgentScore, after.AgentScore)
	}
	// The same id for another agent is another event.
	if _, err := s.Record(context.Background(), Event{ID: "slash-1", AgentID: "b", Type: TypeSuccess}); err != nil {
		t.Fatalf("same id, other agent: %v", err)
	}
	// The documented limit: once the id leaves the retained window it applies again.
	for range RecentEvents {
		record(t, s, "a", TypeSuccess, "")
	}
	if _, err := s.Record(context.Background(), ev); err != nil {
		t.Fatalf("replay after the window: %v, want it applied", err)
	}
}

func TestRecentEventsCapped(t *testing.T) {
	s := newTestStore(t, Config{})
	const n = 2*RecentEvents + 50
	for range n {
		record(t, s, "a", TypeSuccess, "")
	}
	snap := mustGet(t, s, "a")
	if len(snap.RecentEvents) != RecentEvents || snap.TotalEvents != n {
		t.Fatalf("kept %d events of %d, want %d", len(snap.RecentEvents), snap.TotalEvents, RecentEvents)
	}
	for i, ev := range snap.RecentEvents {
		if want := fmt.Sprintf("id-%d", n-RecentEvents+1+i); ev.ID != want {
			t.Fatalf("event %d is %s, want %s (oldest first)", i, ev.ID, want)
		}
	}
	s.mu.RLock()
	c := cap(s.agents["a"].events)
	s.mu.RUnlock()
	if c != RecentEvents {
		t.Fatalf("ring capacity %d, want %d", c, RecentEvents)
	}
}

func TestGetDoesNotCreate(t *testing.T) {
	s := newTestStore(t, Config{})
	if _, ok := s.Get("ghost"); ok {
		t.Fatal("Get found an agent never recorded")
	}
	if _, ok := s.Score("ghost"); ok {
		t.Fatal("Score found an agent never recorded")
	}
	if s.Len() != 0 || len(s.Export().ReputationData) != 0 {
		t.Fatal("reads created an agent")
	}
	record(t, s, "a", TypeFailure, "")
	if p, ok := s.Score("a"); !ok || p != 450 {
		t.Fatalf("Score = %s, %v; want 4.50", p, ok)
	}
}

func TestZeroStoreDenies(t *testing.T) {
	var s Store
	if _, err := s.Record(context.Background(), Event{AgentID: "a", Type: TypeSuccess}); !errors.Is(err, ErrNoStore) {
		t.Fatalf("Record error = %v, want ErrNoStore", err)
	}
	if _, err := s.Import(context.Background(), "", []byte(`{"reputation_data":{}}`)); !errors.Is(err, ErrNoStore) {
		t.Fatalf("Import error = %v, want ErrNoStore", err)
	}
	if _, ok := s.Get("a"); ok {
		t.Fatal("Get found something")
	}
	if _, ok := s.Score("a"); ok {
		t.Fatal("Score found something")
	}
	if s.Len() != 0 || len(s.Export().ReputationData) != 0 {
		t.Fatal("zero store not empty")
	}
}

func TestNewStoreConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative max agents", Config{MaxAgents: -1}, "reputation: config: max agents -1 is negative"},
		{"negative max import", Config{MaxImportAgents: -1}, "reputation: config: max import agents -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewStore(tt.cfg); err == nil || err.Error() != tt.want {
				t.Fatalf("NewStore error = %v, want %q", err, tt.want)
			}
		})
	}
	s, err := NewStore(Config{})
	if err != nil || s.maxAgents != DefaultMaxAgents || s.maxImport != DefaultMaxImportAgents {
		t.Fatalf("defaults: %v %+v", err, s)
	}
	r, err := s.Record(context.Background(), Event{AgentID: "a", Type: TypeSuccess})
	if err != nil || len(r.Event.ID) != 36 || r.Event.Time.IsZero() {
		t.Fatalf("default id and clock: %+v, %v", r.Event, err)
	}
}

func TestRecordContextAndClock(t *testing.T) {
	s := newTestStore(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Record(ctx, Event{AgentID: "a", Type: TypeSuccess}); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled context: %v", err)
	}
	old := newTestStore(t, Config{Clock: func() time.Time { return time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC) }})
	_, err := old.Record(context.Background(), Event{AgentID: "a", Type: TypeSuccess, Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err == nil || err.Error() != "reputation: clock: 1960-01-01T00:00:00Z is outside 1970–9999" {
		t.Fatalf("broken clock: %v", err)
	}
	bad := newTestStore(t, Config{NewID: func() string { return "not an id" }})
	_, err = bad.Record(context.Background(), Event{AgentID: "a", Type: TypeSuccess})
	if !errors.Is(err, ErrInvalidEvent) {
		t.Fatalf("bad generated id: %v, want ErrInvalidEvent", err)
	}
	if s.Len()+old.Len()+bad.Len() != 0 {
		t.Fatal("a refused event created an agent")
	}
}

// TestStoreCopiesAgentIDs checks the store keeps no reference to the
// caller's bytes: HTTP front ends hand it strings that alias request
// buffers, which are reused for the next request.
func TestStoreCopiesAgentIDs(t *testing.T) {
	s, err := NewStore(Config{})
	if err != nil {
		t.Fatal(err)
	}
	buf := []byte("liar")
	id := unsafe.String(&buf[0], len(buf))
	if _, err := s.Record(context.Background(), Event{AgentID: id, Type: TypeError}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "expo")
	if _, ok := s.Get("liar"); !ok {
		t.Error("Get(liar) after the caller's buffer changed: not found")
	}
	if _, ok := s.Export().ReputationData["liar"]; !ok {
		t.Errorf("Export keys: %v", s.Export().ReputationData)
	}
}
