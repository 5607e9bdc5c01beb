package identity

import (
	"bytes"
	"crypto/ed25519"
	"net/http"
	"testing"
	"time"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/.

// FuzzParseDictionary fuzzes the RFC 8941 parser behind Signature-Input,
// Signature and Content-Digest: it must not panic, and what it accepts
// must serialize to a form it parses back to the same serialization.
func FuzzParseDictionary(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		members, err := parseDictionary(s)
		if err != nil {
			return
		}
		once := serializeDictionary(t, members)
		again, err := parseDictionary(once)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", once, err)
		}
		if twice := serializeDictionary(t, again); twice != once {
			t.Fatalf("not stable: %q -> %q", once, twice)
		}
	})
}

// fuzzSigner signs deterministically (fixed clock and nonce source), so the
// committed corpus holds a genuine signature.
func fuzzSigner(t testing.TB) (*RequestSigner, *request) {
	agent := testKey(t, "caller")
	s := &RequestSigner{AgentID: "caller-agent", Key: agent, Clock: func() time.Time { return t0 },
		Rand: bytes.NewReader(bytes.Repeat([]byte{7}, 16))}
	r := baseRequest()
	sh, err := s.Sign(r.msg())
	if err != nil {
		t.Fatal(err)
	}
	sh.Set(r.h.Set)
	return s, r
}

// FuzzVerifyRequest feeds arbitrary Signature-Input, Signature and
// Content-Digest values to the caller verifier: it must not panic, must
// refuse with an *AuthError, and may accept only the genuine headers.
func FuzzVerifyRequest(f *testing.F) {
	s, genuine := fuzzSigner(f)
	f.Add(genuine.h.Get(HeaderSignatureInput), genuine.h.Get(HeaderSignature), genuine.h.Get(HeaderContentDigest))
	f.Fuzz(func(t *testing.T, input, sig, digest string) {
		cv, err := NewCallerVerifier(CallerVerifierConfig{
			TrustedAgents: map[string]ed25519.PublicKey{"caller-agent": s.Key.PublicKey()},
		})
		if err != nil {
			t.Fatal(err)
		}
		r := baseRequest()
		r.h = http.Header{}
		r.h.Set(HeaderTraceID, "trace-1")
		r.h.Set("Content-Type", "application/json")
		r.h.Set(HeaderSignatureInput, input)
		r.h.Set(HeaderSignature, sig)
		r.h.Set(HeaderContentDigest, digest)
		c, err := cv.VerifyAt(r.msg(), t0)
		if err == nil {
			if !bytes.Equal(r.body, genuine.body) || c.AgentID != "caller-agent" {
				t.Fatalf("accepted a forged request: %+v", c)
			}
			// Only a semantically equal signature can pass: same components
			// and parameters (the SF form may differ, e.g. white space).
			want, _ := parseRequestSignature(ptr(genuine.msg()), SignatureLabel)
			got, _ := parseRequestSignature(ptr(r.msg()), SignatureLabel)
			if want == nil || got == nil || !bytes.Equal(want.base, got.base) {
				t.Fatalf("accepted a signature over another base")
			}
			return
		}
		if _, ok := err.(*AuthError); !ok {
			t.Fatalf("error %T is not an *AuthError", err)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// FuzzDecodeAttestation fuzzes the attestation decoder and validator: no
// panic, a stable round trip for what decodes, and no record accepted but
// the genuine one (or an encoding of it with the same signed content).
func FuzzDecodeAttestation(f *testing.F) {
	cp := testKey(f, "control plane")
	genuine := newRecord(f, cp, 2, testKey(f, "agent").PublicKey())
	genuineJSON, _ := genuine.MarshalJSON()
	f.Add(genuineJSON)
	val, _ := NewValidator(map[string]ed25519.PublicKey{"cp": cp.PublicKey()})
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeAttestation(data)
		if err != nil {
			if a != nil {
				t.Fatal("error with a record")
			}
			return
		}
		once, err := a.MarshalJSON()
		if err != nil {
			return // e.g. an Extra member shadowing nothing valid
		}
		b, err := DecodeAttestation(once)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", once, err)
		}
		twice, err := b.MarshalJSON()
		if err != nil || !bytes.Equal(once, twice) {
			t.Fatalf("round trip not stable:\n%s\n%s", once, twice)
		}
		if _, err := val.ValidateAt(a, t0.Add(time.Minute), ValidateOptions{}); err == nil {
			got, _ := a.signingInput()
			want, _ := genuine.signingInput()
			if !bytes.Equal(got, want) {
				t.Fatalf("accepted a record the control plane never signed: %s", once)
			}
		}
	})
}

// FuzzParsePublicKey: no panic; an accepted key is 32 bytes and survives
// FormatPublicKey.
func FuzzParsePublicKey(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublicKey(s)
		if err != nil {
			return
		}
		if len(k) != ed25519.PublicKeySize {
			t.Fatalf("accepted %d bytes", len(k))
		}
		back, err := ParsePublicKey(FormatPublicKey(k))
		if err != nil || !back.Equal(k) {
			t.Fatalf("format round trip: %v", err)
		}
	})
}

// FuzzVerifyManifest: no panic, and only a document with the signed
// canonical content verifies.
func FuzzVerifyManifest(f *testing.F) {
	k := testKey(f, "manifest")
	signed, err := SignManifest([]byte(testManifest), k, "k1")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	want, _ := CanonicalManifest(signed)
	resolve := KeyResolver(map[string]ed25519.PublicKey{"k1": k.PublicKey()})
	f.Fuzz(func(t *testing.T, doc []byte) {
		kids, err := VerifyManifest(doc, resolve)
		if err != nil {
			if kids != nil {
				t.Fatal("error with kids")
			}
			return
		}
		got, err := CanonicalManifest(doc)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("verified a document with other content: %s", doc)
		}
	})
}
