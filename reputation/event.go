package reputation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/iatp/iatp/internal/wire"
)

// Event types. The first five are the reasons Record accepts; TypeImport is
// written only by Import, to explain a score lowered by a peer's snapshot.
const (
	TypeHallucination = "hallucination"
	TypeFailure       = "failure"
	TypeTimeout       = "timeout"
	TypeError         = "error"
	TypeSuccess       = "success"
	TypeImport        = "import"
)

// Severities, as normalized by Delta.
const (
	SeverityCritical = "critical"
	SeverityHigh     = "high"
	SeverityMedium   = "medium"
	SeverityLow      = "low"
)

// Limits on event fields.
const (
	// MaxDetailsBytes is the largest details document an event may carry.
	MaxDetailsBytes = 4 << 10
	// MaxEventIDLen is the longest event id; ids use [A-Za-z0-9._:-].
	MaxEventIDLen = 128
	// MaxTraceIDLen is the longest trace id; trace ids use [A-Za-z0-9._:-]
	// as the protocol's X-Agent-Trace-ID does.
	MaxTraceIDLen = wire.MaxTraceIDLen
	// MaxAgentIDLen is the longest agent id (and reporter name), in bytes.
	MaxAgentIDLen = 256
)

// Errors callers branch on.
var (
	// ErrUnknownReason means an event type is none of the reasons Record
	// accepts; the slash endpoint answers it with 400.
	ErrUnknownReason = errors.New("reputation: unknown reason")
	// ErrInvalidEvent means an event field is malformed or out of bounds.
	ErrInvalidEvent = errors.New("reputation: invalid event")
)

// Event is one thing that happened to an agent's reputation. Events are the
// unit a mesh exchanges: ID makes them idempotent, Time and ID order them.
//
// Its JSON is the Python package's event shape: event_id, agent_id,
// event_type, severity, score_delta (a number), timestamp, trace_id (null
// when empty), details (an object or null) and detected_by (null when
// empty).
type Event struct {
	// ID identifies the event; Record makes a UUID when it is empty.
	ID string
	// AgentID is the agent the event is about.
	AgentID string
	// Type is the reason: one of the Type constants.
	Type string
	// Severity is one of the Severity constants ("" for import events).
	Severity string
	// Delta is the change the event makes before clamping. Record computes
	// it from Type and Severity.
	Delta Points
	// Time is when the event happened, in UTC, to the microsecond (the
	// precision of the Python package's timestamps).
	Time time.Time
	// TraceID is the trace the event belongs to, if any.
	TraceID string
	// Details is a JSON object with whatever the reporter adds, or nil.
	Details json.RawMessage
	// DetectedBy names the reporter (a verifier, the sidecar, a peer).
	DetectedBy string
}

// Delta returns the score change of an event with the given reason and
// severity, and the severity normalized: reason and severity are matched
// without regard to case or surrounding spaces; a missing severity counts as
// medium and an unknown one as high (and is reported as "high").
//
//	hallucination critical/high/medium/low  −2.00/−1.00/−0.50/−0.25
//	failure, timeout, error                 −0.50 (any severity)
//	success                                 +0.10
//
// Any other reason is an error wrapping ErrUnknownReason that lists the
// accepted ones.
func Delta(reason, severity string) (Points, string, error) {
	typ, ok := parseType(reason)
	if !ok || typ == typImport || typ == typSummary {
		return 0, "", fmt.Errorf("%w %q: want one of hallucination, failure, timeout, error, success",
			ErrUnknownReason, truncate(reason, 64))
	}
	sev := parseSeverity(severity)
	return deltaOf(typ, sev), sevNames[sev], nil
}

// Internal codes for event types and severities, so that a retained event
// costs two bytes for them instead of two strings.
type evType uint8

const (
	typInvalid evType = iota
	typHallucination
	typFailure
	typTimeout
	typError
	typSuccess
	typImport
	typSummary
)

var typeNames = [...]string{"", TypeHallucination, TypeFailure, TypeTimeout, TypeError, TypeSuccess, TypeImport, TypeSummary}

type severity uint8

const (
	sevNone severity = iota
	sevLow
	sevMedium
	sevHigh
	sevCritical
)

var sevNames = [...]string{"", SeverityLow, SeverityMedium, SeverityHigh, SeverityCritical}

func parseType(s string) (evType, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	for i, n := range typeNames {
		if i != 0 && s == n {
			return evType(i), true
		}
	}
	return typInvalid, false
}

func parseSeverity(s string) severity {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return sevMedium
	}
	for i, n := range sevNames {
		if i != 0 && s == n {
			return severity(i)
		}
	}
	return sevHigh
}

func deltaOf(t evType, s severity) Points {
	switch t {
	case typHallucination:
		switch s {
		case sevCritical:
			return -200
		case sevHigh:
			return -100
		case sevLow:
			return -25
		default:
			return -50
		}
	case typFailure, typTimeout, typError:
		return -50
	case typSuccess:
		return 10
	}
	return 0
}

// storedEvent is an Event as the store keeps it: the agent id is the
// owner's, type and severity are codes, the time is Unix microseconds.
type storedEvent struct {
	idHash     uint64 // of id, to scan for duplicates cheaply
	id         string
	traceID    string
	detectedBy string
	details    string
	delta      Points
	at         int64
	typ        evType
	sev        severity
}

func (e *storedEvent) event(agentID string) Event {
	ev := Event{
		ID:         e.id,
		AgentID:    agentID,
		Type:       typeNames[e.typ],
		Severity:   sevNames[e.sev],
		Delta:      e.delta,
		Time:       time.UnixMicro(e.at).UTC(),
		TraceID:    e.traceID,
		DetectedBy: e.detectedBy,
	}
	if e.details != "" {
		ev.Details = json.RawMessage(e.details)
	}
	return ev
}

// prepare validates ev for Record and returns what the store keeps: it fills
// in the delta, normalized severity, id (from newID) and time (now when
// unset), and copies strings and details so that no caller's buffer is
// retained.
func prepare(ev Event, newID func() string, now time.Time) (storedEvent, Event, error) {
	var se storedEvent
	if err := checkAgentID(ev.AgentID); err != nil {
		return se, ev, fmt.Errorf("%w: agent_id: %w", ErrInvalidEvent, err)
	}
	typ, ok := parseType(ev.Type)
	if !ok || typ == typImport || typ == typSummary {
		_, _, err := Delta(ev.Type, ev.Severity)
		return se, ev, err
	}
	sev := parseSeverity(ev.Severity)
	delta := deltaOf(typ, sev)
	if ev.Delta != 0 && ev.Delta != delta {
		return se, ev, fmt.Errorf("%w: score_delta: %s given, %s %s costs %s",
			ErrInvalidEvent, ev.Delta, typeNames[typ], sevNames[sev], delta)
	}
	generated := ev.ID == ""
	if generated {
		ev.ID = newID()
	}
	if err := checkToken(ev.ID, MaxEventIDLen); err != nil {
		return se, ev, fmt.Errorf("%w: event_id: %w", ErrInvalidEvent, err)
	}
	if ev.TraceID != "" {
		if reason := wire.TraceIDProblem(ev.TraceID); reason != "" {
			return se, ev, fmt.Errorf("%w: trace_id: %s", ErrInvalidEvent, reason)
		}
	}
	if ev.DetectedBy != "" {
		if err := checkAgentID(ev.DetectedBy); err != nil {
			return se, ev, fmt.Errorf("%w: detected_by: %w", ErrInvalidEvent, err)
		}
	}
	details, err := compactDetails(ev.Details)
	if err != nil {
		return se, ev, fmt.Errorf("%w: details: %w", ErrInvalidEvent, err)
	}
	if ev.Time.IsZero() {
		ev.Time = now
	}
	at, err := micros(ev.Time)
	if err != nil {
		return se, ev, fmt.Errorf("%w: timestamp: %w", ErrInvalidEvent, err)
	}
	// The store keeps these strings for long: copy them, so that it never
	// pins (or sees changes to) a caller's request buffer.
	id := ev.ID
	if !generated {
		id = strings.Clone(id)
	}
	se = storedEvent{
		id: id, traceID: strings.Clone(ev.TraceID), detectedBy: strings.Clone(ev.DetectedBy),
		details: details, delta: delta, at: at, typ: typ, sev: sev,
	}
	return se, se.event(ev.AgentID), nil
}

// micros returns t in Unix microseconds, refusing times before 1970 or after
// the year 9999 (which RFC 3339 cannot write).
func micros(t time.Time) (int64, error) {
	if t.Before(minTime) || !t.Before(maxTime) {
		return 0, fmt.Errorf("%s is outside 1970–9999", t.UTC().Format(time.RFC3339))
	}
	return t.UnixMicro(), nil
}

var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
)

// compactDetails checks that d is a JSON object (or empty, or null) of at
// most MaxDetailsBytes and returns it compacted; "" means none.
func compactDetails(d json.RawMessage) (string, error) {
	if len(d) > MaxDetailsBytes {
		return "", fmt.Errorf("%d bytes exceeds the limit of %d", len(d), MaxDetailsBytes)
	}
	t := bytes.TrimSpace(d)
	if len(t) == 0 || string(t) == "null" {
		return "", nil
	}
	if t[0] != '{' {
		return "", errors.New("not a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return "", fmt.Errorf("not valid JSON: %w", err)
	}
	return buf.String(), nil
}

// checkAgentID accepts 1–MaxAgentIDLen bytes of valid UTF-8 without control
// characters.
func checkAgentID(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > MaxAgentIDLen:
		return fmt.Errorf("%d bytes exceeds the limit of %d", len(s), MaxAgentIDLen)
	case !utf8.ValidString(s):
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}

// checkToken accepts 1–n characters of [A-Za-z0-9._:-].
func checkToken(s string, n int) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > n {
		return fmt.Errorf("%d characters exceeds the limit of %d", len(s), n)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) || c == '.' || c == '_' || c == ':' || c == '-') {
			return fmt.Errorf("character %q at %d is not one of [A-Za-z0-9._:-]", c, i)
		}
	}
	return nil
}

var (
	_ json.Marshaler   = Event{}
	_ json.Unmarshaler = (*Event)(nil)
	_ json.Marshaler   = Points(0)
	_ json.Unmarshaler = (*Points)(nil)
)

// eventJSON is the wire form of Event.
type eventJSON struct {
	EventID    string          `json:"event_id"`
	AgentID    string          `json:"agent_id"`
	EventType  string          `json:"event_type"`
	Severity   string          `json:"severity"`
	ScoreDelta Points          `json:"score_delta"`
	Timestamp  string          `json:"timestamp"`
	TraceID    *string         `json:"trace_id"`
	Details    json.RawMessage `json:"details"`
	DetectedBy *string         `json:"detected_by"`
}

// MarshalJSON encodes e in the Python package's event shape; the timestamp
// is RFC 3339 in UTC.
func (e Event) MarshalJSON() ([]byte, error) {
	w := eventJSON{
		EventID:    e.ID,
		AgentID:    e.AgentID,
		EventType:  e.Type,
		Severity:   e.Severity,
		ScoreDelta: e.Delta,
		Timestamp:  e.Time.UTC().Format(time.RFC3339Nano),
		Details:    e.Details,
	}
	if e.TraceID != "" {
		w.TraceID = &e.TraceID
	}
	if e.DetectedBy != "" {
		w.DetectedBy = &e.DetectedBy
	}
	if len(w.Details) == 0 {
		w.Details = nil
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes the Python package's event shape. It checks the
// form, not the meaning: event_id, event_type and timestamp are required;
// score_delta must be a number; details an object or null; the timestamp
// ISO 8601 (a timestamp without offset, as Python's utcnow().isoformat()
// writes, is taken as UTC). Keys are matched as encoding/json matches them
// (case-insensitively, the last of duplicates winning): decoded events are
// for display and validation, and Record re-derives everything it applies.
func (e *Event) UnmarshalJSON(b []byte) error {
	var w struct {
		EventID    string          `json:"event_id"`
		AgentID    string          `json:"agent_id"`
		EventType  string          `json:"event_type"`
		Severity   *string         `json:"severity"`
		ScoreDelta json.RawMessage `json:"score_delta"`
		Timestamp  *string         `json:"timestamp"`
		TraceID    *string         `json:"trace_id"`
		Details    json.RawMessage `json:"details"`
		DetectedBy *string         `json:"detected_by"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	var ev Event
	switch {
	case w.EventID == "":
		return fmt.Errorf("%w: event_id: missing", ErrInvalidEvent)
	case w.EventType == "":
		return fmt.Errorf("%w: event_type: missing", ErrInvalidEvent)
	case w.Timestamp == nil:
		return fmt.Errorf("%w: timestamp: missing", ErrInvalidEvent)
	}
	t, err := parseTime(*w.Timestamp)
	if err != nil {
		return fmt.Errorf("%w: timestamp: %w", ErrInvalidEvent, err)
	}
	if len(w.ScoreDelta) == 0 || string(w.ScoreDelta) == "null" {
		return fmt.Errorf("%w: score_delta: missing", ErrInvalidEvent)
	}
	if ev.Delta, err = ParsePoints(string(w.ScoreDelta)); err != nil {
		return fmt.Errorf("%w: score_delta: %w", ErrInvalidEvent, err)
	}
	if d := bytes.TrimSpace(w.Details); len(d) > 0 && string(d) != "null" {
		if d[0] != '{' {
			return fmt.Errorf("%w: details: not a JSON object", ErrInvalidEvent)
		}
		ev.Details = append(json.RawMessage(nil), d...)
	}
	ev.ID, ev.AgentID, ev.Type, ev.Time = w.EventID, w.AgentID, w.EventType, t
	if w.Severity != nil {
		ev.Severity = *w.Severity
	}
	if w.TraceID != nil {
		ev.TraceID = *w.TraceID
	}
	if w.DetectedBy != nil {
		ev.DetectedBy = *w.DetectedBy
	}
	*e = ev
	return nil
}

// maxTimeLen bounds the timestamp text parseTime looks at.
const maxTimeLen = 64

// parseTime reads an ISO 8601 timestamp as the Python package writes them:
// RFC 3339 with Z or an offset, or without offset (taken as UTC), with "T" or
// a space between date and time, with any fraction of a second. The result
// is in UTC.
func parseTime(s string) (time.Time, error) {
	if len(s) > maxTimeLen {
		return time.Time{}, fmt.Errorf("%d characters is too long for a timestamp", len(s))
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not an ISO 8601 timestamp", s)
}

var timeLayouts = []string{
	time.RFC3339,
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05Z07:00",
	"2006-01-02 15:04:05",
}
