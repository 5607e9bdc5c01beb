package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/pipeline"
)

// panics counts handler panics turned into 500s, across all sidecars of the
// process. Tests assert it stays 0 for every input they know.
var panics atomic.Int64

// fastServer builds a fasthttp server with the sidecar's limits around
// handler: serveFast (the ingress) or serveEgress (egress true).
func (s *Sidecar) fastServer(handler fasthttp.RequestHandler, egress bool) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:      handler,
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) { s.fastError(ctx, err, egress) },
		// The header timeout: fasthttp's ReadTimeout covers reading the
		// request headers; once they are in, HeaderReceived allows the
		// body ReadTimeout.
		ReadTimeout: s.cfg.ReadHeaderTimeout,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: s.cfg.ReadTimeout}
		},
		IdleTimeout:                  s.cfg.IdleTimeout,
		ReadBufferSize:               s.cfg.MaxHeaderBytes, // also the largest request header accepted
		WriteBufferSize:              16 << 10,
		MaxRequestBodySize:           int(s.cfg.MaxBodyBytes),
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		NoDefaultDate:                true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		// Idle keep-alive connections give their buffers back: thousands of
		// them would otherwise hold 80 KiB each.
		ReduceMemoryUsage: true,
		// Past MaxConnections, a new connection is answered 503 and closed
		// instead of queueing work the sidecar cannot do.
		Concurrency: s.cfg.MaxConnections,
		Logger:      fastLogger{s.log},
	}
}

type fastLogger struct{ l *slog.Logger }

// Printf logs fasthttp's own messages, which may quote raw requests:
// scrubbed and clipped, like everything the sidecar logs.
func (f fastLogger) Printf(format string, args ...any) {
	f.l.Debug(pipeline.ScrubbedText(fmt.Sprintf(format, args...)))
}

// serveFast is the fasthttp front: it turns the request into an Exchange,
// runs the pipeline and writes the answer.
func (s *Sidecar) serveFast(ctx *fasthttp.RequestCtx) {
	defer s.recoverFast(ctx)
	if _, ok := wire.SplitProxy(b2s(ctx.Request.URI().PathOriginal())); !ok {
		s.fastAdmin(ctx)
		return
	}
	x := pipeline.Acquire()
	s.decodeFast(ctx, x)
	rctx, stop := watchCaller(ctx)
	a := s.ingress.Serve(rctx, x)
	stop()
	writeFast(ctx, a)
	pipeline.Finish(x)
}

// decodeFast fills x from a fasthttp request. The body is the request's
// own buffer, which outlives the pipeline's use of it; header lines are
// copied, since a streamed answer outlives the request.
func (s *Sidecar) decodeFast(ctx *fasthttp.RequestCtx, x *pipeline.Exchange) {
	req := &ctx.Request
	x.Kind = pipeline.Ingress
	x.Method = method(req.Header.Method())
	x.Path = string(req.URI().PathOriginal())
	x.RawQuery = string(req.URI().QueryString())
	x.Header = copyFields(req.Header.All())
	x.Trailer = trailerFields(&req.Header)
	x.Body = req.Body()
	x.ContentType = string(req.Header.ContentType())
	x.Peer = ctx.RemoteIP().String()
	x.TargetURI = s.targetURI(ctx.IsTLS(), string(ctx.Host()), x.Path, x.RawQuery)
}

// trailerFields lists the trailer lines of a chunked request, which
// fasthttp keeps apart from the header lines that All lists.
func trailerFields(h *fasthttp.RequestHeader) pipeline.Fields {
	if len(h.PeekTrailerKeys()) == 0 {
		return nil
	}
	var out pipeline.Fields
	for line := range strings.SplitSeq(string(h.TrailerHeader()), "\r\n") {
		if name, value, ok := strings.Cut(line, ":"); ok {
			out = append(out, pipeline.Field{Name: name, Value: strings.TrimSpace(value)})
		}
	}
	return out
}

// method returns the method as a string, without allocating for the
// usual ones.
func method(m []byte) string {
	switch string(m) {
	case http.MethodPost:
		return http.MethodPost
	case http.MethodGet:
		return http.MethodGet
	}
	return string(m)
}

// writeFast writes a to a fasthttp response. A whole body is copied into
// the response (the agent's buffer goes back to its pool); a stream is
// relayed by the server after the handler returns, and closed by it.
func writeFast(ctx *fasthttp.RequestCtx, a *pipeline.Answer) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(a.Status)
	for _, f := range a.Header {
		resp.Header.Add(f.Name, f.Value)
	}
	if a.Stream != nil {
		resp.SetBodyStream(a.Stream, int(a.Length))
		return
	}
	resp.SetBody(a.Body)
}

// fastError answers requests fasthttp could not read: too large (413),
// headers too large (431), too slow (408), malformed (400). Those for the
// protected call are recorded like any refusal.
func (s *Sidecar) fastError(ctx *fasthttp.RequestCtx, err error, egress bool) {
	defer s.recoverFast(ctx)
	var r *pipeline.Refusal
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		r = pipeline.TooLargeRefusal(s.cfg.MaxBodyBytes)
	case errors.As(err, &small):
		r = pipeline.Refuse(http.StatusRequestHeaderFieldsTooLarge, pipeline.Header, "request headers larger than "+strconv.Itoa(s.cfg.MaxHeaderBytes)+" bytes (max_header_bytes)")
	case isTimeout(err):
		r = pipeline.Refuse(http.StatusRequestTimeout, pipeline.BadBody, "the request was not received in time")
	default:
		r = pipeline.Refuse(http.StatusBadRequest, pipeline.BadBody, "malformed HTTP request: "+readError(err))
	}
	s.log.Debug("unreadable request", "status", r.Status, "cause", pipeline.ScrubbedText(err.Error()))
	x := pipeline.Acquire()
	defer pipeline.Finish(x)
	_, proxied := wire.SplitProxy(b2s(ctx.Request.URI().PathOriginal()))
	if errors.Is(err, fasthttp.ErrBodyTooLarge) && (egress || proxied) {
		// The headers were read: the request goes through the same checks
		// as on any front, in the same order, and its body check refuses.
		p := s.ingress
		if egress {
			s.decodeEgressFast(ctx, x)
			p = s.egress
		} else {
			s.decodeFast(ctx, x)
		}
		x.Body, x.BodyErr = nil, pipeline.ErrBodyTooLarge
		writeFast(ctx, p.Serve(context.Background(), x))
		return
	}
	if id := string(ctx.Request.Header.Peek(wire.TraceID)); usableTraceID(id) {
		x.TraceID = id
	}
	var a *pipeline.Answer
	switch {
	case egress:
		// Every request to the egress proxy is a call of this agent's:
		// refused, and recorded as the egress's.
		x.Kind = pipeline.Egress
		x.Method = method(ctx.Request.Header.Method())
		x.TargetURI = string(ctx.Request.Header.RequestURI())
		a = s.egress.Refuse(context.Background(), x, r)
	case proxied:
		x.Method = method(ctx.Request.Header.Method())
		x.Path = string(ctx.Request.URI().PathOriginal())
		a = s.ingress.Refuse(context.Background(), x, r)
	default:
		if x.TraceID == "" {
			x.TraceID = pipeline.NewTraceID()
		}
		a = r.Answer(x.TraceID)
	}
	writeFast(ctx, a)
}

// readError is what a caller is told of a request fasthttp could not read:
// its reason, without the copy of the request's bytes fasthttp appends
// (which would echo tokens and card numbers back), scrubbed and clipped.
func readError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": buffer size="); i >= 0 {
		msg = msg[:i]
	}
	return pipeline.ScrubbedText(msg)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// recoverFast turns a panic into a 500, logged with its stack.
func (s *Sidecar) recoverFast(ctx *fasthttp.RequestCtx) {
	if r := recover(); r != nil {
		panics.Add(1)
		traceID := string(ctx.Request.Header.Peek(wire.TraceID))
		if !usableTraceID(traceID) {
			traceID = pipeline.NewTraceID()
		}
		s.log.Error("panic serving a request", "trace_id", traceID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		writeFast(ctx, errorf(http.StatusInternalServerError, "internal error; the sidecar's log has the details under this trace id").Answer(traceID))
	}
}

// watchEvery is how often an agent call watches for its caller going away.
const watchEvery = 50 * time.Millisecond

// watchCaller returns the context of an agent call on fasthttp: it is
// cancelled when the caller closes its connection while the call runs
// (fasthttp itself does not tell). Calls that end within watchEvery cost
// one timer. stop ends the watch without cancelling: a streamed answer
// then goes on, and fails by itself if the caller is gone.
func watchCaller(ctx *fasthttp.RequestCtx) (context.Context, func()) {
	rctx, cancel := context.WithCancelCause(context.Background())
	w := &callerWatch{conn: ctx.Conn(), cancel: cancel}
	w.mu.Lock()
	w.t = time.AfterFunc(watchEvery, w.tick)
	w.mu.Unlock()
	return rctx, w.stop
}

// callerWatch polls a caller's connection while its call runs.
type callerWatch struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
	conn    net.Conn
	cancel  context.CancelCauseFunc
}

func (w *callerWatch) tick() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	if hungUp(w.conn) {
		w.cancel(errCanceled)
		return
	}
	w.t.Reset(watchEvery)
}

func (w *callerWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
}

// b2s views b as a string for a comparison that does not keep it.
func b2s(b []byte) string { return unsafeString(b) }

// ownedAdapter runs a net/http handler adapted by fasthttpadaptor on a copy
// of the request in a RequestCtx of its own. The adaptor's http.Request
// views fasthttp's buffers without copying them, and those buffers are
// reused for the connection's next request once the handler returns; an
// admin handler that keeps a string of its request — the reputation node
// keeps a slash's subject and reporter in events it sends later — would
// then see it change under it. The copy's buffers are never reused.
func ownedAdapter(h fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		var own fasthttp.RequestCtx
		own.Init(&ctx.Request, ctx.RemoteAddr(), nil)
		h(&own)
		own.Response.CopyTo(&ctx.Response)
	}
}
