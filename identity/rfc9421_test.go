package identity

import (
	"crypto/ed25519"
	"net/http"
	"os"
	"testing"
)

// The golden vector of RFC 9421 Appendix B.2.6 ("Signing a Request Using
// ed25519"), over the test request of Appendix B.2 with the key
// test-key-ed25519 of Appendix B.1.4. testdata/rfc9421/ holds the key pair
// and the signature base exactly as the RFC prints them (without the RFC
// 8792 line wrapping).
const (
	rfcB26SignatureInput = `sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"`
	rfcB26Signature      = `sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:`
)

func rfcTestRequest() Message {
	h := http.Header{}
	h.Set("Host", "example.com")
	h.Set("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
	h.Set("Content-Type", "application/json")
	h.Set("Content-Digest", "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:")
	h.Set("Content-Length", "18")
	h.Set("Signature-Input", rfcB26SignatureInput)
	h.Set("Signature", rfcB26Signature)
	return Message{
		Method:    "POST",
		TargetURI: "https://example.com/foo?param=Value&Pet=dog",
		Header:    h.Values,
		Body:      []byte(`{"hello": "world"}`),
	}
}

func TestRFC9421B26(t *testing.T) {
	wantBase, err := os.ReadFile("testdata/rfc9421/b26-base.txt")
	if err != nil {
		t.Fatal(err)
	}
	// Read without the permission check: git checks key files out 0644.
	keyPEM, err := os.ReadFile("testdata/rfc9421/test-key-ed25519.key")
	if err != nil {
		t.Fatal(err)
	}
	priv, err := ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublicKeyFile("testdata/rfc9421/test-key-ed25519.pub")
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.PublicKey()) {
		t.Fatal("RFC public key does not match the RFC private key")
	}

	m := rfcTestRequest()
	rs, err := parseRequestSignature(&m, "sig-b26")
	if err != nil {
		t.Fatal(err)
	}
	if string(rs.base) != string(wantBase) {
		t.Fatalf("signature base differs from RFC 9421 B.2.6:\n got: %q\nwant: %q", rs.base, wantBase)
	}
	if !ed25519.Verify(pub, rs.base, rs.sig) {
		t.Fatal("RFC signature does not verify over our base")
	}
	// Ed25519 is deterministic: signing our base gives the RFC's bytes.
	sig, err := priv.sign(rs.base)
	if err != nil {
		t.Fatal(err)
	}
	if got := "sig-b26=:" + b64.EncodeToString(sig) + ":"; got != rfcB26Signature {
		t.Fatalf("signature = %s, want %s", got, rfcB26Signature)
	}
	if rs.params.KeyID != "test-key-ed25519" || rs.params.Created.Unix() != 1618884473 {
		t.Fatalf("params = %+v", rs.params)
	}
	// The RFC's example is not an iatp signature: the iatp policy refuses it
	// for what it lacks, not for its form.
	cv, err := NewCallerVerifier(CallerVerifierConfig{TrustedAgents: map[string]ed25519.PublicKey{"test-key-ed25519": pub}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cv.VerifyAt(m, rs.params.Created)
	wantErr(t, err, ErrNoSignature, `no signature labelled "iatp"`)
}

// TestSignatureBaseComponents checks each derived component (RFC 9421
// section 2.2) and the combination of field lines (section 2.1).
func TestSignatureBaseComponents(t *testing.T) {
	h := http.Header{}
	h.Add("X-Multi", "  a, b ")
	h.Add("X-Multi", "\tc")
	h.Set("X-Empty", "")
	rows := []struct {
		target, component, want string
	}{
		{"https://Example.COM:443/p/a%2Fb?x=1&y", "@authority", "example.com"},
		{"http://example.com:80/", "@authority", "example.com"},
		{"http://example.com:8080/", "@authority", "example.com:8080"},
		{"https://example.com:80/", "@authority", "example.com:80"},
		{"HTTPS://example.com/", "@scheme", "https"},
		{"https://example.com/p/a%2Fb?x=1", "@path", "/p/a%2Fb"},
		{"https://example.com", "@path", "/"},
		{"https://example.com/p?x=1&y", "@query", "?x=1&y"},
		{"https://example.com/p", "@query", "?"},
		{"https://example.com/p?x=1", "@request-target", "/p?x=1"},
		{"https://example.com", "@request-target", "/"},
		{"https://example.com/p?x=1", "@target-uri", "https://example.com/p?x=1"},
		{"https://example.com/", "@method", "PATCH"},
		{"https://example.com/", "x-multi", "a, b, c"},
		{"https://example.com/", "x-empty", ""},
	}
	for _, r := range rows {
		t.Run(r.component+" "+r.target, func(t *testing.T) {
			m := Message{Method: "PATCH", TargetURI: r.target, Header: h.Values}
			list := []sfInnerItem{{item: sfItem{kind: sfString, str: r.component}}}
			base, err := signatureBase(nil, &m, list, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := `"` + r.component + `": ` + r.want + "\n" + `"@signature-params": ("` + r.component + `")`
			if string(base) != want {
				t.Fatalf("base:\n%s\nwant:\n%s", base, want)
			}
		})
	}
	for name, m := range map[string]Message{
		"relative target for @path":  {Method: "GET", TargetURI: "/p"},
		"missing field":              {Method: "GET", TargetURI: "https://e/", Header: h.Values},
		"empty method":               {TargetURI: "https://e/"},
		"line break in a field line": {Method: "GET", TargetURI: "https://e/", Header: func(string) []string { return []string{"a\nb"} }},
	} {
		comp := map[string]string{"relative target for @path": "@path", "missing field": "x-absent", "empty method": "@method",
			"line break in a field line": "x-multi"}[name]
		if _, err := signatureBase(nil, &m, []sfInnerItem{{item: sfItem{kind: sfString, str: comp}}}, nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
