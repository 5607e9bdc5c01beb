package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/recorder"
)

// egressPlaceholder is the host a fuzz input names to reach the real target
// agent: the harness rewrites it to the target's loopback address. Any
// other host that would be dialed is rewritten to an address where nothing
// listens, so no input reaches beyond loopback.
const egressPlaceholder = "target.fuzz"

// egressTargetManifest keeps data permanently (a card number to it must be
// blocked) and scores 6, above the default warn_below of 5: the calls the
// fuzzer makes without an override are forwarded, not warned about.
const egressTargetManifest = `{
  "agent_id": "fuzz-target",
  "agent_version": "1.0.0",
  "trust_level": "standard",
  "capabilities": {"reversibility": "partial", "idempotency": true, "rate_limit": 100000},
  "privacy_contract": {"retention": "permanent", "human_review": false, "storage_location": "eu-west"},
  "scopes": ["documents:read"]
}`

// egressTarget is a real target agent on loopback, without a sidecar: it
// serves its manifest itself and remembers every byte and every request
// that reached it, so what the egress proxy lets through is exactly what
// the fuzz target checks.
type egressTarget struct {
	srv   *httptest.Server
	mu    sync.Mutex
	raw   []byte // bytes read from its connections since the last take
	calls []egressCall
}

type egressCall struct {
	Method, RequestURI, Host string
	Header                   http.Header
	Body                     []byte
}

func newEgressTarget() *egressTarget {
	tg := &egressTarget{}
	tg.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		tg.mu.Lock()
		tg.calls = append(tg.calls, egressCall{r.Method, r.RequestURI, r.Host, r.Header.Clone(), body})
		tg.mu.Unlock()
		w.Header().Set("X-Fuzz-Target", "1") // marks the target's own answers
		switch r.URL.Path {
		case "/.well-known/agent-manifest":
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, egressTargetManifest)
			return
		case "/.well-known/agent-attestation":
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	tg.srv.Listener = tapListener{tg.srv.Listener, tg}
	tg.srv.Start()
	return tg
}

// take returns what reached the target since the last take.
func (tg *egressTarget) take() ([]byte, []egressCall) {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	raw, calls := tg.raw, tg.calls
	tg.raw, tg.calls = nil, nil
	return raw, calls
}

// tapListener hands out connections that copy every byte read to the target.
type tapListener struct {
	net.Listener
	tg *egressTarget
}

func (l tapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &tapConn{Conn: c, tg: l.tg}, nil
}

type tapConn struct {
	net.Conn
	tg *egressTarget
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.tg.mu.Lock()
		c.tg.raw = append(c.tg.raw, p[:n]...)
		c.tg.mu.Unlock()
	}
	return n, err
}

// egressFuzz is the set-up of FuzzEgress, made once per fuzzing process.
type egressFuzz struct {
	s          *Sidecar
	proxy      string // host:port of the egress listener
	target     *egressTarget
	targetHost string                 // host:port of the target
	deadHost   string                 // host:port where nothing listens
	dir        string                 // the sidecar's flight recorder
	strayDial  atomic.Pointer[string] // an address discovery was asked to dial

	rd        *recorder.Reader
	seen      atomic.Uint64 // highest seq the follower has checked
	leakMu    sync.Mutex
	leaks     []string // records that hold a card
	inputs    int
	stopWatch func()
}

func newEgressFuzz(f *testing.F) *egressFuzz {
	e := &egressFuzz{target: newEgressTarget()}
	f.Cleanup(e.target.srv.Close)
	e.targetHost = e.target.srv.Listener.Addr().String()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	e.deadHost = dead.Addr().String()
	dead.Close()

	own := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{}`)
	}))
	f.Cleanup(own.Close)
	key, err := identity.GenerateKey(nil)
	if err != nil {
		f.Fatal(err)
	}
	// Discovery may only dial the two loopback addresses the harness
	// knows: anything else means the harness let an input through that
	// points elsewhere.
	dialer := &net.Dialer{Timeout: time.Second}
	discovery := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != e.targetHost && addr != e.deadHost {
			e.strayDial.Store(&addr)
			return nil, fmt.Errorf("fuzz harness: no dialing %s", addr)
		}
		return dialer.DialContext(ctx, network, addr)
	}}}
	e.dir = f.TempDir()
	e.s, err = New(Config{AgentURL: own.URL, Manifest: loadManifest(f, "coder_agent.json"), DataDir: e.dir,
		Key: key, EgressListen: "on", OverrideToken: testOverride, RateLimitPerMinute: -1,
		MaxBodyBytes: 64 << 10, MaxHeaderBytes: 8 << 10,
		ReadHeaderTimeout: 300 * time.Millisecond, ReadTimeout: 300 * time.Millisecond,
		AgentTimeout: 2 * time.Second, StreamTimeout: 2 * time.Second, ShutdownTimeout: time.Second,
		Egress: EgressConfig{FetchTimeout: time.Second, Timeout: 2 * time.Second, DiscoveryClient: discovery},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	eln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	e.proxy = eln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.s.ServeAll(ctx, ln, eln) }()
	f.Cleanup(func() {
		if e.stopWatch != nil {
			e.stopWatch()
		}
		cancel()
		<-done
	})
	return e
}

// watchRecords follows the sidecar's flight recorder with the recorder's
// reader, as an auditor would, and keeps every record that holds a card.
func (e *egressFuzz) watchRecords() error {
	rd, err := recorder.OpenReader(filepath.Join(e.dir, "recorder"))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = rd.Follow(ctx, recorder.Cursor{}, time.Millisecond, func(r recorder.Record) error {
			b, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if what := cardInRecord(b); what != "" {
				e.leakMu.Lock()
				e.leaks = append(e.leaks, fmt.Sprintf("record %d holds %s: %s", r.Seq, what, b))
				e.leakMu.Unlock()
			}
			e.seen.Store(r.Seq)
			return nil
		})
	}()
	e.rd = rd
	e.stopWatch = func() { cancel(); <-done; rd.Close() }
	return nil
}

// checkRecords waits until the follower has read every record written so
// far and fails if one of them holds a card.
func (e *egressFuzz) checkRecords(t *testing.T) {
	t.Helper()
	if e.rd == nil {
		if err := e.watchRecords(); err != nil {
			t.Fatalf("flight recorder: %v", err)
		}
	}
	written := e.s.rec.(*recorder.Log).Stats().WrittenSeq
	for deadline := time.Now().Add(5 * time.Second); e.seen.Load() < written; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the recorder's reader is stuck at seq %d, the log wrote %d", e.seen.Load(), written)
		}
	}
	e.leakMu.Lock()
	leaks := e.leaks
	e.leaks = nil // the next input (the minimizer's, say) starts afresh
	e.leakMu.Unlock()
	if len(leaks) > 0 {
		t.Fatalf("a card reached the flight recorder:\n%s", strings.Join(leaks, "\n"))
	}
}

// checkTarget fails if a card number reached the target (which keeps data
// permanently) in any form the detector knows, in the bytes it read or in
// any part of a request its server parsed.
func (e *egressFuzz) checkTarget(t *testing.T) {
	t.Helper()
	raw, calls := e.target.take()
	if c := seedCardIn(withoutCredentials(raw)); c != "" {
		t.Fatalf("card %s reached the target's connection:\n%q", c, raw)
	}
	for _, c := range calls {
		if what := cardInCall(c); what != "" {
			t.Fatalf("a card reached the target (%s): %s %q host %q headers %q body %q",
				what, c.Method, c.RequestURI, c.Host, c.Header, c.Body)
		}
	}
}

// withoutCredentials blanks the Authorization lines of raw requests: the
// sidecar neither scans nor strips that credential (docs/egress.md, the
// detect step: "every header value but credentials").
func withoutCredentials(raw []byte) []byte {
	lines := bytes.SplitAfter(raw, []byte("\n"))
	for i, l := range lines {
		if name, _, ok := bytes.Cut(l, []byte(":")); ok && strings.EqualFold(string(bytes.TrimSpace(name)), "authorization") {
			lines[i] = []byte("\n")
		}
	}
	return bytes.Join(lines, nil)
}

// cardInCall names where a card is in a request the target got, or "".
func cardInCall(c egressCall) string {
	uri := c.RequestURI
	path, query, _ := strings.Cut(uri, "?")
	for _, p := range []struct{ where, v string }{
		{"uri", uri}, {"path", fuzzUnescape(path, false)}, {"query", fuzzUnescape(query, false)},
		{"form query", fuzzUnescape(query, true)}, {"host", c.Host}, {"method", c.Method},
	} {
		if textHoldsCard([]byte(p.v)) {
			return p.where
		}
	}
	for name, vs := range c.Header {
		if textHoldsCard([]byte(name)) {
			return "header name " + name
		}
		if http.CanonicalHeaderKey(name) == "Authorization" {
			continue // a credential, which the sidecar does not scan (docs/egress.md)
		}
		for _, v := range vs {
			if textHoldsCard([]byte(v)) {
				return "header " + name
			}
		}
	}
	if len(c.Body) == 0 {
		return ""
	}
	if fuzzIsForm(c.Header.Get("Content-Type")) && textHoldsCard([]byte(fuzzUnescape(string(c.Body), true))) {
		return "form body"
	}
	if found, err := detect.ScanJSON(c.Body, detect.Options{MaxDepth: DefaultMaxJSONDepth}); err == nil {
		if found.Has(detect.CreditCard) || seedCardIn(c.Body) != "" {
			return "JSON body"
		}
		return ""
	}
	if textHoldsCard(c.Body) {
		return "body"
	}
	return ""
}

// fuzzIsForm reports whether a content type is a form's.
func fuzzIsForm(contentType string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), "application/x-www-form-urlencoded")
}

// fuzzUnescape percent-decodes s leniently (a bad escape stays as it is), with
// form reading '+' as a space, as the target's own parsers would.
func fuzzUnescape(s string, form bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%' && i+2 < len(s) && fuzzIsHex(s[i+1]) && fuzzIsHex(s[i+2]):
			c = fuzzUnhex(s[i+1])<<4 | fuzzUnhex(s[i+2])
			i += 2
		case c == '+' && form:
			c = ' '
		}
		b.WriteByte(c)
	}
	return b.String()
}

func fuzzIsHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func fuzzUnhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// textHoldsCard reports whether b holds a seed card or anything the
// detector reads as a card.
func textHoldsCard(b []byte) bool {
	return seedCardIn(b) != "" || detect.ScanText(b).Has(detect.CreditCard)
}

// seedCardIn returns the seed card b holds whole, or "". A card glued to a
// fraction (4532015112830366.5, 1.4532015112830366) is another number.
func seedCardIn(b []byte) string {
	digit := func(i int) bool { return i >= 0 && i < len(b) && b[i] >= '0' && b[i] <= '9' }
	alnum := func(i int) bool {
		return i >= 0 && i < len(b) && (digit(i) || b[i] >= 'a' && b[i] <= 'z' || b[i] >= 'A' && b[i] <= 'Z')
	}
	for _, card := range fuzzCards {
		for i := 0; ; {
			j := bytes.Index(b[i:], []byte(card))
			if j < 0 {
				break
			}
			at, end := i+j, i+j+len(card)
			if !alnum(at-1) && !alnum(end) && !(at >= 2 && b[at-1] == '.' && digit(at-2)) && !(end < len(b) && b[end] == '.' && digit(end+1)) {
				return card
			}
			i = at + 1
		}
	}
	return ""
}

// cardInRecord names a card a record (as JSON) holds, or "".
func cardInRecord(b []byte) string {
	if c := seedCardIn(b); c != "" {
		return "card " + c
	}
	if found, err := detect.ScanJSON(b, detect.Options{}); err == nil && found.Has(detect.CreditCard) {
		return "a card the detector finds"
	}
	return ""
}

// build writes the raw request: the request line as given, the fuzzed
// header lines (without line breaks, so that they stay header lines), the
// body's Content-Length unless a fuzzed line frames the body itself, and
// Connection: close.
func buildEgressRequest(method, target string, header [][2]string, body []byte, host string) []byte {
	var b bytes.Buffer
	b.WriteString(method + " " + target + " HTTP/1.1\r\n")
	b.WriteString("Host: " + host + "\r\n")
	framed := false
	for _, h := range header {
		name := strings.NewReplacer("\r", "", "\n", "").Replace(h[0])
		value := strings.NewReplacer("\r", "", "\n", "").Replace(h[1])
		if name == "" {
			continue
		}
		if n := strings.ToLower(strings.TrimSpace(name)); n == "content-length" || n == "transfer-encoding" {
			framed = true
		}
		b.WriteString(name + ": " + value + "\r\n")
	}
	if !framed {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.Write(body)
	return b.Bytes()
}

// rewriteHost replaces the host of an absolute URL: the placeholder by the
// target's address, with dead any other host by an address where nothing
// listens.
func (e *egressFuzz) rewriteHost(target string, dead bool) string {
	i := strings.Index(target, "://")
	if i <= 0 {
		return target
	}
	a := i + 3
	end := len(target)
	if j := strings.IndexAny(target[a:], "/?#"); j >= 0 {
		end = a + j
	}
	auth := target[a:end]
	at := strings.LastIndexByte(auth, '@') + 1
	hostname, _, _ := strings.Cut(auth[at:], ":")
	switch {
	case strings.EqualFold(hostname, egressPlaceholder):
		return target[:a] + auth[:at] + e.targetHost + target[end:]
	case dead && auth[at:] != e.targetHost:
		return target[:a] + auth[:at] + e.deadHost + target[end:]
	}
	return target
}

// safe reports whether every request fasthttp reads in raw (as the egress
// listener would) calls no host but the harness's own: the sidecar reads
// the target with url.Parse, and refuses CONNECT.
func (e *egressFuzz) safe(raw []byte) bool {
	br := bufio.NewReaderSize(bytes.NewReader(raw), len(raw)+1)
	var req fasthttp.Request
	for {
		req.Reset()
		if err := req.Header.Read(br); err != nil {
			return true
		}
		if string(req.Header.Method()) != http.MethodConnect {
			u, err := url.Parse(string(req.Header.RequestURI()))
			if err == nil && u.Host != "" && u.Host != e.targetHost && u.Host != e.deadHost {
				return false
			}
		}
		if err := req.ContinueReadBody(br, 0, false); err != nil {
			return true
		}
	}
}

// egressAnswer is one answer the egress proxy wrote.
type egressAnswer struct {
	status int
	header http.Header
	body   []byte
}

// send writes raw on a new connection to the egress proxy and reads every
// answer until the proxy closes the connection.
func (e *egressFuzz) send(raw []byte, method string) ([]egressAnswer, error) {
	conn, err := net.DialTimeout("tcp", e.proxy, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	br := bufio.NewReader(conn)
	var out []egressAnswer
	for {
		if _, err := br.Peek(1); err != nil {
			switch {
			case len(out) > 0 && (errors.Is(err, io.EOF) || isTimeout(err)):
				return out, nil // the proxy closed the connection, or keeps it idle
			case errors.Is(err, syscall.ECONNRESET):
				// The proxy closed the connection with bytes of the
				// request unread (after a 431, say): the kernel resets it.
				return out, nil
			case errors.Is(err, io.EOF):
				return nil, errors.New("the connection closed without an answer")
			}
			return out, fmt.Errorf("answer %d: %w", len(out)+1, err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return out, fmt.Errorf("answer %d: %w", len(out)+1, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return out, fmt.Errorf("answer %d: body: %w", len(out)+1, err)
		}
		if method == http.MethodHead && resp.ContentLength > 0 && len(out) == 0 {
			// A HEAD request too malformed to be read as one gets its
			// refusal with a body (fasthttp answers it before the method
			// counts): exactly Content-Length bytes, then the end.
			_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err := br.Peek(1); err == nil {
				body = make([]byte, resp.ContentLength)
				if _, err := io.ReadFull(br, body); err != nil {
					return out, fmt.Errorf("answer to HEAD: a body shorter than its Content-Length: %w", err)
				}
			}
		}
		if resp.StatusCode < 200 {
			continue // 100 Continue
		}
		out = append(out, egressAnswer{resp.StatusCode, resp.Header, body})
		// Further answers only come for pipelined requests, read already.
		_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	}
}

// checkEgressAnswer fails unless a is an answer of the target relayed or a
// JSON refusal of the sidecar. A relayed answer carries the latency the
// sidecar measured; it may come from the target's HTTP server rather than
// its handler (net/http's own 400 for a header line it cannot read).
func checkEgressAnswer(t *testing.T, a egressAnswer) {
	t.Helper()
	if a.status < 400 || a.header.Get("X-Fuzz-Target") != "" || a.header.Get("X-Agent-Latency-Ms") != "" {
		return
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(a.body, &e); err != nil || e.Error == "" {
		t.Fatalf("refusal %d without a JSON error: %q %q", a.status, a.header, string(a.body))
	}
}

// alive sends a well-formed allowed call, which must reach the target.
func (e *egressFuzz) alive(t *testing.T) {
	t.Helper()
	body := []byte(`{"task":"alive"}`)
	// The target keeps data permanently, which is always warned about: the
	// operator's override lets the call through.
	raw := buildEgressRequest("POST", "http://"+e.targetHost+"/proxy/alive",
		[][2]string{{"Content-Type", "application/json"}, {"X-User-Override", testOverride}}, body, e.targetHost)
	answers, err := e.send(raw, "POST")
	if err != nil || len(answers) != 1 || answers[0].status != 200 || answers[0].header.Get("X-Fuzz-Target") == "" {
		var got []string
		for _, a := range answers {
			got = append(got, fmt.Sprintf("%d %s", a.status, a.body))
		}
		t.Fatalf("the egress proxy no longer serves an allowed call: %v %q", err, got)
	}
	_, calls := e.target.take()
	if len(calls) == 0 || calls[len(calls)-1].RequestURI != "/proxy/alive" {
		t.Fatalf("the allowed call did not reach the target: %+v", calls)
	}
}

// aliveEvery is how often (in inputs) FuzzEgress checks that the egress
// proxy still serves an allowed call.
const aliveEvery = 64

// FuzzEgress sends what the local agent may send its egress proxy — any
// method, request target, a few header lines and a body — as raw bytes
// over a real connection, to a real egress proxy in front of a real target
// agent that keeps data permanently. A target naming egressPlaceholder
// reaches that agent; any other host reaches nothing. For every input: no
// panic, and the proxy keeps serving; every answer is valid HTTP and every
// refusal a JSON error; no card number reaches the target in any part of a
// request, nor the flight recorder.
func FuzzEgress(f *testing.F) {
	e := newEgressFuzz(f)
	f.Fuzz(func(t *testing.T, method, target, n1, v1, n2, v2, n3, v3 string, body []byte) {
		if len(method)+len(target)+len(n1)+len(v1)+len(n2)+len(v2)+len(n3)+len(v3)+len(body) > 256<<10 {
			return
		}
		if e.inputs%aliveEvery == 0 {
			e.alive(t)
		}
		e.inputs++
		header := [][2]string{{n1, v1}, {n2, v2}, {n3, v3}}
		rewritten := e.rewriteHost(target, false)
		raw := buildEgressRequest(method, rewritten, header, body, e.targetHost)
		if !e.safe(raw) {
			raw = buildEgressRequest(method, e.rewriteHost(target, true), header, body, e.targetHost)
			if !e.safe(raw) {
				return // it would call a host beyond the harness's
			}
		}
		answers, err := e.send(raw, method)
		if n := panics.Load(); n != 0 {
			t.Fatalf("a handler panicked (%d)", n)
		}
		if addr := e.strayDial.Swap(nil); addr != nil {
			t.Fatalf("discovery was asked to dial %s", *addr)
		}
		if err != nil {
			t.Fatalf("not a valid HTTP answer: %v (after %d answers)\nrequest: %q", err, len(answers), raw)
		}
		for _, a := range answers {
			checkEgressAnswer(t, a)
		}
		e.checkTarget(t)
		e.checkRecords(t)
	})
}
