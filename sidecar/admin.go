package sidecar

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
	"github.com/iatp/iatp/reputation/gossip"
)

// maxTraceRecords bounds the records /trace returns.
const maxTraceRecords = 1000

// adminMux routes every endpoint but /proxy. These are not on the hot path
// and use net/http.
func (s *Sidecar) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	route := func(method, pattern string, h http.HandlerFunc) { routeJSON(mux, method, pattern, h) }
	route("GET", "/.well-known/agent-manifest", s.serveManifest)
	route("GET", "/.well-known/agent-attestation", s.serveAttestation)
	route("GET", "/health", s.serveHealth)
	route("GET", "/healthz", s.serveHealthz)
	route("GET", "/readyz", s.serveReadyz)
	route("GET", "/trace/{trace_id}", s.serveTrace)
	route("GET", "/quarantine/{trace_id}", s.serveQuarantine)
	// The reputation endpoints, and the mesh's, are the reputation node's
	// (package reputation/gossip).
	mux.Handle("/reputation/", s.repHandler)
	route("GET", "/metrics", s.metrics.handler().ServeHTTP)
	if s.cfg.Pprof {
		s.mountPprof(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, requestTraceID(r), errorf(http.StatusNotFound, "no such endpoint: "+r.Method+" "+clipText(r.URL.Path)+" (the protected call is POST /proxy)"))
	})
	return mux
}

// routeJSON registers h for pattern and answers other methods with a JSON
// 405 (ServeMux's own 405 is plain text). GET also serves HEAD.
func routeJSON(mux *http.ServeMux, method, pattern string, h http.HandlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, requestTraceID(r), errorf(http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+clipText(r.URL.Path)+": use "+method))
			return
		}
		h(w, r)
	})
}

// requestTraceID returns the request's trace id when it may be used (see
// usableTraceID), or a new one.
func requestTraceID(r *http.Request) string {
	if id := r.Header.Get(wire.TraceID); usableTraceID(id) {
		return id
	}
	return pipeline.NewTraceID()
}

// usableTraceID reports whether a caller's trace id may key answers and
// records: valid, and holding no sensitive data, which the ingress
// pipeline's Headers check refuses too.
func usableTraceID(id string) bool {
	return wire.ValidTraceID(id) && detect.ScanText([]byte(id)) == 0
}

// serveManifest serves the manifest document with an ETag, so that callers'
// sidecars revalidate it cheaply (304), and a max-age of ManifestMaxAge.
func (s *Sidecar) serveManifest(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set(wire.TraceID, requestTraceID(r))
	h.Set("ETag", s.manifestETag)
	h.Set("Cache-Control", "max-age="+strconv.Itoa(int(s.cfg.ManifestMaxAge/time.Second)))
	if inm := r.Header.Get("If-None-Match"); inm != "" && etagMatch(inm, s.manifestETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	_, _ = w.Write(s.manifestDoc)
}

// etagMatch reports whether an If-None-Match value lists etag (or is *).
func etagMatch(inm, etag string) bool {
	for tag := range strings.SplitSeq(inm, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == etag || tag == "*" {
			return true
		}
	}
	return false
}

func (s *Sidecar) serveAttestation(w http.ResponseWriter, r *http.Request) {
	if s.attestationDoc == nil {
		writeError(w, requestTraceID(r), errorf(http.StatusNotFound, "No attestation available for this agent"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(wire.TraceID, requestTraceID(r))
	_, _ = w.Write(s.attestationDoc)
}

func (s *Sidecar) serveHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, requestTraceID(r), http.StatusOK, map[string]string{"status": "healthy", "agent_id": s.cfg.Manifest.AgentID()})
}

// serveHealthz says the sidecar process is alive.
func (s *Sidecar) serveHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, requestTraceID(r), http.StatusOK, map[string]string{"status": "ok"})
}

// serveReadyz says whether the agent accepts connections. A change of
// state is logged once (a warning when the agent goes away, info when it
// is back), not every probe.
func (s *Sidecar) serveReadyz(w http.ResponseWriter, r *http.Request) {
	traceID := requestTraceID(r)
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.agentAddr)
	if err != nil {
		if s.unready.CompareAndSwap(false, true) {
			s.log.Warn("not ready: the agent does not accept connections", "agent", s.agentAddr, "err", err.Error(),
				"fix", "check that the agent runs and listens there; /readyz answers 503 until it does")
		}
		writeError(w, traceID, &pipeline.Refusal{Status: http.StatusServiceUnavailable, Msg: "agent not reachable at " + s.agentAddr,
			Fields: map[string]any{"status": "not ready"}, Unrecorded: true})
		return
	}
	conn.Close()
	if s.unready.CompareAndSwap(true, false) {
		s.log.Info("ready again: the agent accepts connections", "agent", s.agentAddr)
	}
	writeJSON(w, traceID, http.StatusOK, map[string]string{"status": "ready", "agent_id": s.cfg.Manifest.AgentID()})
}

// authorizeAdmin checks the admin bearer token. Without a configured token
// nothing is authorised.
func (s *Sidecar) authorizeAdmin(r *http.Request) *pipeline.Refusal {
	if !s.admin.IsSet() {
		return errorf(http.StatusUnauthorized, "admin endpoints are disabled: set IATP_ADMIN_TOKEN (at least 16 characters) on the sidecar")
	}
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || !s.admin.Matches(token) {
		return errorf(http.StatusUnauthorized, "missing or wrong admin credential: send Authorization: Bearer <admin token>")
	}
	return nil
}

// pathTraceID validates the {trace_id} path value.
func pathTraceID(r *http.Request) (string, *pipeline.Refusal) {
	id := r.PathValue("trace_id")
	if reason := wire.CheckTraceID(id); reason != "" {
		return "", errorf(http.StatusBadRequest, strings.Replace(reason, wire.TraceID, "trace id", 1))
	}
	return id, nil
}

// traceResponse is GET /trace/{trace_id}.
type traceResponse struct {
	TraceID string            `json:"trace_id"`
	Logs    []recorder.Record `json:"logs"`
}

func (s *Sidecar) serveTrace(w http.ResponseWriter, r *http.Request) {
	traceID, id, ok := s.traceLookup(w, r)
	if !ok {
		return
	}
	recs, err := s.rec.Trace(r.Context(), id, maxTraceRecords)
	if err != nil {
		s.fail(w, traceID, &pipeline.Refusal{Unrecorded: true, Status: http.StatusInternalServerError, Msg: "cannot read the flight recorder", Cause: err})
		return
	}
	if len(recs) == 0 {
		writeError(w, traceID, errorf(http.StatusNotFound, "Trace not found"))
		return
	}
	writeJSON(w, traceID, http.StatusOK, traceResponse{TraceID: id, Logs: recs})
}

// traceLookup authorises a /trace or /quarantine request and validates its
// {trace_id}; on failure it has answered and ok is false.
func (s *Sidecar) traceLookup(w http.ResponseWriter, r *http.Request) (traceID, id string, ok bool) {
	traceID = requestTraceID(r)
	if e := s.authorizeTraces(r); e != nil {
		writeError(w, traceID, e)
		return traceID, "", false
	}
	id, e := pathTraceID(r)
	if e != nil {
		writeError(w, traceID, e)
		return traceID, "", false
	}
	return traceID, id, true
}

// authorizeTraces guards /trace and /quarantine: they hold (scrubbed)
// request payloads, so they need the admin token unless the operator made
// them public.
func (s *Sidecar) authorizeTraces(r *http.Request) *pipeline.Refusal {
	if s.cfg.PublicTraces {
		return nil
	}
	return s.authorizeAdmin(r)
}

func (s *Sidecar) serveQuarantine(w http.ResponseWriter, r *http.Request) {
	traceID, id, ok := s.traceLookup(w, r)
	if !ok {
		return
	}
	sess, ok := s.quarantine.get(id)
	if !ok {
		writeError(w, traceID, errorf(http.StatusNotFound, "Quarantine session not found"))
		return
	}
	writeJSON(w, traceID, http.StatusOK, sess)
}

// recordImport writes a reputation import into the flight recorder.
func (s *Sidecar) recordImport(ctx context.Context, traceID, source string, updated, size int) {
	details, _ := json.Marshal(map[string]any{"source": source, "agents_updated": updated, "bytes": size})
	s.record(ctx, &recorder.Record{Kind: recorder.KindReputation, TraceID: traceID, CallerID: source, Reasons: []string{"import"},
		Details: details}, policy.Caller{}, s.cfg.Clock())
}

// recordSlash writes a slash into the flight recorder, under the trace id
// it concerns.
func (s *Sidecar) recordSlash(ctx context.Context, rec gossip.SlashRecord) {
	res := rec.Result
	details, _ := json.Marshal(map[string]any{
		"agent_id": res.Event.AgentID, "event_id": res.EventID, "reason": res.Event.Type, "severity": res.Event.Severity,
		"detected_by": rec.Caller, "previous_score": res.PreviousScore, "new_score": res.Score, "trust_level": res.TrustLevel,
	})
	traceID := rec.TraceID
	if !usableTraceID(traceID) {
		traceID = pipeline.NewTraceID()
	}
	s.record(ctx, &recorder.Record{Kind: recorder.KindReputation, TraceID: traceID, CallerID: rec.Caller,
		Reasons: []string{res.Event.Type}, Details: details}, policy.Caller{}, s.cfg.Clock())
}

// mountPprof serves net/http/pprof under /debug/pprof/, behind the admin
// token: profiles show the process's memory and its code paths.
func (s *Sidecar) mountPprof(mux *http.ServeMux) {
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if e := s.authorizeAdmin(r); e != nil {
				writeError(w, requestTraceID(r), e)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("/debug/pprof/", guard(pprof.Index))
	mux.HandleFunc("/debug/pprof/cmdline", guard(pprof.Cmdline))
	mux.HandleFunc("/debug/pprof/profile", guard(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", guard(pprof.Symbol))
	mux.HandleFunc("/debug/pprof/trace", guard(pprof.Trace))
}
