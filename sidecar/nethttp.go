package sidecar

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/valyala/fasthttp"
)

// serveProxyHTTP is POST /proxy on net/http, for embedders; it runs the same
// pipeline and the same agent client as the fasthttp front end.
func (s *Sidecar) serveProxyHTTP(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	sub := strings.TrimPrefix(r.URL.EscapedPath(), "/proxy")
	in := inbound{
		method:       r.Method,
		subpath:      sub,
		query:        r.URL.RawQuery,
		header:       r.Header.Get,
		headerValues: r.Header.Values,
		headers: func() map[string]string {
			out := make(map[string]string, len(r.Header))
			for k, v := range r.Header {
				out[strings.ToLower(k)] = strings.Join(v, ", ")
			}
			return out
		},
		contentLength: r.ContentLength,
		readBody: func(limit int64) ([]byte, error) {
			body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
			if err != nil {
				var mbe *http.MaxBytesError
				if errors.As(err, &mbe) {
					return nil, errBodyTooLarge
				}
				return nil, err
			}
			if int64(len(body)) > limit {
				return nil, errBodyTooLarge
			}
			return body, nil
		},
		remoteIP: host,
		targetURI: func() string {
			if s.cfg.PublicURL != "" {
				return s.cfg.PublicURL + r.URL.RequestURI()
			}
			scheme := "http://"
			if r.TLS != nil {
				scheme = "https://"
			}
			return scheme + r.Host + r.URL.RequestURI()
		},
	}
	v, traceID, e := s.admit(r.Context(), &in)
	if e != nil {
		s.logFailure(traceID, e)
		writeError(w, traceID, e)
		return
	}
	defer v.release()
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod(r.Method)
	for k, vals := range r.Header {
		for _, val := range vals {
			req.Header.Add(k, val)
		}
	}
	req.SetBodyRaw(v.body)
	resp, latency, e := s.forward(r.Context(), v, req, acceptsEventStream([]byte(r.Header.Get("Accept"))), host)
	if e != nil {
		s.logFailure(v.traceID, e)
		writeError(w, v.traceID, e)
		return
	}
	defer fasthttp.ReleaseResponse(resp)
	out := w.Header()
	for k, val := range resp.Header.All() {
		out.Add(string(k), string(val))
	}
	for _, k := range hopHeaders {
		out.Del(k)
	}
	out.Del("Content-Length")
	s.answerHeaders(v, latency, out.Set, out.Del)
	status := resp.StatusCode()
	ctype := resp.Header.ContentType()
	if !resp.IsBodyStream() {
		body := resp.Body()
		s.answered(r.Context(), v, status, ctype, latency, bounded(body, s.cfg.MaxResponseRecord), int64(len(body)), len(body) > s.cfg.MaxResponseRecord, false, nil)
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
	}
	// Streamed: relay as it comes, flushing after every read.
	w.WriteHeader(status)
	flusher, _ := w.(http.Flusher)
	var kept []byte
	var total int64
	var bodyErr error
	buf := make([]byte, 32<<10)
	src := resp.BodyStream()
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			total += int64(n)
			if room := s.cfg.MaxResponseRecord - len(kept); room > 0 {
				kept = append(kept, buf[:min(n, room)]...)
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				bodyErr = werr
				break
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil {
			if rerr != io.EOF {
				bodyErr = rerr
			}
			break
		}
	}
	if c, ok := src.(fasthttp.ReadCloserWithError); ok && bodyErr != nil {
		_ = c.CloseWithError(bodyErr)
	} else {
		_ = resp.CloseBodyStream()
	}
	s.answered(r.Context(), v, status, ctype, latency, kept, total, total > int64(len(kept)), true, bodyErr)
}
