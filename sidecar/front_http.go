package sidecar

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/pipeline"
)

// ServeHTTP is the net/http front, for those who mount the sidecar in a
// server of their own: the same pipeline and agent client as Run's.
func (s *Sidecar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer s.recoverHTTP(w, r)
	path := rawPath(r)
	if _, ok := wire.SplitProxy(path); !ok {
		s.adminHandler.ServeHTTP(w, r)
		return
	}
	x := pipeline.Acquire()
	s.decodeHTTP(r, path, x)
	writeAnswer(w, s.ingress.Serve(r.Context(), x))
	pipeline.Finish(x)
}

// rawPath returns the request's path as sent.
func rawPath(r *http.Request) string {
	if u := r.RequestURI; strings.HasPrefix(u, "/") {
		p, _, _ := strings.Cut(u, "?")
		return p
	}
	return r.URL.EscapedPath() // absolute-form or authority-form
}

// decodeHTTP fills x from a net/http request, reading the body up to the
// limit.
func (s *Sidecar) decodeHTTP(r *http.Request, path string, x *pipeline.Exchange) {
	x.Kind = pipeline.Ingress
	x.Method = r.Method
	x.Path = path
	x.RawQuery = r.URL.RawQuery
	x.Header = httpFields(r.Header, 0)
	x.ContentType = r.Header.Get("Content-Type")
	readHTTPBody(r, s.cfg.MaxBodyBytes, x)
	x.Trailer = httpFields(r.Trailer, 0)
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		x.Peer = host
	} else {
		x.Peer = r.RemoteAddr
	}
	x.TargetURI = s.targetURI(r.TLS != nil, r.Host, x.Path, x.RawQuery)
}

// targetURI is the URI a signature on a request covers (@target-uri): the
// public URL, or the scheme and Host the request came with, then its path
// and query exactly as sent, which are what the checks saw and what the
// agent gets. Both fronts build it here, so they verify the same bytes.
func (s *Sidecar) targetURI(tls bool, host, path, rawQuery string) string {
	var b strings.Builder
	switch {
	case s.cfg.PublicURL != "":
		b.WriteString(s.cfg.PublicURL)
	case tls:
		b.WriteString("https://")
		b.WriteString(host)
	default:
		b.WriteString("http://")
		b.WriteString(host)
	}
	b.WriteString(path)
	if rawQuery != "" {
		b.WriteByte('?')
		b.WriteString(rawQuery)
	}
	return b.String()
}

// readHTTPBody reads r's body into x, up to limit bytes.
func readHTTPBody(r *http.Request, limit int64, x *pipeline.Exchange) {
	if r.ContentLength > limit {
		x.BodyErr = pipeline.ErrBodyTooLarge
		return
	}
	body, err := wire.ReadAll(r.Body, limit)
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe), errors.Is(err, wire.ErrTooLarge):
		x.BodyErr = pipeline.ErrBodyTooLarge
	case err != nil:
		x.BodyErr = err
	}
	x.Body = body
}

// httpFields lists a net/http header's lines.
func httpFields(h http.Header, _ int) pipeline.Fields {
	if len(h) == 0 {
		return nil
	}
	out := make(pipeline.Fields, 0, len(h))
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, pipeline.Field{Name: k, Value: v})
		}
	}
	return out
}

// recoverHTTP turns a panic into a 500, logged with its stack.
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
