// Package wire holds the protocol's tokens in one place: header names,
// the trace-id grammar, the rules for which headers a sidecar owns, strips
// or never forwards, and the routes of the protected call (PROTOCOL §5, §9).
//
// It imports nothing of iatp, so every package may use it.
package wire

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// Header names the sidecar reads and writes.
const (
	// TraceID carries the trace id across sidecars and agents.
	TraceID = "X-Agent-Trace-ID"
	// Override carries the human-held override token of a 449 (PROTOCOL §6).
	Override = "X-User-Override"
	// TrustScore is the target's effective score, on answers.
	TrustScore = "X-Agent-Trust-Score"
	// Latency is the agent's latency in milliseconds, on answers.
	Latency = "X-Agent-Latency-Ms"
	// Quarantined marks an answer of a quarantined call.
	Quarantined = "X-Agent-Quarantined"
	// IdempotencyKey is the caller's idempotency key (PROTOCOL §11).
	IdempotencyKey = "X-Idempotency-Key"
	// Traceparent is the W3C trace context.
	Traceparent = "Traceparent"
	// Tracestate is the W3C trace context's vendor state.
	Tracestate = "Tracestate"
	// ForwardedFor lists the addresses a request came through.
	ForwardedFor = "X-Forwarded-For"
	// Signature, SignatureInput and ContentDigest are the RFC 9421 and RFC
	// 9530 headers of a signed request (PROTOCOL §9).
	Signature      = "Signature"
	SignatureInput = "Signature-Input"
	ContentDigest  = "Content-Digest"
	// Authorization carries the admin token.
	Authorization = "Authorization"
	// ProxyAuthorization carries the egress proxy's token.
	ProxyAuthorization = "Proxy-Authorization"
	// Attestation carries a caller's v2 attestation, base64url of its JSON.
	Attestation = "X-IATP-Attestation"
	// CallerID tells the agent who its authenticated caller is.
	CallerID = "X-IATP-Caller-ID"
	// CallerAttested tells the agent whether the caller's key was attested.
	CallerAttested = "X-IATP-Caller-Attested"
)

// StatusWarning is the protocol's "retry with a user override" status.
const StatusWarning = 449

// Owned lists the request headers the sidecar reads and decides on. Each
// may appear at most once (under any spelling, see Normalize): a request
// that repeats one is refused, so the sidecar and the agent can never read
// two different values of it.
var Owned = []string{TraceID, Override, ForwardedFor, Signature, SignatureInput, ContentDigest,
	Traceparent, Tracestate, IdempotencyKey, Authorization, Attestation, ProxyAuthorization}

// Credentials lists the headers whose values are credentials the sidecar
// itself consumes; they are not scanned for sensitive data (PROTOCOL §4)
// and never recorded.
var Credentials = []string{Override, Authorization, Signature, SignatureInput, Attestation, ProxyAuthorization}

// hopByHop are connection-level headers a proxy never passes on (RFC 9110
// §7.6.1), normalized.
var hopByHop = []string{"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
	"proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}

// Normalize returns a header name in the form the sidecar compares names
// in: lower case, with '_' read as '-'. Servers that map header names to
// variables (CGI, WSGI) read X_IATP_Caller_ID as X-IATP-Caller-ID, so the
// two spellings are one header.
func Normalize(name string) string {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'A' && c <= 'Z' || c == '_' {
			return normalizeSlow(name)
		}
	}
	return name
}

func normalizeSlow(name string) string {
	b := []byte(name)
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = c + 'a' - 'A'
		case c == '_':
			b[i] = '-'
		}
	}
	return string(b)
}

// Same reports whether two header names are the same header under
// Normalize, without allocating.
func Same(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if fold(a[i]) != fold(b[i]) {
			return false
		}
	}
	return true
}

func fold(c byte) byte {
	switch {
	case c >= 'A' && c <= 'Z':
		return c + 'a' - 'A'
	case c == '_':
		return '-'
	}
	return c
}

// IsIATP reports whether name is an X-IATP-* header in any spelling. Only a
// sidecar sets those: they are stripped from requests and from answers.
func IsIATP(name string) bool {
	return len(name) > len("x-iatp-") && Same(name[:len("x-iatp-")], "x-iatp-")
}

// IsHopByHop reports whether name is a connection-level header.
func IsHopByHop(name string) bool {
	for _, h := range hopByHop {
		if Same(name, h) {
			return true
		}
	}
	return false
}

// IsOwned reports whether name is one of Owned.
func IsOwned(name string) bool {
	for _, h := range Owned {
		if Same(name, h) {
			return true
		}
	}
	return false
}

// IsCredential reports whether name is one of Credentials.
func IsCredential(name string) bool {
	for _, h := range Credentials {
		if Same(name, h) {
			return true
		}
	}
	return false
}

// ConnectionTokens calls fn for each header name a Connection header value
// lists; those headers are hop-by-hop too.
func ConnectionTokens(value string, fn func(name string)) {
	for tok := range strings.SplitSeq(value, ",") {
		if tok = strings.TrimSpace(tok); tok != "" {
			fn(tok)
		}
	}
}

// MaxTraceIDLen is the longest trace id accepted.
const MaxTraceIDLen = 128

// CheckTraceID says why id is not a trace id — 1 to 128 characters of
// [A-Za-z0-9._:-] — naming the header it came in; "" when it is one.
func CheckTraceID(id string) string {
	if id == "" {
		return TraceID + " is empty; send 1–128 characters of [A-Za-z0-9._:-], or leave the header out for a new id"
	}
	if p := TraceIDProblem(id); p != "" {
		return TraceID + " " + p
	}
	return ""
}

// TraceIDProblem says what is wrong with a non-empty trace id, without
// naming where it came from ("is 200 characters long; …"); "" when it is
// a trace id.
func TraceIDProblem(id string) string {
	if id == "" {
		return "is empty"
	}
	if len(id) > MaxTraceIDLen {
		return fmt.Sprintf("is %d characters long; at most %d of [A-Za-z0-9._:-] are allowed", len(id), MaxTraceIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !traceIDChar[id[i]] {
			return fmt.Sprintf("holds %q at position %d; only 1–%d characters of [A-Za-z0-9._:-] are allowed", rune(id[i]), i, MaxTraceIDLen)
		}
	}
	return ""
}

// ValidTraceID reports whether id is a trace id.
func ValidTraceID(id string) bool {
	if len(id) == 0 || len(id) > MaxTraceIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !traceIDChar[id[i]] {
			return false
		}
	}
	return true
}

var traceIDChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "._:-" {
		t[c] = true
	}
	return t
}()

// ProxyRoute is the protected call's route.
const ProxyRoute = "/proxy"

// SplitProxy reports whether the escaped request path rawPath is the
// protected call — "/proxy" or "/proxy/…" exactly as sent, so that
// "/%70roxy" is not — and returns what follows "/proxy" ("" or "/…").
func SplitProxy(rawPath string) (sub string, ok bool) {
	rest, ok := strings.CutPrefix(rawPath, ProxyRoute)
	if !ok || rest != "" && rest[0] != '/' {
		return "", false
	}
	return rest, true
}

// CheckSubpath says why the escaped path below /proxy cannot be appended to
// the agent's URL, or returns "" when it can. Each segment is read as the
// agent would read it: percent-decoded, and with path parameters after ';'
// set aside, so "%2e%2e" and "..;x" are dot segments. Refused: dot
// segments, encoded slashes and backslashes (and raw backslashes, which
// some servers read as slashes), what is still an escape of one of those
// after decoding (double encoding), control characters, and bad escapes.
func CheckSubpath(sub string) string {
	if sub == "" || sub == "/" {
		return ""
	}
	for seg := range strings.SplitSeq(sub[1:], "/") {
		if strings.IndexByte(seg, '\\') >= 0 {
			return "the path after /proxy holds a backslash; send '/' between segments"
		}
		dec, ok := unescape(seg)
		if !ok {
			return "the path after /proxy holds a malformed percent-escape"
		}
		name, _, _ := strings.Cut(dec, ";")
		switch {
		case name == "." || name == "..":
			return "the path after /proxy must not hold '.' or '..' segments: it is appended to the agent URL"
		case strings.ContainsAny(dec, "/\\"):
			return "the path after /proxy must not hold encoded slashes (%2F, %5C): it is appended to the agent URL"
		case hasEncodedSeparator(dec):
			return "the path after /proxy holds a doubly encoded '.', '/' or '\\'"
		}
		for i := 0; i < len(dec); i++ {
			if dec[i] < 0x20 || dec[i] == 0x7f {
				return "the path after /proxy holds a control character"
			}
		}
	}
	return ""
}

// unescape percent-decodes s, reporting false on a malformed escape.
func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 {
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		h, l := unhex(s[i+1]), unhex(s[i+2])
		if h < 0 || l < 0 {
			return "", false
		}
		b = append(b, byte(h<<4|l))
		i += 2
	}
	return string(b), true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

func hasEncodedSeparator(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		switch strings.ToLower(s[i+1 : i+3]) {
		case "2e", "2f", "5c":
			return true
		}
	}
	return false
}

// ErrTooLarge is what ReadAll's error for input over its limit is (by
// errors.Is); its text names the limit: "larger than N bytes".
var ErrTooLarge = errors.New("larger than the limit")

type tooLarge int64

func (e tooLarge) Error() string        { return fmt.Sprintf("larger than %d bytes", int64(e)) }
func (e tooLarge) Is(target error) bool { return target == ErrTooLarge }

// ReadAll reads r to its end, but no more than limit bytes: beyond, it
// stops and returns an error wrapping ErrTooLarge that names the limit.
// Every read of untrusted input in iatp goes through it.
func ReadAll(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, tooLarge(limit)
	}
	return b, nil
}
