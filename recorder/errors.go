package recorder

import (
	"errors"
	"fmt"
)

// Errors callers branch on. Every error the package returns wraps at most one
// of them; match with errors.Is.
var (
	// ErrClosed is returned by Append, Trace and Sync after Close.
	ErrClosed = errors.New("recorder: log is closed")

	// ErrBroken is returned by Append once a write or fsync failed: the state
	// of the file behind the failure is unknown, so the log refuses further
	// records (fail closed) until the process reopens it.
	ErrBroken = errors.New("recorder: log is broken by an earlier write or fsync failure")

	// ErrRecordTooLarge is returned by Append for a record whose encoded line
	// exceeds Config.MaxRecordBytes.
	ErrRecordTooLarge = errors.New("recorder: record too large")

	// ErrInvalidRecord is returned by Append for a record that cannot be
	// recorded as given: bad kind or trace id, invalid payload or details
	// JSON, a time outside years 0-9999, a NaN latency.
	ErrInvalidRecord = errors.New("recorder: invalid record")

	// ErrInvalidTraceID is returned for a trace id that is not 1-128
	// characters of [A-Za-z0-9._:-]. It wraps ErrInvalidRecord when Append
	// returns it.
	ErrInvalidTraceID = errors.New("recorder: invalid trace id")

	// ErrCorrupt is wrapped by every *VerifyError: the log failed
	// verification (a record was edited, deleted, reordered or truncated, or
	// a checkpoint does not hold).
	ErrCorrupt = errors.New("recorder: log failed verification")

	// ErrUntrustedKey is wrapped by the *KeyError Verify returns when the
	// log and its checkpoints hold but a checkpoint is signed by a key that
	// is not among VerifyOptions.TrustedKeys: either the wrong key was given,
	// or someone who could write the directory rewrote the log and signed it
	// with their own key.
	ErrUntrustedKey = errors.New("recorder: checkpoints are signed by an untrusted key")

	// ErrLocked is returned by Open when another process holds the log.
	ErrLocked = errors.New("recorder: log is locked by another process")

	// ErrNoLog is returned by Verify and OpenReader for a directory that
	// does not exist or holds no segment.
	ErrNoLog = errors.New("recorder: no log")
)

// Problem names what verification found wrong.
type Problem string

// The problems a *VerifyError reports.
const (
	// ProblemEdited: a record's bytes changed (hash mismatch, broken link to
	// the previous record, not canonical, or not matching a signed
	// checkpoint).
	ProblemEdited Problem = "edited"
	// ProblemDeleted: records are missing from the sequence.
	ProblemDeleted Problem = "deleted"
	// ProblemReordered: a record appears out of sequence order.
	ProblemReordered Problem = "reordered"
	// ProblemTruncated: a segment ends mid-record, is empty, or the log ends
	// before the last signed checkpoint.
	ProblemTruncated Problem = "truncated"
	// ProblemCheckpoint: a checkpoint is malformed, out of order or badly
	// signed. (One intact but signed by a key that is not trusted is a
	// *KeyError, not a VerifyError.)
	ProblemCheckpoint Problem = "bad checkpoint"
)

// VerifyError describes the first verification failure: which segment, which
// sequence number and what is wrong. It wraps ErrCorrupt.
type VerifyError struct {
	Segment string  // segment file name (or the checkpoint file name)
	Seq     uint64  // the first sequence number affected
	Problem Problem // edited, deleted, reordered, truncated, bad checkpoint
	Detail  string  // what exactly failed
}

// Error implements error.
func (e *VerifyError) Error() string {
	return fmt.Sprintf("%s: seq %d: %s: %s", e.Segment, e.Seq, e.Problem, e.Detail)
}

// Unwrap returns ErrCorrupt.
func (e *VerifyError) Unwrap() error { return ErrCorrupt }

// KeyError names a checkpoint that is intact (its signature holds under the
// key it carries) but is signed by a key that is not trusted. It wraps
// ErrUntrustedKey.
type KeyError struct {
	Seq       uint64 `json:"seq"`        // the checkpoint's seq
	KeyID     string `json:"key_id"`     // the key id it names
	PublicKey string `json:"public_key"` // the key it carries, "ed25519:<base64>"
}

// Error implements error.
func (e *KeyError) Error() string {
	return fmt.Sprintf("the checkpoint at seq %d is signed by key id %q (%s), which is not among the trusted keys", e.Seq, e.KeyID, e.PublicKey)
}

// Unwrap returns ErrUntrustedKey.
func (e *KeyError) Unwrap() error { return ErrUntrustedKey }

// invalidf returns an ErrInvalidRecord error.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRecord}, args...)...)
}
