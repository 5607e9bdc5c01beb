package sidecar

import (
	"encoding/json"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/iatp/iatp/pipeline"
)

// maxQuarantineSessions bounds the quarantine sessions kept in memory; the
// oldest are dropped first (each is also in the flight recorder).
const maxQuarantineSessions = 10000

// QuarantineSession is a request that went ahead under a user override
// although its target must be quarantined (PROTOCOL §3), in the Python
// package's shape.
type QuarantineSession struct {
	SessionID      string          `json:"session_id"`
	TraceID        string          `json:"trace_id"`
	WarningMessage string          `json:"warning_message"`
	UserOverride   bool            `json:"user_override"`
	Timestamp      string          `json:"timestamp"`
	Manifest       json.RawMessage `json:"manifest"`
}

type quarantineStore struct {
	sessions *lru.Cache[string, *QuarantineSession]
}

func newQuarantineStore() *quarantineStore {
	sessions, _ := lru.New[string, *QuarantineSession](maxQuarantineSessions) // the size is positive
	return &quarantineStore{sessions: sessions}
}

func (q *quarantineStore) add(traceID, warning string, manifestDoc []byte, now time.Time) *QuarantineSession {
	s := &QuarantineSession{
		SessionID:      pipeline.NewTraceID(),
		TraceID:        traceID,
		WarningMessage: warning,
		UserOverride:   true,
		Timestamp:      now.UTC().Format(time.RFC3339Nano),
		Manifest:       manifestDoc,
	}
	q.sessions.Add(traceID, s)
	return s
}

func (q *quarantineStore) get(traceID string) (*QuarantineSession, bool) {
	return q.sessions.Get(traceID)
}
