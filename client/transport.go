package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/pipeline"
)

// bufferLimit is the largest answer of known length read whole; others
// are relayed as they come.
const bufferLimit = 64 << 10

// Transport returns an http.RoundTripper that runs every request through
// the handshake — discover, validate, then sign and send, or answer with
// the refusal (403 blocked, 449 warning) a sidecar would give — so that
// http.Client{Transport: c.Transport()} is all a Go agent needs.
func (c *Client) Transport() http.RoundTripper { return transport{c} }

type transport struct{ c *Client }

// RoundTrip runs req through the egress pipeline.
func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.c
	x := pipeline.Acquire()
	x.Kind, x.Method, x.TargetURI = pipeline.Egress, req.Method, req.URL.String()
	if x.Method == "" {
		x.Method = http.MethodGet
	}
	x.Header = fieldsOf(req.Header)
	x.ContentType = req.Header.Get("Content-Type")
	if req.Body != nil {
		body, err := wire.ReadAll(req.Body, c.cfg.MaxBodyBytes)
		req.Body.Close()
		switch {
		case errors.Is(err, wire.ErrTooLarge):
			x.BodyErr = pipeline.ErrBodyTooLarge
		case err != nil:
			x.BodyErr = err
		}
		x.Body = body
	}
	a := c.egress.Serve(req.Context(), x)
	resp := &http.Response{StatusCode: a.Status, Status: strconv.Itoa(a.Status) + " " + http.StatusText(a.Status),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Request: req, ContentLength: a.Length}
	for _, f := range a.Header {
		resp.Header.Add(f.Name, f.Value)
	}
	if a.Stream != nil {
		resp.Body = &finishing{ReadCloser: a.Stream, x: x}
		return resp, nil
	}
	resp.ContentLength = int64(len(a.Body))
	resp.Body = &finishing{ReadCloser: io.NopCloser(bytes.NewReader(a.Body)), x: x}
	return resp, nil
}

// finishing releases the exchange when the caller closes the body.
type finishing struct {
	io.ReadCloser
	x    *pipeline.Exchange
	once sync.Once
}

func (f *finishing) Close() error {
	err := f.ReadCloser.Close()
	f.once.Do(func() { pipeline.Finish(f.x) })
	return err
}

// httpSender sends allowed calls with net/http.
type httpSender struct{ c *Client }

// Send sends x to its target: the caller's headers under the header
// rules, the trace id and x.Added (the signature).
func (s httpSender) Send(ctx context.Context, x *pipeline.Exchange) (*pipeline.Answer, *pipeline.Refusal) {
	timeout := s.c.cfg.Timeout
	ctx, cancel := context.WithTimeout(ctx, timeout)
	req, err := http.NewRequestWithContext(ctx, x.Method, x.Upstream, bytes.NewReader(x.Body))
	if err != nil {
		cancel()
		return nil, pipeline.UpstreamRefusal(x, pipeline.Failure{Described: err.Error(), Timeout: timeout})
	}
	x.UpstreamHeader(func(name, value string) { req.Header.Add(name, value) })
	req.Header.Set(wire.TraceID, x.TraceID)
	for _, f := range x.Added {
		req.Header.Set(f.Name, f.Value)
	}
	start := time.Now()
	resp, err := s.c.cfg.Base.RoundTrip(req)
	latency := time.Since(start)
	if err != nil {
		cancel()
		var ne net.Error
		return nil, pipeline.UpstreamRefusal(x, pipeline.Failure{
			Canceled:  errors.Is(err, context.Canceled),
			TimedOut:  errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout(),
			Described: pipeline.ScrubbedText(err.Error()),
			Timeout:   timeout,
		})
	}
	a := &pipeline.Answer{Status: resp.StatusCode, Header: fieldsOf(resp.Header), Latency: latency, Length: -1}
	if resp.ContentLength >= 0 && resp.ContentLength <= bufferLimit {
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if err != nil {
			return nil, pipeline.UpstreamRefusal(x, pipeline.Failure{Described: pipeline.ScrubbedText(err.Error()), Timeout: timeout})
		}
		a.Body = body
		return a, nil
	}
	a.Length = resp.ContentLength
	a.Stream = &httpStream{ReadCloser: resp.Body, cancel: cancel}
	return a, nil
}

// httpStream is a streamed answer body of net/http.
type httpStream struct {
	io.ReadCloser
	cancel context.CancelFunc
}

// Close closes the body and ends its call.
func (s *httpStream) Close() error {
	err := s.ReadCloser.Close()
	s.cancel()
	return err
}

// CloseWithError ends the call after the caller's side failed.
func (s *httpStream) CloseWithError(error) error { return s.Close() }
