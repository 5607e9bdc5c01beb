package identity

import (
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// request is a mutable request for the tests; msg turns it into a Message.
type request struct {
	method, target string
	h              http.Header
	body           []byte
}

func (r *request) msg() Message {
	return Message{Method: r.method, TargetURI: r.target, Header: HTTPHeaderFunc(r.h), Body: r.body}
}

func baseRequest() *request {
	h := http.Header{}
	h.Set(HeaderTraceID, "trace-1")
	h.Set("Content-Type", "application/json")
	return &request{
		method: "POST",
		target: "http://callee.example:8080/proxy/book?x=1",
		h:      h,
		body:   []byte(`{"task":"book"}`),
	}
}

func signedRequest(t *testing.T, s *RequestSigner) *request {
	t.Helper()
	r := baseRequest()
	sh, err := s.Sign(r.msg())
	if err != nil {
		t.Fatal(err)
	}
	sh.Set(r.h.Set)
	return r
}

// craft signs r for real with key over the given components and
// parameters, so that only the policy can object.
func craft(t *testing.T, r *request, key PrivateKey, components []string, params sfParams) {
	t.Helper()
	if r.h.Get(HeaderContentDigest) == "" {
		r.h.Set(HeaderContentDigest, ContentDigest(r.body))
	}
	var list []sfInnerItem
	for _, c := range components {
		list = append(list, sfInnerItem{item: sfItem{kind: sfString, str: c}})
	}
	m := r.msg()
	base, err := signatureBase(nil, &m, list, params)
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := key.sign(base)
	input, err := appendSFInnerList([]byte("iatp="), list, params)
	if err != nil {
		t.Fatal(err)
	}
	r.h.Set(HeaderSignatureInput, string(input))
	r.h.Set(HeaderSignature, "iatp=:"+b64.EncodeToString(sig)+":")
}

func stdParams(created time.Time, keyid string) sfParams {
	return sfParams{
		{key: "created", value: sfItem{kind: sfInteger, integer: created.Unix()}},
		{key: "keyid", value: sfItem{kind: sfString, str: keyid}},
		{key: "nonce", value: sfItem{kind: sfString, str: "n-" + fmt.Sprint(created.UnixNano())}},
		{key: "alg", value: sfItem{kind: sfString, str: "ed25519"}},
	}
}

func without(ps sfParams, key string) sfParams {
	var out sfParams
	for _, p := range ps {
		if p.key != key {
			out = append(out, p)
		}
	}
	return out
}

func newVerifier(t *testing.T, cfg CallerVerifierConfig) *CallerVerifier {
	t.Helper()
	cv, err := NewCallerVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cv
}

func TestVerifyCaller(t *testing.T) {
	agent, other := testKey(t, "caller"), testKey(t, "other caller")
	signer := &RequestSigner{AgentID: "caller-agent", Key: agent, Clock: func() time.Time { return t0 }}
	cfg := CallerVerifierConfig{TrustedAgents: map[string]ed25519.PublicKey{
		"caller-agent": agent.PublicKey(), "other-agent": other.PublicKey(),
	}}
	required := RequiredComponents()
	rows := []struct {
		name      string
		mutate    func(r *request)
		at        time.Duration // verification time after t0; default 1 s
		want      error
		fragments []string
	}{
		{name: "valid"},
		{name: "valid with more components", mutate: func(r *request) {
			craft(t, r, agent, append(required, "content-type", "@authority"), stdParams(t0, "caller-agent"))
		}},
		{name: "body changed after signing", mutate: func(r *request) { r.body = []byte(`{"task":"delete"}`) },
			want: ErrBadDigest, fragments: []string{"does not match"}},
		{name: "body and digest changed", mutate: func(r *request) {
			r.body = []byte(`{"task":"delete"}`)
			r.h.Set(HeaderContentDigest, ContentDigest(r.body))
		}, want: ErrBadSignature},
		{name: "method changed", mutate: func(r *request) { r.method = "PUT" }, want: ErrBadSignature},
		{name: "target changed", mutate: func(r *request) { r.target = strings.Replace(r.target, "book", "cancel", 1) }, want: ErrBadSignature},
		{name: "trace id changed", mutate: func(r *request) { r.h.Set(HeaderTraceID, "trace-2") }, want: ErrBadSignature},
		{name: "trace id removed", mutate: func(r *request) { r.h.Del(HeaderTraceID) }, want: ErrMalformed, fragments: []string{`"x-agent-trace-id" is missing`}},
		{name: "keyid of another known agent", mutate: func(r *request) {
			r.h.Set(HeaderSignatureInput, strings.Replace(r.h.Get(HeaderSignatureInput), `"caller-agent"`, `"other-agent"`, 1))
		}, want: ErrBadSignature},
		{name: "unknown keyid", mutate: func(r *request) { craft(t, r, agent, required, stdParams(t0, "stranger")) },
			want: ErrUnknownKey, fragments: []string{`"stranger"`}},
		{name: "unsigned", mutate: func(r *request) {
			r.h.Del(HeaderSignature)
			r.h.Del(HeaderSignatureInput)
		}, want: ErrNoSignature},
		{name: "Signature missing", mutate: func(r *request) { r.h.Del(HeaderSignature) }, want: ErrMalformed, fragments: []string{"come together"}},
		{name: "other label only", mutate: func(r *request) {
			r.h.Set(HeaderSignatureInput, strings.Replace(r.h.Get(HeaderSignatureInput), "iatp=", "sig1=", 1))
			r.h.Set(HeaderSignature, strings.Replace(r.h.Get(HeaderSignature), "iatp=", "sig1=", 1))
		}, want: ErrNoSignature, fragments: []string{`"iatp"`}},
		{name: "label in one header only", mutate: func(r *request) {
			r.h.Set(HeaderSignature, strings.Replace(r.h.Get(HeaderSignature), "iatp=", "sig1=", 1))
		}, want: ErrMalformed, fragments: []string{"needs both"}},
		{name: "label twice", mutate: func(r *request) { r.h.Add(HeaderSignatureInput, r.h.Get(HeaderSignatureInput)) },
			want: ErrMalformed, fragments: []string{`duplicate key "iatp"`}},
		{name: "second label beside ours", mutate: func(r *request) {
			r.h.Add(HeaderSignatureInput, `proxy=("@method");created=1`)
			r.h.Add(HeaderSignature, `proxy=:`+b64.EncodeToString(make([]byte, 64))+`:`)
		}},
		{name: "signature truncated", mutate: func(r *request) {
			sig := r.h.Get(HeaderSignature)
			raw, _ := b64.DecodeString(sig[6 : len(sig)-1])
			r.h.Set(HeaderSignature, "iatp=:"+b64.EncodeToString(raw[:63])+":")
		}, want: ErrMalformed, fragments: []string{"63 bytes, want 64"}},
		{name: "signature oversized", mutate: func(r *request) {
			sig := r.h.Get(HeaderSignature)
			raw, _ := b64.DecodeString(sig[6 : len(sig)-1])
			r.h.Set(HeaderSignature, "iatp=:"+b64.EncodeToString(append(raw, 0))+":")
		}, want: ErrMalformed, fragments: []string{"65 bytes"}},
		{name: "signature unpadded", mutate: func(r *request) {
			r.h.Set(HeaderSignature, strings.Replace(r.h.Get(HeaderSignature), "==:", ":", 1))
		}, want: ErrMalformed, fragments: []string{"canonical padded base64"}},
		{name: "signature with one padding character", mutate: func(r *request) {
			r.h.Set(HeaderSignature, strings.Replace(r.h.Get(HeaderSignature), "==:", "=:", 1))
		}, want: ErrMalformed},
		{name: "signature non-canonical trailing bits", mutate: func(r *request) {
			s := []byte(r.h.Get(HeaderSignature))
			i := len(s) - 4 // the character before "==:"
			s[i] = b64chars[strings.IndexByte(b64chars, s[i])^1]
			r.h.Set(HeaderSignature, string(s))
		}, want: ErrMalformed},
		{name: "signature not a byte sequence", mutate: func(r *request) { r.h.Set(HeaderSignature, `iatp="abc"`) }, want: ErrMalformed},
		{name: "Signature-Input not an inner list", mutate: func(r *request) { r.h.Set(HeaderSignatureInput, `iatp=1`) }, want: ErrMalformed},
		{name: "Signature-Input oversized", mutate: func(r *request) {
			r.h.Add(HeaderSignatureInput, "pad="+strings.Repeat("1", MaxStructuredFieldBytes))
		}, want: ErrMalformed, fragments: []string{"longer than"}},
		{name: "alg not ed25519", mutate: func(r *request) {
			ps := without(stdParams(t0, "caller-agent"), "alg")
			craft(t, r, agent, required, append(ps, sfParam{key: "alg", value: sfItem{kind: sfString, str: "hmac-sha256"}}))
		}, want: ErrUnsupportedAlgorithm, fragments: []string{`"hmac-sha256"`}},
		{name: "alg missing", mutate: func(r *request) { craft(t, r, agent, required, without(stdParams(t0, "caller-agent"), "alg")) },
			want: ErrMissingComponents, fragments: []string{"alg"}},
		{name: "created missing", mutate: func(r *request) { craft(t, r, agent, required, without(stdParams(t0, "caller-agent"), "created")) },
			want: ErrMissingComponents, fragments: []string{"created"}},
		{name: "keyid missing", mutate: func(r *request) { craft(t, r, agent, required, without(stdParams(t0, "caller-agent"), "keyid")) },
			want: ErrMissingComponents, fragments: []string{"keyid"}},
		{name: "nonce missing", mutate: func(r *request) { craft(t, r, agent, required, without(stdParams(t0, "caller-agent"), "nonce")) },
			want: ErrMissingComponents, fragments: []string{"nonce"}},
		{name: "created not an integer", mutate: func(r *request) {
			ps := without(stdParams(t0, "caller-agent"), "created")
			craft(t, r, agent, required, append(ps, sfParam{key: "created", value: sfItem{kind: sfString, str: "now"}}))
		}, want: ErrMalformed, fragments: []string{"created must be"}},
		{name: "nonce too long", mutate: func(r *request) {
			ps := without(stdParams(t0, "caller-agent"), "nonce")
			craft(t, r, agent, required, append(ps, sfParam{key: "nonce", value: sfItem{kind: sfString, str: strings.Repeat("n", maxNonceLen+1)}}))
		}, want: ErrMalformed, fragments: []string{"nonce longer"}},
		{name: "unknown parameter", mutate: func(r *request) {
			craft(t, r, agent, required, append(stdParams(t0, "caller-agent"), sfParam{key: "scope", value: sfItem{kind: sfString, str: "all"}}))
		}, want: ErrMalformed, fragments: []string{`"scope"`}},
		{name: "expired by its expires parameter", mutate: func(r *request) {
			craft(t, r, agent, required, append(stdParams(t0, "caller-agent"), sfParam{key: "expires", value: sfItem{kind: sfInteger, integer: t0.Unix()}}))
		}, at: 2 * time.Second, want: ErrStaleSignature, fragments: []string{"expired"}},
		{name: "tag parameter is accepted", mutate: func(r *request) {
			craft(t, r, agent, required, append(stdParams(t0, "caller-agent"), sfParam{key: "tag", value: sfItem{kind: sfString, str: "iatp"}}))
		}},
		{name: "trace id not covered", mutate: func(r *request) {
			craft(t, r, agent, []string{"@method", "@target-uri", "content-digest"}, stdParams(t0, "caller-agent"))
		}, want: ErrMissingComponents, fragments: []string{"x-agent-trace-id"}},
		{name: "only the method covered", mutate: func(r *request) { craft(t, r, agent, []string{"@method"}, stdParams(t0, "caller-agent")) },
			want: ErrMissingComponents, fragments: []string{"@target-uri content-digest x-agent-trace-id"}},
		{name: "component covered twice", mutate: func(r *request) {
			r.h.Set(HeaderSignatureInput, strings.Replace(r.h.Get(HeaderSignatureInput), `("@method"`, `("@method" "@method"`, 1))
		}, want: ErrMalformed, fragments: []string{"covered twice"}},
		{name: "component parameter", mutate: func(r *request) {
			r.h.Set(HeaderSignatureInput, strings.Replace(r.h.Get(HeaderSignatureInput), `"content-digest"`, `"content-digest";sf`, 1))
		}, want: ErrMalformed, fragments: []string{"component parameters"}},
		{name: "unsupported derived component", mutate: func(r *request) {
			r.h.Set(HeaderSignatureInput, strings.Replace(r.h.Get(HeaderSignatureInput), `"@method"`, `"@status"`, 1))
		}, want: ErrMalformed, fragments: []string{`"@status"`}},
		{name: "signature field covered", mutate: func(r *request) {
			r.h.Set(HeaderSignatureInput, strings.Replace(r.h.Get(HeaderSignatureInput), `"@method"`, `"signature"`, 1))
		}, want: ErrMalformed},
		{name: "digest without sha-256", mutate: func(r *request) {
			sum := sha512.Sum512(r.body)
			r.h.Set(HeaderContentDigest, "sha-512=:"+b64.EncodeToString(sum[:])+":")
			craft(t, r, agent, required, stdParams(t0, "caller-agent"))
		}, want: ErrBadDigest, fragments: []string{"no sha-256"}},
		{name: "digest with sha-512 beside sha-256", mutate: func(r *request) {
			sum := sha512.Sum512(r.body)
			r.h.Set(HeaderContentDigest, "sha-512=:"+b64.EncodeToString(sum[:])+":, "+ContentDigest(r.body))
			craft(t, r, agent, required, stdParams(t0, "caller-agent"))
		}},
		{name: "digest malformed", mutate: func(r *request) {
			r.h.Set(HeaderContentDigest, "sha-256=abc")
			craft(t, r, agent, required, stdParams(t0, "caller-agent"))
		}, want: ErrBadDigest},
		{name: "created in the far future", mutate: func(r *request) {
			ps := without(stdParams(t0, "caller-agent"), "created")
			craft(t, r, agent, required, append(sfParams{{key: "created", value: sfItem{kind: sfInteger, integer: 999_999_999_999_999}}}, ps...))
		}, want: ErrFutureSignature},
		{name: "created at the epoch", mutate: func(r *request) {
			ps := without(stdParams(t0, "caller-agent"), "created")
			craft(t, r, agent, required, append(sfParams{{key: "created", value: sfItem{kind: sfInteger, integer: 0}}}, ps...))
		}, want: ErrStaleSignature},
		{name: "created 60 s ago", at: 60 * time.Second},
		{name: "created 61 s ago", at: 61 * time.Second, want: ErrStaleSignature, fragments: []string{"1m1s ago"}},
		{name: "created 60 s ahead", at: -60 * time.Second},
		{name: "created 61 s ahead", at: -61 * time.Second, want: ErrFutureSignature, fragments: []string{"1m1s ahead"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			cv := newVerifier(t, cfg)
			req := signedRequest(t, signer)
			if r.mutate != nil {
				r.mutate(req)
			}
			at := r.at
			if at == 0 {
				at = time.Second
			}
			// created has whole seconds: measure from t0's second.
			c, err := cv.VerifyAt(req.msg(), t0.Truncate(time.Second).Add(at))
			wantErr(t, err, r.want, r.fragments...)
			if r.want != nil {
				var ae *AuthError
				if !errors.As(err, &ae) || ae.HTTPStatus() != http.StatusUnauthorized || !strings.HasPrefix(err.Error(), "request signature refused: ") {
					t.Fatalf("error %v is not an *AuthError", err)
				}
				if c != (Caller{}) {
					t.Fatalf("failure returned caller %+v", c)
				}
				if IsUnsigned(err) != (r.want == ErrNoSignature) {
					t.Fatalf("IsUnsigned(%v) wrong", err)
				}
				return
			}
			if c != (Caller{AgentID: "caller-agent", Authenticated: true}) {
				t.Fatalf("caller = %+v", c)
			}
		})
	}
}

func TestVerifyCallerReplay(t *testing.T) {
	agent := testKey(t, "caller")
	signer := &RequestSigner{AgentID: "caller-agent", Key: agent, Clock: func() time.Time { return t0 }}
	cv := newVerifier(t, CallerVerifierConfig{TrustedAgents: map[string]ed25519.PublicKey{"caller-agent": agent.PublicKey()}})
	req := signedRequest(t, signer)
	if _, err := cv.VerifyAt(req.msg(), t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Replayed inside the window.
	_, err := cv.VerifyAt(req.msg(), t0.Add(30*time.Second))
	wantErr(t, err, ErrReplayedNonce)
	// Replayed after the window: refused as stale, and the cache let go.
	_, err = cv.VerifyAt(req.msg(), t0.Add(61*time.Second))
	wantErr(t, err, ErrStaleSignature)
	if n := cv.nonces.Len(); n != 1 {
		t.Fatalf("cache holds %d, want 1 before the next use", n)
	}
	fresh := &RequestSigner{AgentID: "caller-agent", Key: agent, Clock: func() time.Time { return t0.Add(61 * time.Second) }}
	if _, err := cv.VerifyAt(signedRequest(t, fresh).msg(), t0.Add(62*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := cv.nonces.Len(); n != 1 {
		t.Fatalf("expired nonce not dropped: %d entries", n)
	}
	// A request that fails after the nonce check's place in line does not
	// burn its nonce: a tampered copy cannot lock out the real one.
	req2 := signedRequest(t, fresh)
	tampered := *req2
	tampered.body = []byte(`{"task":"other"}`)
	_, err = cv.VerifyAt(tampered.msg(), t0.Add(62*time.Second))
	wantErr(t, err, ErrBadDigest)
	if _, err := cv.VerifyAt(req2.msg(), t0.Add(62*time.Second)); err != nil {
		t.Fatalf("genuine request refused after a tampered copy: %v", err)
	}
}

func TestVerifyCallerNonceCacheFull(t *testing.T) {
	agent := testKey(t, "caller")
	cv := newVerifier(t, CallerVerifierConfig{
		TrustedAgents:  map[string]ed25519.PublicKey{"caller-agent": agent.PublicKey()},
		NonceCacheSize: 3,
	})
	signer := &RequestSigner{AgentID: "caller-agent", Key: agent, Clock: func() time.Time { return t0 }}
	for i := range 3 {
		if _, err := cv.VerifyAt(signedRequest(t, signer).msg(), t0); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	// Full of live nonces: a valid, fresh request is refused, not waved
	// through unchecked.
	_, err := cv.VerifyAt(signedRequest(t, signer).msg(), t0)
	wantErr(t, err, ErrNonceCacheFull)
	if n := cv.nonces.Len(); n != 3 {
		t.Fatalf("cache grew to %d past its bound", n)
	}
	// Once the window has passed the entries expire and room returns.
	later := &RequestSigner{AgentID: "caller-agent", Key: agent, Clock: func() time.Time { return t0.Add(2 * time.Minute) }}
	if _, err := cv.VerifyAt(signedRequest(t, later).msg(), t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
}

func TestCallerVerifierConfig(t *testing.T) {
	var zero CallerVerifier
	c, err := zero.Verify(baseRequest().msg())
	if err == nil || c != (Caller{}) {
		t.Fatal("zero verifier accepted a request")
	}
	var nilCV *CallerVerifier
	if _, err := nilCV.Verify(baseRequest().msg()); err == nil {
		t.Fatal("nil verifier accepted a request")
	}
	for name, cfg := range map[string]CallerVerifierConfig{
		"short key":     {TrustedAgents: map[string]ed25519.PublicKey{"a": make([]byte, 31)}},
		"empty id":      {TrustedAgents: map[string]ed25519.PublicKey{"": make([]byte, 32)}},
		"negative skew": {MaxClockSkew: -time.Second},
	} {
		if _, err := NewCallerVerifier(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// The clock of the config is the one Verify uses.
	agent := testKey(t, "caller")
	cv := newVerifier(t, CallerVerifierConfig{
		TrustedAgents: map[string]ed25519.PublicKey{"caller-agent": agent.PublicKey()},
		MaxClockSkew:  5 * time.Minute,
		Clock:         func() time.Time { return t0.Add(4 * time.Minute) },
	})
	signer := &RequestSigner{AgentID: "caller-agent", Key: agent, Clock: func() time.Time { return t0 }}
	if _, err := cv.Verify(signedRequest(t, signer).msg()); err != nil {
		t.Fatalf("within a 5 min skew: %v", err)
	}
}

func TestRequestSigner(t *testing.T) {
	agent := testKey(t, "caller")
	signer := &RequestSigner{AgentID: "caller-agent", Key: agent, Clock: func() time.Time { return t0 }}
	r := baseRequest()
	sh, err := signer.Sign(r.msg())
	if err != nil {
		t.Fatal(err)
	}
	wantInput := `iatp=("@method" "@target-uri" "content-digest" "x-agent-trace-id");created=1769335200;keyid="caller-agent";nonce="`
	if !strings.HasPrefix(sh.SignatureInput, wantInput) || !strings.HasSuffix(sh.SignatureInput, `";alg="ed25519"`) {
		t.Fatalf("Signature-Input = %s", sh.SignatureInput)
	}
	if sh.ContentDigest != ContentDigest(r.body) || sh.Attestation != "" {
		t.Fatalf("headers = %+v", sh)
	}
	sh2, _ := signer.Sign(r.msg())
	if sh2.SignatureInput == sh.SignatureInput {
		t.Fatal("two signatures share a nonce")
	}
	for name, s := range map[string]*RequestSigner{
		"zero key":         {AgentID: "a"},
		"no agent id":      {Key: agent},
		"bad extra":        {AgentID: "a", Key: agent, ExtraComponents: []string{"Content-Type"}},
		"derived extra":    {AgentID: "a", Key: agent, ExtraComponents: []string{"@query"}},
		"missing extra":    {AgentID: "a", Key: agent, ExtraComponents: []string{"x-missing"}},
		"huge attestation": {AgentID: "a", Key: agent, Attestation: make([]byte, MaxAttestationBytes+1)},
		"failing rand":     {AgentID: "a", Key: agent, Rand: strings.NewReader("short")},
	} {
		if _, err := s.Sign(r.msg()); err == nil {
			t.Errorf("%s: signed", name)
		}
	}
	noTrace := baseRequest()
	noTrace.h.Del(HeaderTraceID)
	_, err = signer.Sign(noTrace.msg())
	wantErr(t, err, ErrMalformed, "x-agent-trace-id")
}

func TestHTTPHeaderFunc(t *testing.T) {
	h := http.Header{}
	for _, name := range []string{HeaderSignatureInput, HeaderSignature, HeaderContentDigest, HeaderTraceID, HeaderAttestation, "content-type", "X-Other"} {
		h.Add(name, "v-"+name)
		h.Add(strings.ToUpper(name), "w")
	}
	f := HTTPHeaderFunc(h)
	for name := range canonicalNames {
		if got, want := f(name), h.Values(name); len(got) != 2 || strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: got %v, want %v", name, got, want)
		}
	}
	if got := f("x-other"); len(got) != 2 {
		t.Errorf("x-other: %v", got)
	}
	if got := f("absent"); got != nil {
		t.Errorf("absent: %v", got)
	}
}
