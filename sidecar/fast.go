package sidecar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync/atomic"

	"github.com/valyala/fasthttp"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
)

// panics counts handler panics turned into 500s, across all sidecars of the
// process. Tests assert it stays 0 for every input they know.
var panics atomic.Int64

// fastServer builds the fasthttp server Serve runs: POST /proxy natively,
// every other endpoint through the net/http mux.
func (s *Sidecar) fastServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:      s.serveFast,
		ErrorHandler: s.fastError,
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
		Logger:                       fastLogger{s.log},
	}
}

type fastLogger struct{ l *slog.Logger }

// Printf logs fasthttp's own messages, which may quote raw requests:
// scrubbed and clipped, like everything the sidecar logs.
func (f fastLogger) Printf(format string, args ...any) {
	f.l.Debug(scrubbedText(fmt.Sprintf(format, args...)))
}

// scrubbedText scrubs and clips text that may quote a request or answer.
func scrubbedText(t string) string {
	b, _ := detect.ScrubText(nil, []byte(t))
	return clipText(string(b))
}

func isProxyPath(p []byte) bool {
	return bytes.Equal(p, []byte("/proxy")) || bytes.HasPrefix(p, []byte("/proxy/"))
}

func (s *Sidecar) serveFast(ctx *fasthttp.RequestCtx) {
	defer s.recoverFast(ctx)
	if p := ctx.Request.URI().PathOriginal(); isProxyPath(p) {
		s.serveProxyFast(ctx, p)
		return
	}
	s.fastAdmin(ctx)
}

// serveProxyFast is POST /proxy on fasthttp: the request object is reused as
// the agent's request, so the body is never copied.
func (s *Sidecar) serveProxyFast(ctx *fasthttp.RequestCtx, path []byte) {
	req := &ctx.Request
	in := inbound{
		method:  string(req.Header.Method()),
		subpath: string(path[len("/proxy"):]),
		query:   string(req.URI().QueryString()),
		header:  func(name string) string { return string(req.Header.Peek(name)) },
		headerValues: func(name string) []string {
			var out []string
			for _, v := range req.Header.PeekAll(name) {
				out = append(out, string(v))
			}
			return out
		},
		headers:       func() map[string]string { return fastHeaders(&req.Header) },
		contentLength: int64(req.Header.ContentLength()),
		readBody: func(limit int64) ([]byte, error) {
			b := req.Body()
			if int64(len(b)) > limit {
				return nil, errBodyTooLarge
			}
			return b, nil
		},
		remoteIP: ctx.RemoteIP().String(),
		targetURI: func() string {
			if s.cfg.PublicURL != "" {
				return s.cfg.PublicURL + string(req.RequestURI())
			}
			scheme := "http://"
			if ctx.IsTLS() {
				scheme = "https://"
			}
			return scheme + string(ctx.Host()) + string(req.RequestURI())
		},
	}
	// fasthttp's RequestCtx is done when the server shuts down; a request
	// already admitted is finished, not cut short, so it gets its own context.
	rctx := context.Background()
	v, traceID, e := s.admit(rctx, &in)
	if e != nil {
		s.logFailure(traceID, e)
		writeErrorFast(ctx, traceID, e)
		return
	}
	resp, latency, e := s.forward(rctx, v, req, acceptsEventStream(req.Header.Peek("Accept")), in.remoteIP)
	if e != nil {
		v.release()
		s.logFailure(v.traceID, e)
		writeErrorFast(ctx, v.traceID, e)
		return
	}
	out := &ctx.Response
	resp.Header.CopyTo(&out.Header)
	for _, k := range hopHeaders {
		out.Header.Del(k)
	}
	out.Header.ResetConnectionClose()
	s.answerHeaders(v, latency, out.Header.Set, out.Header.Del)
	if !resp.IsBodyStream() {
		body := resp.Body()
		s.answered(rctx, v, resp.StatusCode(), resp.Header.ContentType(), latency, bounded(body, s.cfg.MaxResponseRecord), int64(len(body)), len(body) > s.cfg.MaxResponseRecord, false, nil)
		out.SetBody(body)
		fasthttp.ReleaseResponse(resp)
		v.release()
		return
	}
	// Streamed: the server writes the body after this handler returns,
	// chunk by chunk as the agent sends it; the tee records it at the end.
	out.SetBodyStream(newTeeStream(s, v, resp, latency), resp.Header.ContentLength())
}

func bounded(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func fastHeaders(h *fasthttp.RequestHeader) map[string]string {
	out := make(map[string]string)
	for k, v := range h.All() {
		out[string(bytes.ToLower(k))] = string(v)
	}
	return out
}

// writeErrorFast answers a fasthttp request with e.
func writeErrorFast(ctx *fasthttp.RequestCtx, traceID string, e *httpError) {
	ctx.Response.Reset()
	ctx.SetStatusCode(e.status)
	ctx.SetContentType("application/json")
	ctx.Response.Header.Set(headerTraceID, traceID)
	if e.retryAfter > 0 {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.allow != "" {
		ctx.Response.Header.Set("Allow", e.allow)
	}
	ctx.SetBody(e.body(traceID))
}

// fastError answers requests fasthttp could not read: too large (413),
// headers too large (431), too slow (408), malformed (400).
func (s *Sidecar) fastError(ctx *fasthttp.RequestCtx, err error) {
	traceID := s.fallbackTraceID(string(ctx.Request.Header.Peek(headerTraceID)))
	var e *httpError
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = s.tooLarge()
	case errors.As(err, &small):
		e = errorf(http.StatusRequestHeaderFieldsTooLarge, "request headers larger than "+strconv.Itoa(s.cfg.MaxHeaderBytes)+" bytes (max_header_bytes)")
	case isTimeout(err):
		e = errorf(http.StatusRequestTimeout, "the request was not received in time")
	default:
		e = errorf(http.StatusBadRequest, "malformed HTTP request: "+err.Error())
	}
	if isProxyPath(ctx.Request.URI().PathOriginal()) {
		s.recordRefusal(ctx, recorder.KindError, traceID, policy.Caller{}, e, nil, s.cfg.Clock())
	}
	s.log.Debug("unreadable request", "trace_id", traceID, "status", e.status, "cause", scrubbedText(err.Error()))
	writeErrorFast(ctx, traceID, e)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// recoverFast turns a panic into a 500, logged with its stack.
func (s *Sidecar) recoverFast(ctx *fasthttp.RequestCtx) {
	if r := recover(); r != nil {
		panics.Add(1)
		traceID := s.fallbackTraceID(string(ctx.Request.Header.Peek(headerTraceID)))
		s.log.Error("panic serving a request", "trace_id", traceID, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		writeErrorFast(ctx, traceID, errorf(http.StatusInternalServerError, "internal error; the sidecar's log has the details under this trace id"))
	}
}

// recoverHTTP is recoverFast for net/http.
func (s *Sidecar) recoverHTTP(w http.ResponseWriter, r *http.Request) {
	if rec := recover(); rec != nil {
		if rec == http.ErrAbortHandler {
			panic(rec)
		}
		panics.Add(1)
		traceID := requestTraceID(r)
		s.log.Error("panic serving a request", "trace_id", traceID, "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
		writeError(w, traceID, errorf(http.StatusInternalServerError, "internal error; the sidecar's log has the details under this trace id"))
	}
}
