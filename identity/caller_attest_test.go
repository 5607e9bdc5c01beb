package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// attestFixture is a control plane, a caller agent and its attestation.
type attestFixture struct {
	cp, agent PrivateKey
	val       *Validator
	record    []byte // v2 attestation JSON for "caller-agent" and agent's key
}

func newAttestFixture(t *testing.T) *attestFixture {
	t.Helper()
	f := &attestFixture{cp: testKey(t, "control plane"), agent: testKey(t, "caller")}
	var err error
	if f.val, err = NewValidator(map[string]ed25519.PublicKey{"cp": f.cp.PublicKey()}); err != nil {
		t.Fatal(err)
	}
	f.record = f.attest(t, "caller-agent", f.agent.PublicKey(), 2, t0)
	return f
}

func (f *attestFixture) attest(t *testing.T, agentID string, key ed25519.PublicKey, version int, now time.Time) []byte {
	t.Helper()
	c := Claims{AgentID: agentID, CodebaseHash: HashBytes([]byte("c")), ConfigHash: HashBytes([]byte("g"))}
	if version == 2 {
		c.VerificationKey = key
	}
	a, err := CreateAttestation(f.cp, "cp", c, AttestationOptions{Version: version, Now: now, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestVerifyAttestedCaller(t *testing.T) {
	f := newAttestFixture(t)
	stranger := testKey(t, "stranger")
	rows := []struct {
		name      string
		pinned    map[string]ed25519.PublicKey
		noVal     bool
		key       PrivateKey // signing key; default f.agent
		record    []byte     // X-IATP-Attestation JSON; nil: none
		header    string     // raw header value instead of record
		at        time.Duration
		want      error
		also      error // a second sentinel the error must wrap
		caller    Caller
		fragments []string
	}{
		{name: "attested, not pinned", record: f.record, caller: Caller{AgentID: "caller-agent", Authenticated: true, Attested: true}},
		{name: "pinned and attested with the same key", pinned: map[string]ed25519.PublicKey{"caller-agent": f.agent.PublicKey()},
			record: f.record, caller: Caller{AgentID: "caller-agent", Authenticated: true, Attested: true}},
		{name: "pinned, attestation binds another key", pinned: map[string]ed25519.PublicKey{"caller-agent": f.agent.PublicKey()},
			record: f.attest(t, "caller-agent", stranger.PublicKey(), 2, t0), caller: Caller{AgentID: "caller-agent", Authenticated: true}},
		{name: "pinned, attestation expired", pinned: map[string]ed25519.PublicKey{"caller-agent": f.agent.PublicKey()},
			record: f.record, at: 2 * time.Hour, caller: Caller{AgentID: "caller-agent", Authenticated: true}},
		{name: "no attestation, not pinned", want: ErrUnknownKey, fragments: []string{"sent no attestation"}},
		{name: "attestations not accepted here", noVal: true, record: f.record, want: ErrUnknownKey, fragments: []string{"not accepted"}},
		{name: "attestation copied by an agent without its key", key: stranger, record: f.record, want: ErrBadSignature},
		{name: "attestation for another agent", record: f.attest(t, "other-agent", f.agent.PublicKey(), 2, t0),
			want: ErrBadAttestation, also: ErrAgentMismatch, fragments: []string{`"other-agent"`}},
		{name: "attestation expired", record: f.record, at: 2 * time.Hour, want: ErrBadAttestation, also: ErrExpired},
		{name: "v1 attestation refused", record: f.attest(t, "caller-agent", nil, 1, t0), want: ErrBadAttestation, also: ErrUnsupportedVersion},
		{name: "attestation by an untrusted control plane", record: func() []byte {
			a, _ := CreateAttestation(stranger, "rogue", Claims{AgentID: "caller-agent", CodebaseHash: HashBytes(nil), ConfigHash: HashBytes(nil),
				VerificationKey: f.agent.PublicKey()}, AttestationOptions{Now: t0})
			data, _ := json.Marshal(a)
			return data
		}(), want: ErrBadAttestation, also: ErrUnknownSigningKey},
		{name: "attestation tampered", record: bytes.Replace(f.record, []byte(HashBytes([]byte("g"))), []byte(HashBytes([]byte("h"))), 1),
			want: ErrBadAttestation, also: ErrBadSignature},
		{name: "attestation header not base64url", header: "!!!", want: ErrBadAttestation},
		{name: "attestation header padded", header: b64url.EncodeToString(f.record) + "==", want: ErrBadAttestation},
		{name: "attestation not JSON", header: b64url.EncodeToString([]byte("nope")), want: ErrBadAttestation, also: ErrMalformed},
		{name: "attestation header oversized", header: string(bytes.Repeat([]byte("A"), 90000)), want: ErrBadAttestation, fragments: []string{"larger than"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			cfg := CallerVerifierConfig{TrustedAgents: r.pinned, Attestations: f.val}
			if r.noVal {
				cfg.Attestations = nil
			}
			cv := newVerifier(t, cfg)
			key := r.key
			if key.IsZero() {
				key = f.agent
			}
			signer := &RequestSigner{AgentID: "caller-agent", Key: key, Attestation: r.record,
				Clock: func() time.Time { return t0.Add(r.at) }}
			req := signedRequest(t, signer)
			if r.header != "" {
				req.h.Set(HeaderAttestation, r.header)
			}
			c, err := cv.VerifyAt(req.msg(), t0.Add(r.at+time.Second))
			wantErr(t, err, r.want, r.fragments...)
			if r.also != nil {
				wantErr(t, err, r.also)
			}
			if c != r.caller {
				t.Fatalf("caller = %+v, want %+v", c, r.caller)
			}
		})
	}
}

// TestAttestationCache checks that a cached attestation follows its
// validity window and the Validator's keys, and that the cache stays
// bounded when callers send many different attestations.
func TestAttestationCache(t *testing.T) {
	f := newAttestFixture(t)
	cv := newVerifier(t, CallerVerifierConfig{Attestations: f.val, AttestationCacheSize: 4})
	sign := func(record []byte, at time.Duration) Message {
		s := &RequestSigner{AgentID: "caller-agent", Key: f.agent, Attestation: record, Clock: func() time.Time { return t0.Add(at) }}
		return signedRequest(t, s).msg()
	}
	if _, err := cv.VerifyAt(sign(f.record, 0), t0); err != nil {
		t.Fatal(err)
	}
	if cv.cache.len() != 1 {
		t.Fatal("attestation not cached")
	}
	// Cached, but now expired: refused.
	_, err := cv.VerifyAt(sign(f.record, 61*time.Minute), t0.Add(61*time.Minute))
	wantErr(t, err, ErrExpired)
	// Cached, but the control-plane key was withdrawn: refused.
	if _, err := cv.VerifyAt(sign(f.record, time.Minute), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	f.val.RemoveTrustedKey("cp")
	_, err = cv.VerifyAt(sign(f.record, 2*time.Minute), t0.Add(2*time.Minute))
	wantErr(t, err, ErrUnknownSigningKey)
	if err := f.val.AddTrustedKey("cp", f.cp.PublicKey()); err != nil {
		t.Fatal(err)
	}
	// Abuse: many distinct valid attestations; the cache stays at its bound.
	for i := range 50 {
		rec := f.attest(t, "caller-agent", f.agent.PublicKey(), 2, t0.Add(time.Duration(i)*time.Microsecond))
		if _, err := cv.VerifyAt(sign(rec, 3*time.Minute), t0.Add(3*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if n := cv.cache.len(); n > 4 {
			t.Fatalf("attestation cache grew to %d, bound 4", n)
		}
	}
}

// TestVerifyOverHTTP signs with a real client and verifies in a real
// server, through net/http's own handling of the URL and headers.
func TestVerifyOverHTTP(t *testing.T) {
	f := newAttestFixture(t)
	cv := newVerifier(t, CallerVerifierConfig{Attestations: f.val, Clock: func() time.Time { return t0 }})
	var mu sync.Mutex
	var got []Caller
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		c, err := cv.VerifyRequest(r, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		mu.Lock()
		got = append(got, c)
		mu.Unlock()
	}))
	defer srv.Close()
	signer := &RequestSigner{AgentID: "caller-agent", Key: f.agent, Attestation: f.record, Clock: func() time.Time { return t0 }}

	send := func(path string, body []byte, tamper bool) int {
		req, err := http.NewRequest(http.MethodPost, srv.URL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(HeaderTraceID, "trace-http")
		if err := signer.SignRequest(req, body); err != nil {
			t.Fatal(err)
		}
		if tamper {
			req.Body = io.NopCloser(bytes.NewReader(append(body, ' ')))
			req.ContentLength++
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := send("/proxy/a%2Fb?q=1&r=%20", []byte(`{"a":1}`), false); code != http.StatusOK {
		t.Fatalf("signed request: status %d", code)
	}
	if code := send("/proxy", []byte(`{"a":1}`), true); code != http.StatusUnauthorized {
		t.Fatalf("tampered body: status %d", code)
	}
	if len(got) != 1 || got[0] != (Caller{AgentID: "caller-agent", Authenticated: true, Attested: true}) {
		t.Fatalf("callers = %+v", got)
	}
}

// TestVerifyConcurrent runs many verifications at once (run with -race):
// each distinct request passes exactly once, each replay fails.
func TestVerifyConcurrent(t *testing.T) {
	f := newAttestFixture(t)
	cv := newVerifier(t, CallerVerifierConfig{Attestations: f.val})
	signer := &RequestSigner{AgentID: "caller-agent", Key: f.agent, Attestation: f.record, Clock: func() time.Time { return t0 }}
	msgs := make([]Message, 64)
	for i := range msgs {
		msgs[i] = signedRequest(t, signer).msg()
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, replayed := 0, 0
	for copyN := range 4 {
		for i := range msgs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := cv.VerifyAt(msgs[i], t0.Add(time.Duration(copyN)*time.Millisecond))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					ok++
				case errors.Is(err, ErrReplayedNonce):
					replayed++
				default:
					t.Errorf("unexpected: %v", err)
				}
			}()
		}
	}
	wg.Wait()
	if ok != len(msgs) || replayed != 3*len(msgs) {
		t.Fatalf("ok %d replayed %d, want %d and %d", ok, replayed, len(msgs), 3*len(msgs))
	}
}
