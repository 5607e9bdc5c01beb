package sidecar

import (
	"net/http"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/pipeline"
)

// errorf returns an answer-only refusal (admin endpoints are not recorded).
func errorf(status int, msg string) *pipeline.Refusal {
	return &pipeline.Refusal{Status: status, Reason: pipeline.Internal, Msg: msg, Unrecorded: true}
}

// writeAnswer writes a on net/http; a streamed body is relayed as it comes
// (flushed after every read) and closed.
func writeAnswer(w http.ResponseWriter, a *pipeline.Answer) {
	h := w.Header()
	for _, f := range a.Header {
		h.Add(f.Name, f.Value)
	}
	w.WriteHeader(a.Status)
	if a.Stream == nil {
		_, _ = w.Write(a.Body)
		return
	}
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	var werr error
	for {
		n, rerr := a.Stream.Read(buf)
		if n > 0 {
			if _, werr = w.Write(buf[:n]); werr != nil {
				break
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil {
			break // the tee keeps a read error for the record
		}
	}
	if werr != nil {
		_ = a.Stream.CloseWithError(werr)
	} else {
		_ = a.Stream.Close()
	}
}

// writeError answers a net/http request with r.
func writeError(w http.ResponseWriter, traceID string, r *pipeline.Refusal) {
	writeAnswer(w, r.Answer(traceID))
}

// writeJSON answers a net/http request with v as JSON.
func writeJSON(w http.ResponseWriter, traceID string, status int, v any) {
	b, err := pipeline.EncodeJSON(v)
	if err != nil {
		writeError(w, traceID, &pipeline.Refusal{Status: http.StatusInternalServerError, Msg: "internal error encoding the response", Cause: err})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set(wire.TraceID, traceID)
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// logFailure logs why a request failed when there is more to say than the
// answer does: the cause of a 5xx at error level, of anything else at debug.
func (s *Sidecar) logFailure(traceID string, r *pipeline.Refusal) {
	switch {
	case r.Status >= 500:
		s.log.Error("request failed", "trace_id", traceID, "status", r.Status, "error", r.Msg, "cause", errString(r.Cause))
	case r.Cause != nil:
		s.log.Debug("request refused", "trace_id", traceID, "status", r.Status, "error", r.Msg, "cause", r.Cause.Error())
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return pipeline.ScrubbedText(err.Error())
}

// fail logs r's cause (see logFailure) and answers with r.
func (s *Sidecar) fail(w http.ResponseWriter, traceID string, r *pipeline.Refusal) {
	s.logFailure(traceID, r)
	writeError(w, traceID, r)
}

// clipText keeps an untrusted value short and printable in messages.
func clipText(v string) string { return pipeline.Clip(v) }
