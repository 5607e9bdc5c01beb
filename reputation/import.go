package reputation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"strconv"
	"strings"
	"time"
)

// ErrInvalidImport is matched (errors.Is) by every *ImportError.
var ErrInvalidImport = errors.New("reputation: invalid import")

// ImportError says which entry and field of an import is invalid. Nothing
// was changed.
type ImportError struct {
	// AgentID is the key of the offending entry, "" for the document itself.
	AgentID string
	// Field is the JSON field, such as "score" or "recent_events[3]".
	Field string
	// Err is the problem.
	Err error
}

// Error formats the error as `reputation: invalid import: agent "a": score: …`.
func (e *ImportError) Error() string {
	where := ""
	if e.AgentID != "" {
		where = fmt.Sprintf("agent %q: ", truncate(e.AgentID, 64))
	}
	if e.Field != "" {
		where += e.Field + ": "
	}
	return ErrInvalidImport.Error() + ": " + where + e.Err.Error()
}

// Unwrap returns the underlying problem.
func (e *ImportError) Unwrap() error { return e.Err }

// Is reports whether target is ErrInvalidImport.
func (e *ImportError) Is(target error) bool { return target == ErrInvalidImport }

var _ error = (*ImportError)(nil)

// Import merges a peer's snapshot (the Export shape, including the Python
// package's) into the store and returns how many agents' scores it lowered.
// source names the peer; it is recorded as detected_by of the import events
// and may be empty.
//
// Every entry is validated before anything changes: the document is one
// JSON object with a reputation_data object of at most MaxImportAgents
// entries, no key twice at any level the store reads; each entry's agent_id,
// when present, equals its key; score is a number in [0, 10] after rounding
// to hundredths (so the Python package's 5.9999999999999964 is 6.00);
// initial_score, when present, likewise; the counts are non-negative
// integers; last_updated an ISO 8601 timestamp; recent_events an array of
// events (see Event.UnmarshalJSON). The first problem is returned as an
// *ImportError naming the agent and the field, and nothing is changed.
//
// Then all entries are applied at once, under the store's lock: each agent's
// score becomes the lower of its local score and the imported one, and an
// agent unknown locally counts as NeutralScore. An import can therefore only
// lower scores, never raise one, and never lift an unknown agent above 5.00:
// a peer cannot inflate anyone. Only the score is taken; local counts and
// events stay, and every lowered score gets an event of type "import" whose
// delta is the change and whose details hold the previous and imported
// scores. If the agents the import would add do not fit (see Record), it
// fails with ErrStoreFull, again changing nothing.
func (s *Store) Import(ctx context.Context, source string, data []byte) (int, error) {
	if s.agents == nil {
		return 0, ErrNoStore
	}
	if source != "" {
		if err := checkAgentID(source); err != nil {
			return 0, fmt.Errorf("reputation: import source: %w", err)
		}
	}
	source = strings.Clone(source)
	entries, err := parseImport(data, s.maxImport)
	if err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now, err := s.nowMicros()
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.merge(entries, source, now)
}

// merge applies validated entries atomically. The caller holds s.mu.
func (s *Store) merge(entries map[string]Points, source string, now int64) (int, error) {
	type change struct {
		a           *agent // nil for an agent to add
		id, eventID string
		from, to    Points
	}
	var changes []change
	adds, freed := 0, 0
	for _, id := range sortedIDs(entries) {
		to := entries[id]
		a := s.agents[id]
		from := NeutralScore
		if a != nil {
			from = a.score
		}
		if to >= from {
			continue
		}
		eventID := s.newID()
		if err := checkToken(eventID, MaxEventIDLen); err != nil {
			return 0, fmt.Errorf("reputation: import: new event id: %w", err)
		}
		changes = append(changes, change{a: a, id: id, eventID: eventID, from: from, to: to})
		switch {
		case a == nil:
			adds++
		case a.prev != nil:
			freed++ // lowering it makes it unevictable
		}
	}
	if room := s.maxAgents - len(s.agents) + s.evictable.len() - freed; adds > room {
		return 0, fmt.Errorf("%w: import needs %d new agents, room for %d", ErrStoreFull, adds, max(room, 0))
	}
	// Nothing below fails. Known agents are lowered first, so that none of
	// them is evicted to make room for the new ones.
	for _, known := range []bool{true, false} {
		for _, c := range changes {
			if (c.a != nil) != known {
				continue
			}
			a := c.a
			if a == nil {
				var err error
				if a, err = s.add(c.id); err != nil {
					// Unreachable: the room was counted above under the same lock.
					panic("reputation: import lost the room it counted: " + err.Error())
				}
			}
			details := []byte(`{"imported_score":`)
			details = c.to.AppendJSON(details)
			details = append(details, `,"previous_score":`...)
			details = c.from.AppendJSON(details)
			details = append(details, '}')
			s.apply(a, storedEvent{
				idHash: maphash.String(s.seed, c.eventID), id: c.eventID, detectedBy: source, details: string(details),
				delta: c.to - c.from, at: now, typ: typImport,
			}, now)
		}
	}
	return len(changes), nil
}

// parseImport validates the whole document and returns agent id → score.
func parseImport(data []byte, maxAgents int) (map[string]Points, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	var (
		entries map[string]Points
		found   bool
	)
	err := readObject(dec, func(key string) error {
		switch key {
		case "reputation_data":
			found = true
			var err error
			entries, err = readEntries(dec, maxAgents)
			return err
		case "timestamp":
			raw, err := readRaw(dec)
			if err != nil {
				return &ImportError{Field: key, Err: err}
			}
			if isNull(raw) {
				return nil
			}
			if _, err := rawTime(raw); err != nil {
				return &ImportError{Field: key, Err: err}
			}
			return nil
		default:
			_, err := readRaw(dec)
			return err
		}
	})
	if err != nil {
		var ie *ImportError
		if errors.As(err, &ie) {
			return nil, err
		}
		return nil, &ImportError{Err: err}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &ImportError{Err: errors.New("data after the JSON object")}
	}
	if !found {
		return nil, &ImportError{Field: "reputation_data", Err: errors.New("missing")}
	}
	return entries, nil
}

// readEntries reads the reputation_data object.
func readEntries(dec *json.Decoder, maxAgents int) (map[string]Points, error) {
	entries := make(map[string]Points)
	err := readObject(dec, func(id string) error {
		if len(entries) >= maxAgents {
			return &ImportError{Field: "reputation_data",
				Err: fmt.Errorf("more than %d entries", maxAgents)}
		}
		raw, err := readRaw(dec)
		if err != nil {
			return &ImportError{AgentID: id, Err: err}
		}
		score, err := parseEntry(id, raw)
		if err != nil {
			return err
		}
		entries[id] = score
		return nil
	})
	if err != nil {
		var ie *ImportError
		if !errors.As(err, &ie) {
			err = &ImportError{Field: "reputation_data", Err: err}
		}
		return nil, err
	}
	return entries, nil
}

// parseEntry validates one score entry and returns its score.
func parseEntry(id string, raw json.RawMessage) (Points, error) {
	if err := checkAgentID(id); err != nil {
		return 0, &ImportError{AgentID: id, Field: "agent_id", Err: err}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var (
		score    Points
		hasScore bool
	)
	err := readObject(dec, func(key string) error {
		fail := func(err error) error { return &ImportError{AgentID: id, Field: key, Err: err} }
		raw, err := readRaw(dec)
		if err != nil {
			return fail(err)
		}
		switch key {
		case "agent_id":
			if isNull(raw) {
				return nil
			}
			var v string
			if err := rawString(raw, &v); err != nil {
				return fail(err)
			}
			if v != id {
				return fail(fmt.Errorf("%q differs from the key", truncate(v, 64)))
			}
		case "score", "initial_score":
			if key == "initial_score" && isNull(raw) {
				return nil
			}
			p, err := rawScore(raw)
			if err != nil {
				return fail(err)
			}
			if key == "score" {
				score, hasScore = p, true
			}
		case "total_events", "positive_events", "negative_events":
			if err := rawCount(raw); err != nil {
				return fail(err)
			}
		case "last_updated":
			if isNull(raw) {
				return nil
			}
			if _, err := rawTime(raw); err != nil {
				return fail(err)
			}
		case "recent_events":
			return checkEvents(id, raw)
		}
		return nil
	})
	if err != nil {
		var ie *ImportError
		if !errors.As(err, &ie) {
			err = &ImportError{AgentID: id, Err: err}
		}
		return 0, err
	}
	if !hasScore {
		return 0, &ImportError{AgentID: id, Field: "score", Err: errors.New("missing")}
	}
	return score, nil
}

// checkEvents validates recent_events: null or an array of events. The
// events are not applied (see Import); they are checked so that a malformed
// document is refused whole.
func checkEvents(id string, raw json.RawMessage) error {
	if isNull(raw) {
		return nil
	}
	if raw[0] != '[' {
		return &ImportError{AgentID: id, Field: "recent_events", Err: errors.New("not an array")}
	}
	var list []json.RawMessage
	if err := json.Unmarshal(raw, &list); err != nil {
		return &ImportError{AgentID: id, Field: "recent_events", Err: err}
	}
	for i, r := range list {
		var ev Event
		if err := json.Unmarshal(r, &ev); err != nil {
			return &ImportError{AgentID: id, Field: fmt.Sprintf("recent_events[%d]", i), Err: err}
		}
	}
	return nil
}

// readObject reads one JSON object from dec, calling each with every key;
// each must consume the key's value. A key seen twice is an error.
func readObject(dec *json.Decoder, each func(key string) error) error {
	t, err := dec.Token()
	if err != nil {
		return jsonErr(err)
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	seen := make(map[string]struct{})
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return jsonErr(err)
		}
		key, ok := t.(string)
		if !ok {
			return errors.New("not a JSON object")
		}
		if _, dup := seen[key]; dup {
			return fmt.Errorf("key %q appears twice", truncate(key, 64))
		}
		seen[key] = struct{}{}
		if err := each(key); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return jsonErr(err)
	}
	return nil
}

// jsonErr turns a premature io.EOF into a syntax complaint.
func jsonErr(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func readRaw(dec *json.Decoder) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, jsonErr(err)
	}
	return raw, nil
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func rawString(raw json.RawMessage, v *string) error {
	if len(raw) == 0 || raw[0] != '"' {
		return errors.New("not a string")
	}
	return json.Unmarshal(raw, v)
}

func rawScore(raw json.RawMessage) (Points, error) {
	if len(raw) == 0 || !(raw[0] == '-' || isDigit(raw[0])) {
		return 0, errors.New("not a number")
	}
	p, err := ParsePoints(string(raw))
	if err != nil {
		return 0, err
	}
	if p < MinScore || p > MaxScore {
		return 0, fmt.Errorf("%s is outside [0, 10]", truncate(string(raw), 40))
	}
	return p, nil
}

func rawCount(raw json.RawMessage) error {
	if _, err := strconv.ParseUint(string(raw), 10, 63); err != nil {
		return fmt.Errorf("%s is not a non-negative integer", truncate(string(raw), 40))
	}
	return nil
}

func rawTime(raw json.RawMessage) (time.Time, error) {
	var s string
	if err := rawString(raw, &s); err != nil {
		return time.Time{}, err
	}
	return parseTime(s)
}
