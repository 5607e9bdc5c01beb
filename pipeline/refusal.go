package pipeline

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/recorder"
)

// Reason is why an exchange ended, from a closed set: logs, metrics and
// records name it.
type Reason string

// Reasons an exchange ends with.
const (
	// Forwarded: the exchange was forwarded and answered.
	Forwarded Reason = "forwarded"
	// Method: a method the route does not take (405).
	Method Reason = "method"
	// NoRoute: no such route (404).
	NoRoute Reason = "no_route"
	// Path: a path that cannot be forwarded safely (400).
	Path Reason = "path"
	// Header: a header repeated, malformed or carrying sensitive data (400).
	Header Reason = "header"
	// TooLarge: a body over the limit (413).
	TooLarge Reason = "too_large"
	// BadBody: a body that could not be read or parsed (400).
	BadBody Reason = "bad_body"
	// Unauthenticated: a signature refused, or none when one is required (401).
	Unauthenticated Reason = "unauthenticated"
	// RateLimited: the caller is over its rate limit (429).
	RateLimited Reason = "rate_limited"
	// Blocked: a block rule (403).
	Blocked Reason = "blocked"
	// Warned: warnings not overridden (449).
	Warned Reason = "warned"
	// PolicyError: the policy could not decide (500).
	PolicyError Reason = "policy_error"
	// RecordFailed: the flight recorder could not record the request (500).
	RecordFailed Reason = "record_failed"
	// Upstream: the target failed (502).
	Upstream Reason = "upstream"
	// UpstreamTimeout: the target was too slow (504).
	UpstreamTimeout Reason = "upstream_timeout"
	// Canceled: the caller went away, and the call was cancelled.
	Canceled Reason = "canceled"
	// Internal: a bug (500).
	Internal Reason = "internal"
)

// StatusCanceled is the status recorded when the caller went away (nginx's
// 499); nobody is left to read it.
const StatusCanceled = 499

// Refusal ends an exchange with an answer of its own. It is an error, so
// the fronts and admin endpoints map every failure to a response in one
// place (Answer).
type Refusal struct {
	// Status is the HTTP status of the answer.
	Status int
	// Reason is the closed reason for logs and metrics.
	Reason Reason
	// Msg is the "error" member of the answer.
	Msg string
	// Fields are further members of the JSON answer ("blocked", "recovery"…).
	Fields map[string]any
	// RetryAfter sets Retry-After (seconds) when positive.
	RetryAfter int
	// Allow sets the Allow header of a 405.
	Allow string
	// Kind is the flight-recorder kind the refusal is recorded as: error,
	// blocked or warning; "" records it as error.
	Kind recorder.Kind
	// Decision and Reasons are recorded; empty Reasons records Msg.
	Decision string
	Reasons  []string
	// Details are recorded with the refusal.
	Details json.RawMessage
	// Cause is logged, never sent: it may quote what is not the caller's.
	Cause error
	// Unrecorded marks refusals that are not written to the flight
	// recorder (admin endpoints).
	Unrecorded bool
}

// Refuse returns a refusal with status, reason and message.
func Refuse(status int, reason Reason, msg string) *Refusal {
	return &Refusal{Status: status, Reason: reason, Msg: msg}
}

// Error returns the message, and the cause when there is one.
func (r *Refusal) Error() string {
	if r.Cause != nil {
		return r.Msg + ": " + r.Cause.Error()
	}
	return r.Msg
}

// Unwrap returns the cause.
func (r *Refusal) Unwrap() error { return r.Cause }

// AsRefusal returns err as a refusal: itself when it is one, else a 500.
func AsRefusal(err error) *Refusal {
	var r *Refusal
	if errors.As(err, &r) {
		return r
	}
	return &Refusal{Status: http.StatusInternalServerError, Reason: Internal, Msg: "internal error", Cause: err}
}

// Body renders the JSON answer: the fields, "error" and "trace_id".
func (r *Refusal) Body(traceID string) []byte {
	m := make(map[string]any, len(r.Fields)+2)
	for k, v := range r.Fields {
		m[k] = v
	}
	m["error"] = r.Msg
	m["trace_id"] = traceID
	b, err := EncodeJSON(m)
	if err != nil { // fields are built by iatp from JSON-safe values
		return []byte(`{"error":"internal error encoding an error response","trace_id":` + strconv.Quote(traceID) + `}`)
	}
	return b
}

// Answer renders the refusal as the answer to send.
func (r *Refusal) Answer(traceID string) *Answer {
	a := &Answer{Status: r.Status, Body: r.Body(traceID), Length: -1}
	a.Header = append(a.Header, Field{"Content-Type", "application/json"}, Field{wire.TraceID, traceID})
	if r.RetryAfter > 0 {
		a.Header = append(a.Header, Field{"Retry-After", strconv.Itoa(r.RetryAfter)})
	}
	if r.Allow != "" {
		a.Header = append(a.Header, Field{"Allow", r.Allow})
	}
	return a
}
