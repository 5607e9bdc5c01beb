package sidecar

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// httpError is an error with the status and JSON body it is answered with.
// Every error response of the sidecar goes through writeError, so every
// 4xx/5xx body is JSON with "error" and "trace_id".
type httpError struct {
	status int
	msg    string
	// fields are extra members of the JSON body ("blocked", "recovery", …).
	fields map[string]any
	// retryAfter sets Retry-After (seconds) when positive.
	retryAfter int
	// allow sets the Allow header of a 405.
	allow string
	// cause is logged (see logFailure), never sent.
	cause error
}

func (e *httpError) Error() string {
	if e.cause != nil {
		return e.msg + ": " + e.cause.Error()
	}
	return e.msg
}

func (e *httpError) Unwrap() error { return e.cause }

func errorf(status int, msg string) *httpError { return &httpError{status: status, msg: msg} }

// body renders the JSON error body.
func (e *httpError) body(traceID string) []byte {
	m := make(map[string]any, len(e.fields)+2)
	for k, v := range e.fields {
		m[k] = v
	}
	m["error"] = e.msg
	m["trace_id"] = traceID
	b, err := json.Marshal(m)
	if err != nil { // fields are built by this package from JSON-safe values
		return []byte(`{"error":"internal error encoding an error response","trace_id":` + strconv.Quote(traceID) + `}`)
	}
	return b
}

// writeError answers a net/http request with e.
func writeError(w http.ResponseWriter, traceID string, e *httpError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(headerTraceID, traceID)
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.allow != "" {
		h.Set("Allow", e.allow)
	}
	w.WriteHeader(e.status)
	_, _ = w.Write(e.body(traceID))
}

// writeJSON answers a net/http request with v as JSON.
func writeJSON(w http.ResponseWriter, traceID string, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // records quote agents' HTML; keep it readable
	err := enc.Encode(v)
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if err != nil {
		writeError(w, traceID, &httpError{status: http.StatusInternalServerError, msg: "internal error encoding the response", cause: err})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(headerTraceID, traceID)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// Header names the sidecar reads and writes.
const (
	headerTraceID     = "X-Agent-Trace-ID"
	headerOverride    = "X-User-Override"
	headerTrustScore  = "X-Agent-Trust-Score"
	headerLatency     = "X-Agent-Latency-Ms"
	headerQuarantined = "X-Agent-Quarantined"
	headerCallerID    = "X-IATP-Caller-ID"
	// headerCallerAttested tells the agent whether the authenticated
	// caller's key came from a control-plane attestation.
	headerCallerAttested = "X-IATP-Caller-Attested"
)

// logFailure logs why a request failed when there is more to say than the
// answer does: the cause of a 5xx at error level, of anything else at debug.
func (s *Sidecar) logFailure(traceID string, e *httpError) {
	switch {
	case e.status >= 500:
		s.log.Error("request failed", "trace_id", traceID, "status", e.status, "error", e.msg, "cause", errString(e.cause))
	case e.cause != nil:
		s.log.Debug("request refused", "trace_id", traceID, "status", e.status, "error", e.msg, "cause", e.cause.Error())
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// clipText keeps an untrusted value short and printable in messages.
func clipText(v string) string {
	const n = 128
	if len(v) > n {
		v = v[:n] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			return '?'
		}
		return r
	}, v)
}

// fail logs e's cause (see logFailure) and answers with e.
func (s *Sidecar) fail(w http.ResponseWriter, traceID string, e *httpError) {
	s.logFailure(traceID, e)
	writeError(w, traceID, e)
}
