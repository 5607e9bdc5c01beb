package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

const testManifest = `{
  "protocol_version": "1.0",
  "identity": {"agent_id": "booking-agent", "verification_key": "ed25519:AAAA", "owner": "Example Corp"},
  "trust_level": "trusted",
  "scopes": ["repo:read", "repo:write"],
  "capabilities": {"idempotency": true, "rate_limit": 100, "sla_availability": 0.999},
  "agent_id": "booking-agent"
}
`

func signedTestManifest(t *testing.T, k PrivateKey, kid string) []byte {
	t.Helper()
	doc, err := SignManifest([]byte(testManifest), k, kid)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestSignManifestLayout(t *testing.T) {
	k := testKey(t, "manifest")
	doc := signedTestManifest(t, k, "k1")
	// Everything before the appended member is byte for byte the input.
	prefix := strings.TrimSuffix(strings.TrimRight(testManifest, "\n"), "}")
	prefix = strings.TrimRight(prefix, "\n ")
	if !bytes.HasPrefix(doc, []byte(prefix+`,"signatures":[{"protected":"`)) {
		t.Fatalf("layout changed:\n%s", doc)
	}
	var parsed struct {
		Signatures []manifestSignature `json:"signatures"`
	}
	if err := json.Unmarshal(doc, &parsed); err != nil || len(parsed.Signatures) != 1 {
		t.Fatalf("signatures: %v %s", err, doc)
	}
	header, _ := b64url.DecodeString(parsed.Signatures[0].Protected)
	if string(header) != `{"alg":"EdDSA","kid":"k1","typ":"JOSE"}` {
		t.Fatalf("protected header = %s", header)
	}

	// Independent of go-jose: RFC 7515 signing input is
	// protected "." b64url(payload), payload the RFC 8785 form without
	// "signatures" (checked against a hand-written canonical form).
	wantPayload := `{"agent_id":"booking-agent","capabilities":{"idempotency":true,"rate_limit":100,"sla_availability":0.999},` +
		`"identity":{"agent_id":"booking-agent","owner":"Example Corp","verification_key":"ed25519:AAAA"},` +
		`"protocol_version":"1.0","scopes":["repo:read","repo:write"],"trust_level":"trusted"}`
	payload, err := CanonicalManifest(doc)
	if err != nil || string(payload) != wantPayload {
		t.Fatalf("canonical manifest = %s (%v)", payload, err)
	}
	sig, _ := b64url.DecodeString(parsed.Signatures[0].Signature)
	input := parsed.Signatures[0].Protected + "." + b64url.EncodeToString([]byte(wantPayload))
	if !ed25519.Verify(k.PublicKey(), []byte(input), sig) {
		t.Fatal("signature is not a JWS over the canonical manifest")
	}

	// An empty object gets its first member.
	empty, err := SignManifest([]byte(` { } `), k, "k1")
	if err != nil || !bytes.HasPrefix(empty, []byte(` {"signatures":[{`)) || !bytes.HasSuffix(empty, []byte(`"}] } `)) {
		t.Fatalf("empty object: %s %v", empty, err)
	}
	if kids, err := VerifyManifestKey(empty, k.PublicKey()); err != nil || kids[0] != "k1" {
		t.Fatalf("empty object verify: %v", err)
	}
}

func TestManifestRotationAndReformatting(t *testing.T) {
	k1, k2 := testKey(t, "old"), testKey(t, "new")
	doc := signedTestManifest(t, k1, "old")
	doc, err := SignManifest(doc, k2, "new")
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]ed25519.PublicKey{"old": k1.PublicKey(), "new": k2.PublicKey()}
	kids, err := VerifyManifest(doc, KeyResolver(keys))
	if err != nil || !reflect.DeepEqual(kids, []string{"old", "new"}) {
		t.Fatalf("kids = %v, %v", kids, err)
	}
	// A verifier that knows only the new key accepts it; the old entry is
	// skipped, not an error.
	kids, err = VerifyManifest(doc, KeyResolver(map[string]ed25519.PublicKey{"new": k2.PublicKey()}))
	if err != nil || !reflect.DeepEqual(kids, []string{"new"}) {
		t.Fatalf("kids = %v, %v", kids, err)
	}
	// Re-signing with a kid replaces its entry instead of adding one.
	again, err := SignManifest(doc, k2, "new")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(again), `"protected"`); n != 2 {
		t.Fatalf("%d signatures after re-signing, want 2", n)
	}
	// Reordered members and other white space: the canonical form is the
	// same, so the signatures still verify.
	var generic map[string]any
	if err := json.Unmarshal(doc, &generic); err != nil {
		t.Fatal(err)
	}
	reformatted, _ := json.MarshalIndent(generic, "", "\t")
	if _, err := VerifyManifest(reformatted, KeyResolver(keys)); err != nil {
		t.Fatalf("reformatted document: %v", err)
	}
}

func TestVerifyManifest(t *testing.T) {
	k := testKey(t, "manifest")
	other := testKey(t, "other")
	keys := map[string]ed25519.PublicKey{"k1": k.PublicKey()}
	signed := string(signedTestManifest(t, k, "k1"))
	var parsed struct {
		Signatures []manifestSignature `json:"signatures"`
	}
	if err := json.Unmarshal([]byte(signed), &parsed); err != nil {
		t.Fatal(err)
	}
	good := parsed.Signatures[0]
	withEntry := func(entry string) string {
		i := strings.Index(signed, `"signatures":`)
		return signed[:i] + `"signatures":[` + entry + `]}` + "\n"
	}
	header := func(h string) string { return b64url.EncodeToString([]byte(h)) }
	entry := func(protected, sig string) string {
		return `{"protected":"` + protected + `","signature":"` + sig + `"}`
	}
	// A header the verifier must refuse, signed for real so only the header
	// is wrong.
	signedWith := func(h string) string {
		p := header(h)
		payload, _ := CanonicalManifest([]byte(signed))
		sig, _ := k.sign([]byte(p + "." + b64url.EncodeToString(payload)))
		return entry(p, b64url.EncodeToString(sig))
	}
	rows := []struct {
		name      string
		doc       string
		want      error
		fragments []string
	}{
		{"valid", signed, nil, nil},
		{"document changed", strings.Replace(signed, `"trusted"`, `"verified_partner"`, 1), ErrBadSignature, []string{`"k1"`}},
		{"member added", strings.Replace(signed, `"protocol_version"`, `"x":1,"protocol_version"`, 1), ErrBadSignature, nil},
		{"unknown kid only", strings.Replace(signed, good.Protected, header(`{"alg":"EdDSA","kid":"k9","typ":"JOSE"}`), 1), ErrNoValidSignature, nil},
		{"signed by another key under a known kid", withEntry(func() string {
			p := good.Protected
			payload, _ := CanonicalManifest([]byte(signed))
			sig, _ := other.sign([]byte(p + "." + b64url.EncodeToString(payload)))
			return entry(p, b64url.EncodeToString(sig))
		}()), ErrBadSignature, nil},
		{"no signatures member", testManifest, ErrNoValidSignature, []string{"not signed"}},
		{"empty signatures", withEntry(""), ErrNoValidSignature, nil},
		{"signatures not an array", strings.Replace(signed, `"signatures":[`, `"signatures":{"a":[`, 1) + "}", ErrMalformed, nil},
		{"entry not an object", withEntry(`"x"`), ErrMalformed, []string{"signatures[0] is not an object"}},
		{"alg HS256", withEntry(signedWith(`{"alg":"HS256","kid":"k1","typ":"JOSE"}`)), ErrUnsupportedAlgorithm, nil},
		{"alg none", withEntry(entry(header(`{"alg":"none","kid":"k1"}`), "")), ErrUnsupportedAlgorithm, nil},
		{"alg missing", withEntry(signedWith(`{"kid":"k1","typ":"JOSE"}`)), ErrUnsupportedAlgorithm, nil},
		{"kid missing", withEntry(signedWith(`{"alg":"EdDSA","typ":"JOSE"}`)), ErrMalformed, []string{"kid is missing"}},
		{"typ wrong", withEntry(signedWith(`{"alg":"EdDSA","kid":"k1","typ":"JWT"}`)), ErrMalformed, []string{"typ"}},
		{"typ absent is fine", withEntry(signedWith(`{"alg":"EdDSA","kid":"k1"}`)), nil, nil},
		{"crit header", withEntry(signedWith(`{"alg":"EdDSA","crit":["b64"],"b64":false,"kid":"k1"}`)), ErrMalformed, []string{"not allowed"}},
		{"embedded jwk", withEntry(signedWith(`{"alg":"EdDSA","jwk":{},"kid":"k1"}`)), ErrMalformed, []string{`"jwk"`}},
		{"duplicate header member", withEntry(signedWith(`{"alg":"EdDSA","kid":"k1","kid":"k1"}`)), ErrMalformed, nil},
		{"unprotected header member", withEntry(`{"protected":"` + good.Protected + `","signature":"` + good.Signature + `","header":{"kid":"k1"}}`), ErrMalformed, []string{`"header"`}},
		{"protected not base64url", withEntry(entry(good.Protected+"!", good.Signature)), ErrMalformed, nil},
		{"protected padded", withEntry(entry(good.Protected+"=", good.Signature)), ErrMalformed, nil},
		{"signature padded", withEntry(entry(good.Protected, good.Signature+"==")), ErrMalformed, []string{"unpadded base64url of 64 bytes"}},
		{"signature truncated", withEntry(entry(good.Protected, good.Signature[:84])), ErrMalformed, nil},
		{"signature oversized", withEntry(entry(good.Protected, b64url.EncodeToString(make([]byte, 65)))), ErrMalformed, nil},
		{"signature standard alphabet", withEntry(entry(good.Protected, strings.NewReplacer("-", "+", "_", "/").Replace(good.Signature)+"+")), ErrMalformed, nil},
		{"signature not a string", withEntry(`{"protected":"` + good.Protected + `","signature":5}`), ErrMalformed, nil},
		{"a malformed entry next to a valid one", withEntry(entry(good.Protected, good.Signature) + `,{"protected":"x"}`), ErrMalformed, []string{"signatures[1]"}},
		{"duplicate member in document", strings.Replace(signed, `"protocol_version": "1.0",`, `"protocol_version": "1.0","protocol_version": "2.0",`, 1), ErrMalformed, []string{"uplicate"}},
		{"not an object", `[1]`, ErrMalformed, nil},
		{"oversized", `{"x":"` + strings.Repeat("a", MaxManifestBytes) + `"}`, ErrMalformed, []string{"limit"}},
		{"too many signatures", withEntry(strings.TrimSuffix(strings.Repeat(entry(good.Protected, good.Signature)+",", MaxManifestSignatures+1), ",")), ErrMalformed, []string{"more than"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			kids, err := VerifyManifest([]byte(r.doc), KeyResolver(keys))
			wantErr(t, err, r.want, r.fragments...)
			if r.want != nil && kids != nil {
				t.Fatal("failure returned kids")
			}
			if r.want == nil && (len(kids) != 1 || kids[0] != "k1") {
				t.Fatalf("kids = %v", kids)
			}
		})
	}
	if _, err := VerifyManifest([]byte(signed), nil); err == nil {
		t.Fatal("nil resolver verified")
	}
	if _, err := VerifyManifestKey([]byte(signed), other.PublicKey()); err == nil {
		t.Fatal("wrong key verified")
	}
	if _, err := VerifyManifestKey([]byte(signed), nil); err == nil {
		t.Fatal("nil key verified")
	}
	if _, err := SignManifest([]byte(withEntry(`"x"`)), k, "k2"); err == nil {
		t.Fatal("signed a document with a malformed signatures entry")
	}
	if _, err := SignManifest([]byte(testManifest), PrivateKey{}, "k"); err == nil {
		t.Fatal("zero key signed")
	}
}
