package sidecar

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/pipeline"
)

// upstreamRequest builds the request that carries x upstream, to the
// protected agent (ingress) or to the target (egress): its method; its
// path and query exactly as they were checked, recorded and, on egress,
// signed (fasthttp would otherwise normalise %41 to A and break the
// signature); the caller's headers under the header rules; the trace id;
// the fields the checks added (the signature); and the body. The caller
// releases it with fasthttp.ReleaseRequest.
func upstreamRequest(x *pipeline.Exchange) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.Header.SetNoDefaultContentType(true)
	req.Header.SetMethod(x.Method)
	req.SetRequestURI(x.Upstream)
	// HostClient.DisablePathNormalizing applies to HostClient.Do only, and
	// roundTrip writes the request itself.
	req.URI().DisablePathNormalizing = true
	x.UpstreamHeader(func(name, value string) { req.Header.Add(name, value) })
	req.Header.Set(wire.TraceID, x.TraceID)
	for _, f := range x.Added {
		req.Header.Set(f.Name, f.Value)
	}
	req.SetBodyRaw(x.Body)
	return req
}

// answerTimeout is how long x's answer may take: base, or stream for a
// caller that asks for server-sent events.
func answerTimeout(x *pipeline.Exchange, base, stream time.Duration) time.Duration {
	if strings.Contains(x.Header.Get("Accept"), "text/event-stream") {
		return stream
	}
	return base
}

// exchangeWith sends req through up and returns the answer: whole when it
// is small and of known length, else as a stream. The answer's Release
// gives its buffers back.
func exchangeWith(ctx context.Context, up *upstream, req *fasthttp.Request, timeout time.Duration) (*pipeline.Answer, error) {
	resp := fasthttp.AcquireResponse()
	start := time.Now()
	stream, err := up.roundTrip(ctx, req, resp, start.Add(timeout))
	latency := time.Since(start)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, err
	}
	ans := &pipeline.Answer{Status: resp.StatusCode(), Header: responseFields(&resp.Header), Latency: latency,
		Length: -1, Release: func() { fasthttp.ReleaseResponse(resp) }}
	if stream != nil {
		ans.Stream = stream
		if cl := resp.Header.ContentLength(); cl >= 0 {
			ans.Length = int64(cl)
		}
	} else {
		ans.Body = resp.Body()
	}
	return ans, nil
}

// bufferLimit is the largest answer of known length that is read whole
// before it is relayed; larger answers, and answers of unknown length
// (chunked, server-sent events), are streamed to the caller as they come.
const bufferLimit = 64 << 10

// maxInterim bounds the 1xx answers skipped before the final one.
const maxInterim = 16

// errCanceled is the cause of a call cut short because its caller went away.
var errCanceled = pipeline.ErrCanceled

// upstream is an HTTP/1.1 client of one host: fasthttp's HostClient keeps
// the pool of keep-alive connections (dialing, limits, idle clean-up), and
// roundTrip runs the exchange on a pooled connection itself, so that a
// context can cut it short — HostClient.Do takes none — and so that a
// streamed answer is read straight off the connection.
type upstream struct {
	hc *fasthttp.HostClient
}

func newUpstream(addr string, isTLS bool, maxConns int) *upstream {
	return &upstream{hc: &fasthttp.HostClient{
		Addr:                     addr,
		IsTLS:                    isTLS,
		MaxConns:                 maxConns,
		MaxConnWaitTimeout:       2 * time.Second,
		MaxIdleConnDuration:      50 * time.Second,
		ReadBufferSize:           16 << 10, // also the largest response header accepted
		WriteBufferSize:          16 << 10,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true, // the path was checked and is passed on as the caller wrote it
	}}
}

// longAgo is a deadline in the past: setting it aborts pending I/O.
var longAgo = time.Unix(1, 0)

// roundTrip sends req and reads the answer's header into resp. A small
// answer of known length is read whole; any other body is left as a stream
// (body != nil) that releases the connection when closed. ctx cancels the
// exchange at any point, the stream's reads included; deadline bounds it
// up to the answer's header (and a whole body).
//
// A connection from the pool that the agent closed while idle fails before
// any answer byte; the request is then sent once more on a new connection,
// which is safe because the agent never saw it.
func (u *upstream) roundTrip(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) (body *agentStream, err error) {
	for attempt := 0; ; attempt++ {
		body, reused, err := u.try(ctx, req, resp, deadline)
		if err == nil || attempt > 0 || !reused || !staleConn(err) || ctx.Err() != nil {
			return body, err
		}
		resp.Reset()
	}
}

func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, errNoAnswer)
}

var errNoAnswer = errors.New("the agent closed the connection before answering")

func (u *upstream) try(ctx context.Context, req *fasthttp.Request, resp *fasthttp.Response, deadline time.Time) (*agentStream, bool, error) {
	cc, err := u.hc.AcquireConn(time.Until(deadline), false)
	if err != nil {
		return nil, false, err
	}
	conn := cc.Conn()
	reused := !cc.LastUseTime().IsZero() && cc.LastUseTime().After(cc.CreatedTime())
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(longAgo) })
	fail := func(err error) (*agentStream, bool, error) {
		stop()
		u.hc.CloseConn(cc)
		if ctx.Err() != nil {
			return nil, reused, errCanceled
		}
		return nil, reused, err
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return fail(err)
	}
	bw := u.hc.AcquireWriter(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	u.hc.ReleaseWriter(bw)
	if err != nil {
		return fail(err)
	}
	br := u.hc.AcquireReader(conn)
	if err := readHeader(br, resp); err != nil {
		u.hc.ReleaseReader(br)
		if errors.Is(err, io.EOF) {
			err = errNoAnswer
		}
		return fail(err)
	}
	status := resp.StatusCode()
	cl := resp.Header.ContentLength()
	switch {
	case req.Header.IsHead() || status == http.StatusNoContent || status == http.StatusNotModified || status < 200:
		resp.SkipBody = true
	case cl >= 0 && cl <= bufferLimit:
		err = resp.ReadBody(br, bufferLimit)
	default:
		resp.StreamBody = true
		err = resp.ReadBody(br, 0)
		if err == nil {
			return &agentStream{u: u, conn: conn, br: br, resp: resp, stop: stop, ctx: ctx, closeConn: cl == -2,
				release: func(reuse bool) {
					if reuse {
						u.hc.ReleaseConn(cc)
					} else {
						u.hc.CloseConn(cc)
					}
				}}, reused, nil
		}
	}
	u.hc.ReleaseReader(br)
	if err != nil {
		return fail(err)
	}
	if !stop() || resp.ConnectionClose() || req.ConnectionClose() {
		u.hc.CloseConn(cc) // the deadline was poisoned, or the agent closes
	} else {
		_ = conn.SetDeadline(time.Time{})
		u.hc.ReleaseConn(cc)
	}
	return nil, reused, nil
}

// readHeader reads the answer's header, skipping interim (1xx) answers.
func readHeader(br *bufio.Reader, resp *fasthttp.Response) error {
	for range maxInterim {
		if err := resp.Header.Read(br); err != nil {
			return err
		}
		if s := resp.StatusCode(); s < 100 || s > 199 || s == http.StatusSwitchingProtocols {
			return nil
		}
	}
	return errors.New("too many interim (1xx) answers")
}

// agentStream is a streamed answer body read off a pooled connection; the
// connection goes back to the pool when the body was read to its end.
type agentStream struct {
	u         *upstream
	conn      net.Conn
	release   func(reuse bool)
	br        *bufio.Reader
	resp      *fasthttp.Response
	stop      func() bool
	ctx       context.Context
	eof       bool
	closed    bool
	closeConn bool // the body ends with the connection
}

// Read reads the body.
func (s *agentStream) Read(p []byte) (int, error) {
	n, err := s.resp.BodyStream().Read(p)
	if err == io.EOF {
		s.eof = true
	} else if err != nil && s.ctx.Err() != nil {
		err = errCanceled
	}
	return n, err
}

// Close gives the connection back when the body was read whole.
func (s *agentStream) Close() error { return s.CloseWithError(nil) }

// CloseWithError closes the connection when err is set or the body was not
// read to its end.
func (s *agentStream) CloseWithError(err error) error {
	if s.closed {
		return nil
	}
	s.closed = true
	reuse := s.stop() && err == nil && s.eof && !s.closeConn && !s.resp.ConnectionClose()
	_ = s.resp.CloseBodyStream()
	s.u.hc.ReleaseReader(s.br)
	if reuse {
		_ = s.conn.SetDeadline(time.Time{})
	}
	s.release(reuse)
	return nil
}

var _ pipeline.StreamBody = (*agentStream)(nil)
