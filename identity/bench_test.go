package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"
)

// benchBody is a ~1 kB JSON request, the size PERFORMANCE.md measures.
var benchBody = []byte(`{"task":"book","items":[` + string(bytes.Repeat([]byte(`{"sku":"A-1234","qty":2,"note":"window seat"},`), 22)) + `{"sku":"B"}]}`)

func benchRequest() *request {
	r := baseRequest()
	r.body = benchBody
	return r
}

func BenchmarkSignRequest(b *testing.B) {
	s := &RequestSigner{AgentID: "caller-agent", Key: testKey(b, "caller")}
	r := benchRequest()
	m := r.msg()
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	for b.Loop() {
		if _, err := s.Sign(m); err != nil {
			b.Fatal(err)
		}
	}
}

// presign signs n distinct requests (distinct nonces) outside the timer.
func presign(b *testing.B, s *RequestSigner, n int) []Message {
	b.Helper()
	msgs := make([]Message, n)
	for i := range msgs {
		r := benchRequest()
		sh, err := s.Sign(r.msg())
		if err != nil {
			b.Fatal(err)
		}
		sh.Set(r.h.Set)
		msgs[i] = r.msg()
	}
	return msgs
}

// BenchmarkVerifyRequest is the ingress cost of one signed request from a
// pinned caller: parse, policy, Ed25519 verify, digest, nonce cache.
func BenchmarkVerifyRequest(b *testing.B) {
	agent := testKey(b, "caller")
	s := &RequestSigner{AgentID: "caller-agent", Key: agent, Clock: func() time.Time { return t0 }}
	msgs := presign(b, s, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchBody)))
	b.ResetTimer()
	var cv *CallerVerifier
	for i := 0; b.Loop(); i++ {
		if i%len(msgs) == 0 { // a fresh replay cache for each round of nonces
			b.StopTimer()
			cv, _ = NewCallerVerifier(CallerVerifierConfig{TrustedAgents: map[string]ed25519.PublicKey{"caller-agent": agent.PublicKey()}})
			b.StartTimer()
		}
		if _, err := cv.VerifyAt(msgs[i%len(msgs)], t0); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRequestAttested: the caller's key comes from its v2
// attestation (cached after the first request).
func BenchmarkVerifyRequestAttested(b *testing.B) {
	cp, agent := testKey(b, "control plane"), testKey(b, "caller")
	a, err := CreateAttestation(cp, "cp", Claims{AgentID: "caller-agent", CodebaseHash: HashBytes(nil), ConfigHash: HashBytes(nil),
		VerificationKey: agent.PublicKey()}, AttestationOptions{Now: t0})
	if err != nil {
		b.Fatal(err)
	}
	record, _ := json.Marshal(a)
	val, _ := NewValidator(map[string]ed25519.PublicKey{"cp": cp.PublicKey()})
	s := &RequestSigner{AgentID: "caller-agent", Key: agent, Attestation: record, Clock: func() time.Time { return t0 }}
	msgs := presign(b, s, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	var cv *CallerVerifier
	for i := 0; b.Loop(); i++ {
		if i%len(msgs) == 0 {
			b.StopTimer()
			cv, _ = NewCallerVerifier(CallerVerifierConfig{Attestations: val})
			_, _ = cv.VerifyAt(presign(b, s, 1)[0], t0) // warm the attestation cache
			b.StartTimer()
		}
		if _, err := cv.VerifyAt(msgs[i%len(msgs)], t0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseSignatureInput(b *testing.B) {
	_, r := fuzzSigner(b)
	in := r.h.Get(HeaderSignatureInput)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseDictionary(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkValidateAttestation(b *testing.B) {
	cp := testKey(b, "control plane")
	val, _ := NewValidator(map[string]ed25519.PublicKey{"cp": cp.PublicKey()})
	for _, version := range []int{1, 2} {
		b.Run(map[int]string{1: "v1", 2: "v2"}[version], func(b *testing.B) {
			a := newRecord(b, cp, version, testKey(b, "agent").PublicKey())
			b.ReportAllocs()
			for b.Loop() {
				if _, err := val.ValidateAt(a, t0, ValidateOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyManifest(b *testing.B) {
	k := testKey(b, "manifest")
	doc, err := SignManifest([]byte(testManifest), k, "k1")
	if err != nil {
		b.Fatal(err)
	}
	resolve := KeyResolver(map[string]ed25519.PublicKey{"k1": k.PublicKey()})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := VerifyManifest(doc, resolve); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEd25519Verify is the yardstick: one bare Ed25519 verification,
// the floor of every verification above.
func BenchmarkEd25519Verify(b *testing.B) {
	k := testKey(b, "caller")
	msg := bytes.Repeat([]byte("x"), 300) // about a signature base
	sig, _ := k.sign(msg)
	pub := k.PublicKey()
	b.ReportAllocs()
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("verify")
		}
	}
}
