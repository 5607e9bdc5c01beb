// Package gossip carries a reputation.Node's events between configured
// peers over HTTP, and serves the reputation endpoints of a sidecar.
//
// Handler serves the routes (the sidecar mounts it under /reputation/):
//
//	GET  /reputation/{agent_id}           score, level, counts, recent events (public)
//	POST /reputation/{agent_id}/slash     admin token or a verifier's signed request
//	GET  /reputation/export               every score, in the Python package's snapshot shape (public)
//	POST /reputation/import               admin token or a peer's signed request
//	POST /reputation/mesh/v1/push         a peer hands over new events
//	POST /reputation/mesh/v1/digest       anti-entropy: compare window digests
//	POST /reputation/mesh/v1/ids          anti-entropy: list the ids of one bucket
//	POST /reputation/mesh/v1/fetch        anti-entropy: fetch events by id
//
// Every mesh request is signed with RFC 9421 (package identity) by the
// sending node and verified against the reporter keys the node trusts.
// Gossip (New) is the client side: it pushes each new event to every peer
// as soon as it is durable, and runs anti-entropy with each peer
// periodically, so an event a push lost (peer down, queue full) arrives
// later.
package gossip

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/reputation"
)

// Routes of the mesh protocol.
const (
	RoutePush   = "/reputation/mesh/v1/push"
	RouteDigest = "/reputation/mesh/v1/digest"
	RouteIDs    = "/reputation/mesh/v1/ids"
	RouteFetch  = "/reputation/mesh/v1/fetch"
)

// Limits of request bodies and of one exchange.
const (
	MaxSlashBody  = 64 << 10
	MaxImportBody = 16 << 20
	MaxMeshBody   = 8 << 20
	// MaxEventsPerRequest bounds the events of a push or fetch.
	MaxEventsPerRequest = 1024
	// MaxIDsPerPage bounds the ids one ids request returns.
	MaxIDsPerPage = 4096
)

// SlashRecord is what the handler hands RecordSlash after a slash.
type SlashRecord struct {
	// TraceID is the trace the slash concerns (the body's trace_id), or
	// the slash request's own trace id when the body names none.
	TraceID string
	// Caller is "admin" or the verifier's agent id.
	Caller string
	// Result is what the report did.
	Result reputation.ReportResult
}

// HandlerConfig configures a Handler. Node is required.
type HandlerConfig struct {
	Node *reputation.Node
	// AuthorizeAdmin reports whether r carries the admin credential
	// (Authorization: Bearer <admin token>). If nil, nothing is admin.
	AuthorizeAdmin func(r *http.Request) bool
	// Verifiers may slash with a request signed by their key.
	Verifiers map[string]ed25519.PublicKey
	// VerifyRequest authenticates an RFC 9421-signed request, whose body
	// is body, and returns the caller's agent id. If nil, requests are
	// verified against the node's reporter keys and Verifiers, with
	// PublicURL as the base of the target URI when set.
	VerifyRequest func(r *http.Request, body []byte) (string, error)
	// PublicURL is the scheme and host callers address this node by, when
	// a proxy in front of it changes them.
	PublicURL string
	// RecordSlash writes a slash into the flight recorder. May be nil.
	RecordSlash func(ctx context.Context, rec SlashRecord)
	// RecordImport writes an import into the flight recorder: the trace id
	// of the request, who imported (admin or a peer's agent id), how many
	// agents it changed and its size. May be nil.
	RecordImport func(ctx context.Context, traceID, source string, updated, bytes int)
	// TraceID returns the trace id answers carry in X-Agent-Trace-ID. If
	// nil, the request's valid X-Agent-Trace-ID or a new UUID.
	TraceID func(r *http.Request) string
	// Logger. If nil, slog.Default().
	Logger *slog.Logger
}

// Handler serves the reputation endpoints. Make it with NewHandler.
type Handler struct {
	cfg HandlerConfig
	mux *http.ServeMux
	log *slog.Logger

	vMu      sync.Mutex
	verifier *identity.CallerVerifier
	vGen     uint64
}

var _ http.Handler = (*Handler)(nil)

// NewHandler checks cfg and returns the handler.
func NewHandler(cfg HandlerConfig) (*Handler, error) {
	if cfg.Node == nil {
		return nil, errors.New("gossip: handler: Node is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.TraceID == nil {
		cfg.TraceID = requestTraceID
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), log: cfg.Logger, vGen: ^uint64(0)}
	route := func(method, pattern string, f http.HandlerFunc) {
		h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
				w.Header().Set("Allow", method)
				h.fail(w, r, &httpError{http.StatusMethodNotAllowed, "method " + r.Method + " not allowed: use " + method, nil})
				return
			}
			f(w, r)
		})
	}
	route(http.MethodGet, "/reputation/export", h.serveExport)
	route(http.MethodPost, "/reputation/import", h.serveImport)
	route(http.MethodGet, "/reputation/{agent_id}", h.serveGet)
	route(http.MethodPost, "/reputation/{agent_id}/slash", h.serveSlash)
	route(http.MethodPost, RoutePush, h.servePush)
	route(http.MethodPost, RouteDigest, h.serveDigest)
	route(http.MethodPost, RouteIDs, h.serveIDs)
	route(http.MethodPost, RouteFetch, h.serveFetch)
	return h, nil
}

// ServeHTTP routes r.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// httpError is an answer other than 200: its status and the message sent.
type httpError struct {
	status int
	msg    string
	cause  error
}

func (e *httpError) Error() string { return e.msg }

// statusOf maps the node's errors to HTTP: the one place that does.
func statusOf(err error) *httpError {
	var he *httpError
	switch {
	case errors.As(err, &he):
		return he
	case errors.Is(err, reputation.ErrUnknownReason), errors.Is(err, reputation.ErrInvalidEvent), errors.Is(err, reputation.ErrInvalidImport):
		return &httpError{http.StatusBadRequest, err.Error(), err}
	case errors.Is(err, reputation.ErrCellFull):
		return &httpError{http.StatusTooManyRequests, err.Error(), err}
	case errors.Is(err, reputation.ErrStoreFull), errors.Is(err, reputation.ErrClosed):
		return &httpError{http.StatusServiceUnavailable, err.Error(), err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &httpError{http.StatusServiceUnavailable, "request cancelled", err}
	}
	return &httpError{http.StatusInternalServerError, "internal error", err}
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := statusOf(err)
	if e.status >= 500 {
		h.log.Error("reputation endpoint failed", "path", r.URL.Path, "status", e.status, "err", e.cause)
	}
	writeJSON(w, h.cfg.TraceID(r), e.status, map[string]string{"error": e.msg, "trace_id": h.cfg.TraceID(r)})
}

func writeJSON(w http.ResponseWriter, traceID string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(identity.HeaderTraceID, traceID)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// requestTraceID returns the request's trace id when it is valid, else a
// new one.
func requestTraceID(r *http.Request) string {
	id := r.Header.Get(identity.HeaderTraceID)
	if id != "" && len(id) <= 128 && strings.Trim(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") == "" {
		return id
	}
	return uuid.NewString()
}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	if r.ContentLength > limit {
		return nil, &httpError{http.StatusRequestEntityTooLarge, "request body larger than the limit", nil}
	}
	body, err := wire.ReadAll(r.Body, limit)
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return nil, &httpError{http.StatusRequestEntityTooLarge, "request body larger than the limit", nil}
	case err != nil:
		return nil, &httpError{http.StatusBadRequest, "cannot read the request body", err}
	}
	return body, nil
}

// signed reports whether r carries an RFC 9421 signature.
func signed(r *http.Request) bool {
	return r.Header.Get(identity.HeaderSignatureInput) != "" || r.Header.Get(identity.HeaderSignature) != ""
}

// verify authenticates a signed request and returns the caller's id.
func (h *Handler) verify(r *http.Request, body []byte) (string, error) {
	if h.cfg.VerifyRequest != nil {
		id, err := h.cfg.VerifyRequest(r, body)
		if err != nil {
			return "", &httpError{http.StatusUnauthorized, err.Error(), err}
		}
		return id, nil
	}
	cv, err := h.callerVerifier()
	if err != nil {
		return "", err
	}
	m := identity.MessageFromRequest(r, body)
	if h.cfg.PublicURL != "" {
		m.TargetURI = strings.TrimSuffix(h.cfg.PublicURL, "/") + r.URL.RequestURI()
	}
	c, err := cv.Verify(m)
	if err != nil {
		return "", &httpError{http.StatusUnauthorized, err.Error(), err}
	}
	return c.AgentID, nil
}

// callerVerifier builds (again, when the node learned a key) the verifier
// of reporter and verifier keys. A reporter's latest key is the one its
// requests are checked with.
func (h *Handler) callerVerifier() (*identity.CallerVerifier, error) {
	h.vMu.Lock()
	defer h.vMu.Unlock()
	if gen := h.cfg.Node.KeysVersion(); gen != h.vGen || h.verifier == nil {
		trusted := map[string]ed25519.PublicKey{}
		for id, ks := range h.cfg.Node.ReporterKeys() {
			trusted[id] = ks[len(ks)-1]
		}
		for id, k := range h.cfg.Verifiers {
			trusted[id] = k
		}
		cv, err := identity.NewCallerVerifier(identity.CallerVerifierConfig{TrustedAgents: trusted})
		if err != nil {
			return nil, fmt.Errorf("gossip: caller verifier: %w", err)
		}
		h.verifier, h.vGen = cv, gen
	}
	return h.verifier, nil
}

// peer authenticates a mesh request: signed by an agent whose events the
// node accepts.
func (h *Handler) peer(r *http.Request, body []byte) (string, error) {
	if !signed(r) {
		return "", &httpError{http.StatusUnauthorized, "mesh requests must be signed (RFC 9421) by a trusted reporter", nil}
	}
	id, err := h.verify(r, body)
	if err != nil {
		return "", err
	}
	if !h.cfg.Node.IsReporter(id) {
		return "", &httpError{http.StatusForbidden, "agent " + strconv.Quote(truncate(id, 64)) + " is not a trusted reporter", nil}
	}
	return id, nil
}

func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("agent_id")
	snap, ok := h.cfg.Node.Get(id)
	if !ok {
		h.fail(w, r, &httpError{http.StatusNotFound, "No reputation data for agent '" + truncate(id, 64) + "'", nil})
		return
	}
	writeJSON(w, h.cfg.TraceID(r), http.StatusOK, snap)
}

func (h *Handler) serveExport(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, h.cfg.TraceID(r), http.StatusOK, h.cfg.Node.Export())
}

// slashRequest is the body of POST /reputation/{agent_id}/slash.
type slashRequest struct {
	Reason   string          `json:"reason"`
	Severity string          `json:"severity"`
	TraceID  string          `json:"trace_id"`
	Details  json.RawMessage `json:"details"`
}

// slashResponse answers a slash in the Python package's shape, plus the
// event id.
type slashResponse struct {
	Status     string            `json:"status"`
	AgentID    string            `json:"agent_id"`
	NewScore   reputation.Points `json:"new_score"`
	TrustLevel string            `json:"trust_level"`
	Reason     string            `json:"reason"`
	Severity   string            `json:"severity"`
	EventID    string            `json:"event_id"`
}

func (h *Handler) serveSlash(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, MaxSlashBody)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	caller := ""
	switch {
	case h.cfg.AuthorizeAdmin != nil && h.cfg.AuthorizeAdmin(r):
		caller = "admin"
	case signed(r):
		id, err := h.verify(r, body)
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if _, ok := h.cfg.Verifiers[id]; !ok {
			h.fail(w, r, &httpError{http.StatusUnauthorized, "agent " + strconv.Quote(truncate(id, 64)) + " is not a configured verifier (reputation.verifiers)", nil})
			return
		}
		caller = id
	default:
		h.fail(w, r, &httpError{http.StatusUnauthorized, "missing or wrong credential: send Authorization: Bearer <admin token>, or sign the request with a verifier key", nil})
		return
	}
	var req slashRequest
	if t := strings.TrimSpace(string(body)); !strings.HasPrefix(t, "{") {
		h.fail(w, r, &httpError{http.StatusBadRequest, "Invalid JSON payload: the body must be a JSON object", nil})
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		h.fail(w, r, &httpError{http.StatusBadRequest, "Invalid JSON payload: " + err.Error(), err})
		return
	}
	res, err := h.cfg.Node.Report(r.Context(), reputation.Report{
		Subject: r.PathValue("agent_id"), Type: req.Reason, Severity: req.Severity, TraceID: req.TraceID,
		Details: req.Details, DetectedBy: caller,
	})
	if err != nil && !errors.Is(err, reputation.ErrDuplicate) {
		h.fail(w, r, err)
		return
	}
	if h.cfg.RecordSlash != nil {
		traceID := req.TraceID
		if traceID == "" {
			traceID = h.cfg.TraceID(r)
		}
		h.cfg.RecordSlash(r.Context(), SlashRecord{TraceID: traceID, Caller: caller, Result: res})
	}
	writeJSON(w, h.cfg.TraceID(r), http.StatusOK, slashResponse{
		Status: "slashed", AgentID: res.Event.AgentID, NewScore: res.Score, TrustLevel: res.TrustLevel,
		Reason: res.Event.Type, Severity: res.Event.Severity, EventID: res.EventID,
	})
}

func (h *Handler) serveImport(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r, MaxImportBody)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	source := "admin"
	if h.cfg.AuthorizeAdmin == nil || !h.cfg.AuthorizeAdmin(r) {
		if source, err = h.peer(r, body); err != nil {
			h.fail(w, r, err)
			return
		}
	}
	n, err := h.cfg.Node.Import(r.Context(), source, body)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	traceID := h.cfg.TraceID(r)
	if h.cfg.RecordImport != nil {
		h.cfg.RecordImport(r.Context(), traceID, source, n, len(body))
	}
	writeJSON(w, traceID, http.StatusOK, map[string]any{"status": "imported", "agents_updated": n})
}

// PushRequest is the body of a push and a fetch answer.
type PushRequest struct {
	Events []reputation.SignedEvent `json:"events"`
}

// PushResponse says what the receiver did with pushed events.
type PushResponse struct {
	Applied    int       `json:"applied"`
	Duplicates int       `json:"duplicates"`
	Refused    []Refusal `json:"refused,omitempty"`
}

// Refusal is one refused event.
type Refusal struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

func (h *Handler) servePush(w http.ResponseWriter, r *http.Request) {
	body, source, ok := h.meshBody(w, r)
	if !ok {
		return
	}
	evs, refused, err := decodeEvents(body)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	resp := PushResponse{Refused: refused}
	for i, err := range h.cfg.Node.ApplyBatch(r.Context(), source, evs) {
		switch {
		case err == nil:
			resp.Applied++
		case errors.Is(err, reputation.ErrDuplicate):
			resp.Duplicates++
		case errors.Is(err, reputation.ErrClosed), errors.Is(err, context.Canceled):
			h.fail(w, r, err)
			return
		default:
			if len(resp.Refused) < 64 {
				resp.Refused = append(resp.Refused, Refusal{ID: evs[i].ID, Error: err.Error()})
			}
		}
	}
	writeJSON(w, h.cfg.TraceID(r), http.StatusOK, resp)
}

// decodeEvents reads a PushRequest, keeping the events that decode and
// listing the others as refused.
func decodeEvents(body []byte) ([]reputation.SignedEvent, []Refusal, error) {
	var raw struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, nil, &httpError{http.StatusBadRequest, "Invalid JSON payload: " + err.Error(), err}
	}
	if len(raw.Events) > MaxEventsPerRequest {
		return nil, nil, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d events", MaxEventsPerRequest), nil}
	}
	evs := make([]reputation.SignedEvent, 0, len(raw.Events))
	var refused []Refusal
	for _, r := range raw.Events {
		var ev reputation.SignedEvent
		if err := json.Unmarshal(r, &ev); err != nil {
			if len(refused) < 64 {
				refused = append(refused, Refusal{Error: err.Error()})
			}
			continue
		}
		evs = append(evs, ev)
	}
	return evs, refused, nil
}

// meshBody reads a mesh request's body and authenticates its sender, a
// trusted reporter; it answers the refusal itself and reports false then.
func (h *Handler) meshBody(w http.ResponseWriter, r *http.Request) (body []byte, source string, ok bool) {
	body, err := readBody(r, MaxMeshBody)
	if err == nil {
		source, err = h.peer(r, body)
	}
	if err != nil {
		h.fail(w, r, err)
		return nil, "", false
	}
	return body, source, true
}

// meshRequest is meshBody with the body decoded as a T.
func meshRequest[T any](h *Handler, w http.ResponseWriter, r *http.Request) (T, bool) {
	var req T
	body, _, ok := h.meshBody(w, r)
	if !ok {
		return req, false
	}
	if err := json.Unmarshal(body, &req); err != nil {
		h.fail(w, r, &httpError{http.StatusBadRequest, "Invalid JSON payload: " + err.Error(), err})
		return req, false
	}
	return req, true
}

// DigestRequest carries the sender's window digests.
type DigestRequest struct {
	Windows []reputation.DigestEntry `json:"windows"`
}

// DigestResponse carries the receiver's window digests and, for every
// window the two disagree on, the receiver's sixteen bucket digests.
type DigestResponse struct {
	Windows []reputation.DigestEntry `json:"windows"`
	Buckets []reputation.DigestEntry `json:"buckets"`
}

func (h *Handler) serveDigest(w http.ResponseWriter, r *http.Request) {
	req, ok := meshRequest[DigestRequest](h, w, r)
	if !ok {
		return
	}
	own := h.cfg.Node.Digest()
	resp := DigestResponse{Windows: own}
	for _, win := range differing(req.Windows, own) {
		resp.Buckets = append(resp.Buckets, h.cfg.Node.DigestWindow(win)...)
	}
	writeJSON(w, h.cfg.TraceID(r), http.StatusOK, resp)
}

// differing returns the windows where a and b differ.
func differing(a, b []reputation.DigestEntry) []int64 {
	idx := map[int64]reputation.DigestEntry{}
	for _, e := range a {
		idx[e.Window] = e
	}
	seen := map[int64]bool{}
	var out []int64
	for _, e := range b {
		seen[e.Window] = true
		if o, ok := idx[e.Window]; !ok || o.Count != e.Count || o.Hash != e.Hash {
			out = append(out, e.Window)
		}
	}
	for _, e := range a {
		if !seen[e.Window] {
			out = append(out, e.Window)
		}
	}
	if len(out) > 64 {
		out = out[:64]
	}
	return out
}

// IDsRequest asks for the ids of one bucket, a page at a time.
type IDsRequest struct {
	Window int64  `json:"w"`
	Prefix int    `json:"p"`
	After  string `json:"after,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

// IDsResponse lists them; More says a further page exists.
type IDsResponse struct {
	IDs  []string `json:"ids"`
	More bool     `json:"more"`
}

func (h *Handler) serveIDs(w http.ResponseWriter, r *http.Request) {
	req, ok := meshRequest[IDsRequest](h, w, r)
	if !ok {
		return
	}
	limit := req.Limit
	if limit <= 0 || limit > MaxIDsPerPage {
		limit = MaxIDsPerPage
	}
	ids, err := h.cfg.Node.IDs(req.Window, req.Prefix, req.After, limit+1)
	if err != nil {
		h.fail(w, r, &httpError{http.StatusBadRequest, err.Error(), err})
		return
	}
	resp := IDsResponse{IDs: ids}
	if len(ids) > limit {
		resp.IDs, resp.More = ids[:limit], true
	}
	if resp.IDs == nil {
		resp.IDs = []string{}
	}
	writeJSON(w, h.cfg.TraceID(r), http.StatusOK, resp)
}

// FetchRequest asks for events by id.
type FetchRequest struct {
	IDs []string `json:"ids"`
}

func (h *Handler) serveFetch(w http.ResponseWriter, r *http.Request) {
	req, ok := meshRequest[FetchRequest](h, w, r)
	if !ok {
		return
	}
	if len(req.IDs) > MaxEventsPerRequest {
		h.fail(w, r, &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("more than %d ids", MaxEventsPerRequest), nil})
		return
	}
	evs, err := h.cfg.Node.Events(req.IDs)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	if evs == nil {
		evs = []reputation.SignedEvent{}
	}
	writeJSON(w, h.cfg.TraceID(r), http.StatusOK, PushRequest{Events: evs})
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
