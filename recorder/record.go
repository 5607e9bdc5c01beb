package recorder

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	"github.com/iatp/iatp/internal/wire"
)

// Kind is what a record is about.
type Kind string

// The kinds the sidecar records (PROTOCOL.md section 7).
const (
	KindRequest      Kind = "request"
	KindResponse     Kind = "response"
	KindBlocked      Kind = "blocked"
	KindWarning      Kind = "warning"
	KindUserOverride Kind = "user_override"
	KindError        Kind = "error"
	KindCompensation Kind = "compensation"
	KindReputation   Kind = "reputation"
)

// Kinds the recorder writes itself. Append refuses them, so nobody can forge
// one through the API; only the recorder writes them, into the same chain.
const (
	// KindRetention records the removal of the oldest segments by the
	// retention policy; Details say which seqs were removed and the hash the
	// oldest kept record links to.
	KindRetention Kind = "retention"
	// KindRecovery records a start-up repair: a torn last line cut away, or
	// (with Config.Recover) a new chain started after a failed verification.
	KindRecovery Kind = "recovery"
	// KindCheckpoint is reserved for checkpoints. Checkpoints live in their
	// own file (see Checkpoint), never in the chain.
	KindCheckpoint Kind = "checkpoint"
)

// maxKindLen bounds Kind: 1-32 characters of [a-z0-9_], starting with a letter.
const maxKindLen = 32

// Record is one entry of the flight recorder. Append fills Seq, PrevHash and
// Hash (and Time when it is zero); the caller fills the rest.
//
// PayloadValid is not part of the record: it tells Append that Payload is
// known to be exactly one valid JSON value — typically because the sidecar's
// detector (detect.ScrubJSON) parsed it and produced it — so that Append
// skips validating it again. Append then only drops insignificant white
// space in one pass, which is a plain copy for compact JSON, and still
// refuses a control character inside a string, so a wrong flag can never
// put a line break or a NUL byte into the log. A payload flagged valid that
// is not is recorded, but fails Verify as not canonical: only set the flag
// on bytes a JSON parser accepted.
//
// The JSON member order below is the on-disk order. A record's hash is the
// lowercase hex SHA-256 of its canonical bytes: the record encoded as
// encoding/json encodes this struct with HTML escaping off and without the
// "hash" member. PrevHash is the previous record's Hash (64 zeros for the
// first record of a chain), so the log is one hash chain across segments.
type Record struct {
	Seq           uint64          `json:"seq"`
	Kind          Kind            `json:"kind"`
	TraceID       string          `json:"trace_id"`
	Time          time.Time       `json:"time"`
	AgentID       string          `json:"agent_id"`
	CallerID      string          `json:"caller_id,omitempty"`
	Authenticated bool            `json:"authenticated,omitempty"`
	Attested      bool            `json:"attested,omitempty"`
	Decision      string          `json:"decision,omitempty"`
	Reasons       []string        `json:"reasons,omitempty"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	Status        int             `json:"status,omitempty"`
	LatencyMs     float64         `json:"latency_ms,omitempty"`
	Details       json.RawMessage `json:"details,omitempty"`
	PrevHash      string          `json:"prev_hash"`
	Hash          string          `json:"hash"`
	PayloadValid  bool            `json:"-"`
}

// ValidTraceID reports whether id is a trace id: 1-128 characters of
// [A-Za-z0-9._:-] (PROTOCOL.md section 5).
func ValidTraceID(id string) bool { return wire.ValidTraceID(id) }

// validKind reports whether k is 1-32 characters of [a-z0-9_] starting with a
// letter. Kinds need no JSON escaping, which the index rebuild relies on.
func validKind(k Kind) bool {
	if len(k) == 0 || len(k) > maxKindLen || k[0] < 'a' || k[0] > 'z' {
		return false
	}
	for i := 1; i < len(k); i++ {
		c := k[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// reservedKind reports whether only the recorder may write kind k.
func reservedKind(k Kind) bool {
	return k == KindRetention || k == KindRecovery || k == KindCheckpoint
}

// checkCallerRecord validates what Append accepts from a caller; the encoder
// checks the rest (JSON of payload and details, time range, latency).
func checkCallerRecord(r *Record) error {
	if !validKind(r.Kind) {
		return invalidf("kind %q is not 1-32 characters of [a-z0-9_] starting with a letter", r.Kind)
	}
	if reservedKind(r.Kind) {
		return invalidf("kind %q is reserved for the recorder", r.Kind)
	}
	if r.TraceID != "" && !ValidTraceID(r.TraceID) {
		return fmt.Errorf("%w: %w: must be 1-128 characters of [A-Za-z0-9._:-]", ErrInvalidRecord, ErrInvalidTraceID)
	}
	return nil
}

// traceKey is the index key of a trace id: the first 8 bytes of its SHA-256.
// A cryptographic hash keeps an attacker who picks trace ids from piling many
// of them on one key (a second preimage of 64 bits is out of reach); lookups
// compare the full trace id anyway, so a collision costs a read, never a
// wrong answer.
func traceKey(id string) uint64 {
	var buf [128]byte
	var sum [sha256.Size]byte
	if len(id) <= len(buf) {
		n := copy(buf[:], id)
		sum = sha256.Sum256(buf[:n])
	} else {
		sum = sha256.Sum256([]byte(id))
	}
	return binary.BigEndian.Uint64(sum[:8])
}
