package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Header names and constants of iatp request signatures (PROTOCOL.md
// section 9): RFC 9421 HTTP Message Signatures with Ed25519 and an RFC 9530
// Content-Digest.
const (
	HeaderSignatureInput = "Signature-Input"
	HeaderSignature      = "Signature"
	HeaderContentDigest  = "Content-Digest"
	HeaderTraceID        = "X-Agent-Trace-ID"
	// HeaderAttestation carries the caller's v2 attestation, the unpadded
	// base64url of its JSON.
	HeaderAttestation = "X-IATP-Attestation"
	// SignatureLabel is the dictionary key of iatp's signature in
	// Signature-Input and Signature.
	SignatureLabel = "iatp"
	// SignatureAlgorithm is the RFC 9421 alg parameter iatp requires.
	SignatureAlgorithm = "ed25519"

	maxNonceLen = 128
)

// requiredComponents must all be covered by an iatp request signature.
var requiredComponents = []string{"@method", "@target-uri", "content-digest", "x-agent-trace-id"}

// RequiredComponents returns the components every iatp request signature
// must cover: @method, @target-uri, content-digest and x-agent-trace-id.
func RequiredComponents() []string { return slices.Clone(requiredComponents) }

// derivedComponents are the RFC 9421 derived components this package
// computes for requests (section 2.2). @query-param, which needs a
// parameter, and @status, which is for responses, are not supported.
var derivedComponents = []string{"@method", "@target-uri", "@authority", "@scheme", "@request-target", "@path", "@query"}

// HeaderFunc returns every value of the request header field name (given
// in lowercase), in order; nil when it is absent. http.Header.Values and
// fasthttp's RequestHeader.PeekAll both fit behind it.
type HeaderFunc func(name string) []string

// Message is what a request signature covers: the method, the target URI
// (absolute, "https://host/path?query", as the signer sent it and the
// verifier received it), the header fields and the body. It holds no
// *http.Request so that any HTTP stack can fill it.
type Message struct {
	Method    string
	TargetURI string
	Header    HeaderFunc
	Body      []byte
}

func (m *Message) header(name string) []string {
	if m.Header == nil {
		return nil
	}
	return m.Header(name)
}

// MessageFromRequest describes r for signing (a client request with an
// absolute URL) or verifying (a server request, whose URL is the request
// target; the scheme is https when r.TLS is set, http otherwise). body is
// the request body, which r.Body no longer holds once read.
func MessageFromRequest(r *http.Request, body []byte) Message {
	return Message{
		Method:    r.Method,
		TargetURI: TargetURI(r),
		Header:    HTTPHeaderFunc(r.Header),
		Body:      body,
	}
}

// canonicalNames maps the lowercase names this package looks up to their
// canonical MIME form, sparing an allocation per lookup.
var canonicalNames = map[string]string{
	"signature-input":    HeaderSignatureInput,
	"signature":          HeaderSignature,
	"content-digest":     HeaderContentDigest,
	"x-agent-trace-id":   "X-Agent-Trace-Id",
	"x-iatp-attestation": "X-Iatp-Attestation",
	"content-type":       "Content-Type",
}

// HTTPHeaderFunc returns a HeaderFunc over h.
func HTTPHeaderFunc(h http.Header) HeaderFunc {
	return func(name string) []string {
		if k, ok := canonicalNames[name]; ok {
			return h[k]
		}
		return h.Values(name)
	}
}

// TargetURI returns the absolute target URI of r as RFC 9421 @target-uri
// sees it: scheme "://" Host header value, then the request target as sent
// on the wire. A verifier behind a proxy that terminates TLS or rewrites
// the Host should build its Message with the URI the signer used instead.
func TargetURI(r *http.Request) string {
	host := r.Host
	if r.URL.IsAbs() {
		if host == "" {
			host = r.URL.Host
		}
		return r.URL.Scheme + "://" + host + r.URL.RequestURI()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	target := r.RequestURI
	if target == "" {
		target = r.URL.RequestURI()
	}
	return scheme + "://" + host + target
}

// ContentDigest returns the RFC 9530 Content-Digest field value of body
// with sha-256: "sha-256=:<base64>:".
func ContentDigest(body []byte) string {
	sum := sha256.Sum256(body)
	return "sha-256=:" + b64.EncodeToString(sum[:]) + ":"
}

// signatureParams are the parameters of a request signature.
type signatureParams struct {
	// Components are the covered component identifiers, in order.
	Components []string
	// Created and Expires are zero when absent.
	Created time.Time
	Expires time.Time
	KeyID   string
	Nonce   string
	Alg     string
	Tag     string
}

// requestSignature is a parsed signature and the base it claims to sign.
type requestSignature struct {
	params signatureParams
	base   []byte
	sig    []byte
}

// parseRequestSignature finds the signature labelled label in m, checks its
// form and builds its signature base (RFC 9421 section 3.2 steps 1-7). It
// does not check the signature, the key or any policy.
func parseRequestSignature(m *Message, label string) (*requestSignature, error) {
	inputs, sigs := m.header("signature-input"), m.header("signature")
	if len(inputs) == 0 && len(sigs) == 0 {
		return nil, ErrNoSignature
	}
	if len(inputs) == 0 || len(sigs) == 0 {
		return nil, fmt.Errorf("%w: Signature-Input and Signature must come together", ErrMalformed)
	}
	inDict, err := parseDictionary(joinFieldLines(inputs))
	if err != nil {
		return nil, fmt.Errorf("signature-input field: %w", err)
	}
	sigDict, err := parseDictionary(joinFieldLines(sigs))
	if err != nil {
		return nil, fmt.Errorf("signature field: %w", err)
	}
	in, okIn := findMember(inDict, label)
	sg, okSig := findMember(sigDict, label)
	if !okIn && !okSig {
		return nil, fmt.Errorf("%w: no signature labelled %q", ErrNoSignature, label)
	}
	if !okIn || !okSig {
		return nil, fmt.Errorf("%w: signature %q needs both Signature-Input and Signature", ErrMalformed, label)
	}
	if !in.inner {
		return nil, fmt.Errorf("%w: Signature-Input %q is not an inner list", ErrMalformed, label)
	}
	if sg.inner || sg.item.kind != sfBinary || len(sg.params) != 0 {
		return nil, fmt.Errorf("%w: Signature %q is not a byte sequence", ErrMalformed, label)
	}
	if len(sg.item.bin) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: signature is %d bytes, want %d", ErrMalformed, len(sg.item.bin), ed25519.SignatureSize)
	}
	rs := &requestSignature{sig: sg.item.bin}
	if rs.params, err = readSignatureParams(in.list, in.params); err != nil {
		return nil, err
	}
	if rs.base, err = signatureBase(make([]byte, 0, 512), m, in.list, in.params); err != nil {
		return nil, err
	}
	return rs, nil
}

func findMember(d []sfMember, key string) (sfMember, bool) {
	for _, m := range d {
		if m.key == key {
			return m, true
		}
	}
	return sfMember{}, false
}

// joinFieldLines combines the lines of one field (RFC 9110 section 5.3).
func joinFieldLines(lines []string) string {
	if len(lines) == 1 {
		return lines[0]
	}
	return strings.Join(lines, ", ")
}

// readSignatureParams checks the covered components and reads the
// signature parameters. Unknown parameters and component parameters are
// refused: what the verifier cannot interpret, it does not accept.
func readSignatureParams(list []sfInnerItem, params sfParams) (signatureParams, error) {
	sp := signatureParams{Components: make([]string, 0, len(list))}
	for _, it := range list {
		if it.item.kind != sfString {
			return sp, fmt.Errorf("%w: covered component is not a string", ErrMalformed)
		}
		name := it.item.str
		if len(it.params) != 0 {
			return sp, fmt.Errorf("%w: component parameters (on %q) are not supported", ErrMalformed, truncate(name, 32))
		}
		if !validComponentName(name) {
			return sp, fmt.Errorf("%w: unsupported component %q", ErrMalformed, truncate(name, 32))
		}
		if slices.Contains(sp.Components, name) {
			return sp, fmt.Errorf("%w: component %q is covered twice", ErrMalformed, truncate(name, 32))
		}
		sp.Components = append(sp.Components, name)
	}
	for _, p := range params {
		var err error
		switch p.key {
		case "created":
			sp.Created, err = paramTime(p)
		case "expires":
			sp.Expires, err = paramTime(p)
		case "keyid":
			sp.KeyID, err = paramString(p)
		case "nonce":
			sp.Nonce, err = paramString(p)
		case "alg":
			sp.Alg, err = paramString(p)
		case "tag":
			sp.Tag, err = paramString(p)
		default:
			err = fmt.Errorf("%w: unsupported signature parameter %q", ErrMalformed, p.key)
		}
		if err != nil {
			return sp, err
		}
	}
	return sp, nil
}

func paramTime(p sfParam) (time.Time, error) {
	if p.value.kind != sfInteger || p.value.integer < 0 {
		return time.Time{}, fmt.Errorf("%w: %s must be a non-negative integer", ErrMalformed, p.key)
	}
	return time.Unix(p.value.integer, 0), nil
}

func paramString(p sfParam) (string, error) {
	if p.value.kind != sfString {
		return "", fmt.Errorf("%w: %s must be a string", ErrMalformed, p.key)
	}
	return p.value.str, nil
}

func validComponentName(name string) bool {
	if strings.HasPrefix(name, "@") {
		return slices.Contains(derivedComponents, name)
	}
	if name == "" || name == "signature" || name == "signature-input" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'A' && c <= 'Z' || !isTChar(c) {
			return false
		}
	}
	return true
}

// signatureBase appends the RFC 9421 section 2.5 signature base of m for
// the covered components and parameters to dst.
func signatureBase(dst []byte, m *Message, list []sfInnerItem, params sfParams) ([]byte, error) {
	var u *url.URL
	for _, it := range list {
		name := it.item.str
		var value string
		if strings.HasPrefix(name, "@") {
			if u == nil && name != "@method" && name != "@target-uri" {
				var err error
				if u, err = url.Parse(m.TargetURI); err != nil || !u.IsAbs() || u.Host == "" {
					return nil, fmt.Errorf("%w: target URI is not absolute", ErrMalformed)
				}
			}
			value = derivedValue(m, u, name)
		} else {
			lines := m.header(name)
			if len(lines) == 0 {
				return nil, fmt.Errorf("%w: covered header field %q is missing", ErrMalformed, truncate(name, 32))
			}
			value = fieldValue(lines)
		}
		if value == "" && (name == "@method" || name == "@target-uri") {
			return nil, fmt.Errorf("%w: %s is empty", ErrMalformed, name)
		}
		if strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("%w: value of %q holds a line break", ErrMalformed, truncate(name, 32))
		}
		dst = append(dst, '"')
		dst = append(dst, name...)
		dst = append(dst, "\": "...)
		dst = append(dst, value...)
		dst = append(dst, '\n')
	}
	dst = append(dst, "\"@signature-params\": "...)
	return appendSFInnerList(dst, list, params)
}

// fieldValue is the canonical value of a header field: each line trimmed of
// optional white space, joined by ", " (RFC 9421 section 2.1).
func fieldValue(lines []string) string {
	if len(lines) == 1 {
		return strings.Trim(lines[0], " \t")
	}
	trimmed := make([]string, len(lines))
	for i, l := range lines {
		trimmed[i] = strings.Trim(l, " \t")
	}
	return strings.Join(trimmed, ", ")
}

func derivedValue(m *Message, u *url.URL, name string) string {
	switch name {
	case "@method":
		return m.Method
	case "@target-uri":
		return m.TargetURI
	case "@scheme":
		return strings.ToLower(u.Scheme)
	case "@authority":
		host := strings.ToLower(u.Host)
		scheme := strings.ToLower(u.Scheme)
		if scheme == "http" {
			host = strings.TrimSuffix(host, ":80")
		} else if scheme == "https" {
			host = strings.TrimSuffix(host, ":443")
		}
		return host
	case "@path":
		if p := u.EscapedPath(); p != "" {
			return p
		}
		return "/"
	case "@query":
		return "?" + u.RawQuery
	case "@request-target":
		p := u.EscapedPath()
		if p == "" {
			p = "/"
		}
		if u.RawQuery != "" || u.ForceQuery {
			p += "?" + u.RawQuery
		}
		return p
	}
	return ""
}

// RequestSigner signs outgoing requests as one agent: RFC 9421 signature
// labelled "iatp" with alg ed25519, keyid the agent id, created and a fresh
// nonce, covering RequiredComponents plus ExtraComponents.
type RequestSigner struct {
	// AgentID is the keyid: the agent the callee will authenticate.
	AgentID string
	// Key is the agent's private key.
	Key PrivateKey
	// Attestation, if set, is the agent's v2 attestation (its JSON), sent
	// in X-IATP-Attestation so the callee can learn the key without config.
	Attestation []byte
	// ExtraComponents are further header fields to cover (lowercase names).
	ExtraComponents []string
	// Clock gives created. If nil, time.Now.
	Clock func() time.Time
	// Rand gives nonces. If nil, crypto/rand.
	Rand io.Reader
}

// SignedHeaders are the header fields a signature adds to a request.
type SignedHeaders struct {
	ContentDigest  string
	SignatureInput string
	Signature      string
	// Attestation is empty when the signer has none.
	Attestation string
}

// Set writes the headers with set (for example http.Header.Set).
func (h SignedHeaders) Set(set func(name, value string)) {
	set(HeaderContentDigest, h.ContentDigest)
	set(HeaderSignatureInput, h.SignatureInput)
	set(HeaderSignature, h.Signature)
	if h.Attestation != "" {
		set(HeaderAttestation, h.Attestation)
	}
}

// Sign signs m. The Content-Digest is computed from m.Body (the value
// m.Header gives for content-digest, if any, is ignored); every other
// covered field, x-agent-trace-id included, must be present in m.Header.
func (s *RequestSigner) Sign(m Message) (SignedHeaders, error) {
	if s.Key.IsZero() {
		return SignedHeaders{}, ErrNoKey
	}
	if err := checkID("agent id", s.AgentID); err != nil {
		return SignedHeaders{}, err
	}
	if len(s.Attestation) > MaxAttestationBytes {
		return SignedHeaders{}, fmt.Errorf("%w: attestation is %d bytes, limit %d", ErrMalformed, len(s.Attestation), MaxAttestationBytes)
	}
	now := time.Now
	if s.Clock != nil {
		now = s.Clock
	}
	r := s.Rand
	if r == nil {
		r = rand.Reader
	}
	var nonceBytes [16]byte
	if _, err := io.ReadFull(r, nonceBytes[:]); err != nil {
		return SignedHeaders{}, fmt.Errorf("sign request: nonce: %w", err)
	}
	digest := ContentDigest(m.Body)
	inner := m.Header
	m.Header = func(name string) []string {
		if name == "content-digest" {
			return []string{digest}
		}
		if inner == nil {
			return nil
		}
		return inner(name)
	}

	var list []sfInnerItem
	for _, c := range requiredComponents {
		list = append(list, sfInnerItem{item: sfItem{kind: sfString, str: c}})
	}
	for _, c := range s.ExtraComponents {
		if !validComponentName(c) || strings.HasPrefix(c, "@") {
			return SignedHeaders{}, fmt.Errorf("%w: extra component %q must be a lowercase header field name", ErrMalformed, c)
		}
		if slices.Contains(requiredComponents, c) {
			continue
		}
		list = append(list, sfInnerItem{item: sfItem{kind: sfString, str: c}})
	}
	params := sfParams{
		{key: "created", value: sfItem{kind: sfInteger, integer: now().Unix()}},
		{key: "keyid", value: sfItem{kind: sfString, str: s.AgentID}},
		{key: "nonce", value: sfItem{kind: sfString, str: b64url.EncodeToString(nonceBytes[:])}},
		{key: "alg", value: sfItem{kind: sfString, str: SignatureAlgorithm}},
	}
	base, err := signatureBase(make([]byte, 0, 512), &m, list, params)
	if err != nil {
		return SignedHeaders{}, fmt.Errorf("sign request: %w", err)
	}
	sig, err := s.Key.sign(base)
	if err != nil {
		return SignedHeaders{}, err
	}
	input, err := appendSFInnerList([]byte(SignatureLabel+"="), list, params)
	if err != nil {
		return SignedHeaders{}, fmt.Errorf("sign request: %w", err)
	}
	h := SignedHeaders{
		ContentDigest:  digest,
		SignatureInput: string(input),
		Signature:      SignatureLabel + "=:" + b64.EncodeToString(sig) + ":",
	}
	if len(s.Attestation) > 0 {
		h.Attestation = b64url.EncodeToString(s.Attestation)
	}
	return h, nil
}

// SignRequest signs r, whose body is body, and sets the signature headers
// on it. r.URL must be absolute; X-Agent-Trace-ID must be set.
func (s *RequestSigner) SignRequest(r *http.Request, body []byte) error {
	h, err := s.Sign(MessageFromRequest(r, body))
	if err != nil {
		return err
	}
	h.Set(r.Header.Set)
	return nil
}

// verifyDigest checks the Content-Digest field of m against m.Body: the
// sha-256 member is required and must match; other algorithms are
// ignored.
func verifyDigest(m *Message) error {
	lines := m.header("content-digest")
	if len(lines) == 0 {
		return fmt.Errorf("%w: no Content-Digest", ErrBadDigest)
	}
	d, err := parseDictionary(joinFieldLines(lines))
	if err != nil {
		return fmt.Errorf("%w: Content-Digest: %w", ErrBadDigest, err)
	}
	member, ok := findMember(d, "sha-256")
	if !ok || member.inner || member.item.kind != sfBinary || len(member.item.bin) != sha256.Size {
		return fmt.Errorf("%w: Content-Digest has no sha-256 digest of 32 bytes", ErrBadDigest)
	}
	sum := sha256.Sum256(m.Body)
	if subtle.ConstantTimeCompare(sum[:], member.item.bin) != 1 {
		return fmt.Errorf("%w: the body does not match its sha-256 Content-Digest", ErrBadDigest)
	}
	return nil
}
