package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParsePublicKey(t *testing.T) {
	k := testKey(t, "pub").PublicKey()
	raw := b64.EncodeToString(k)
	pemBytes, err := MarshalPublicKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}))
	privPEM, _ := testKey(t, "pub").MarshalPKCS8PEM()

	rows := []struct {
		name      string
		in        string
		want      error
		fragments []string
	}{
		{"raw base64", raw, nil, nil},
		{"prefixed", PublicKeyPrefix + raw, nil, nil},
		{"PEM SPKI", string(pemBytes), nil, nil},
		{"surrounding white space", "\n  " + PublicKeyPrefix + raw + "\n", nil, nil},
		{"31 bytes", b64.EncodeToString(k[:31]), ErrInvalidKey, []string{"31 bytes, want 32"}},
		{"33 bytes", PublicKeyPrefix + b64.EncodeToString(append(append([]byte{}, k...), 0)), ErrInvalidKey, []string{"33 bytes"}},
		{"no padding", strings.TrimRight(raw, "="), ErrInvalidKey, []string{"padded base64"}},
		{"base64url alphabet", strings.NewReplacer("+", "-", "/", "_").Replace(raw) + "-", ErrInvalidKey, nil},
		{"hex", hex.EncodeToString(k), ErrInvalidKey, nil},
		{"empty", "", ErrInvalidKey, []string{"0 bytes"}},
		{"other prefix", "ed448:" + raw, ErrInvalidKey, nil},
		{"PEM of a private key", string(privPEM), ErrInvalidKey, []string{`"PRIVATE KEY"`}},
		{"PEM of an ECDSA key", ecPEM, ErrInvalidKey, []string{"want Ed25519"}},
		{"PEM with trailing data", string(pemBytes) + "junk", ErrInvalidKey, []string{"after the PEM block"}},
		{"broken PEM", "-----BEGIN PUBLIC KEY-----\nAAAA", ErrInvalidKey, []string{"no PEM block"}},
		{"too long", strings.Repeat("A", maxKeyText+1), ErrInvalidKey, []string{"longer than"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got, err := ParsePublicKey(r.in)
			wantErr(t, err, r.want, r.fragments...)
			if r.want == nil && !got.Equal(k) {
				t.Fatalf("got %x, want %x", got, k)
			}
			if r.want != nil && got != nil {
				t.Fatal("failure returned a key")
			}
		})
	}
	if FormatPublicKey(k) != PublicKeyPrefix+raw || FormatPublicKey(k[:5]) != "" {
		t.Fatal("FormatPublicKey")
	}
}

func TestParsePrivateKey(t *testing.T) {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i)
	}
	k, _ := PrivateKeyFromSeed(seed)
	pemBytes, _ := k.MarshalPKCS8PEM()
	pubPEM, _ := MarshalPublicKeyPEM(k.PublicKey())
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ecKey)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})
	rows := []struct {
		name string
		in   []byte
		want error
	}{
		{"PKCS#8 PEM", pemBytes, nil},
		{"raw base64 seed (Python form)", []byte(b64.EncodeToString(seed) + "\n"), nil},
		{"seed of 31 bytes", []byte(b64.EncodeToString(seed[:31])), ErrInvalidKey},
		{"public key PEM", pubPEM, ErrInvalidKey},
		{"ECDSA PKCS#8", ecPEM, ErrInvalidKey},
		{"garbage", []byte("not a key"), ErrInvalidKey},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			got, err := ParsePrivateKey(r.in)
			wantErr(t, err, r.want)
			if r.want == nil && !got.Equal(k) {
				t.Fatal("parsed a different key")
			}
			if r.want != nil && !got.IsZero() {
				t.Fatal("failure returned a key")
			}
		})
	}
}

func TestReadPrivateKeyFile(t *testing.T) {
	dir := t.TempDir()
	k := testKey(t, "file")
	pemBytes, _ := k.MarshalPKCS8PEM()
	for _, tc := range []struct {
		mode      fs.FileMode
		want      error
		fragments []string
	}{
		{0o600, nil, nil},
		{0o400, nil, nil},
		{0o640, ErrKeyPermissions, []string{"mode 0640", "chmod 600"}},
		{0o644, ErrKeyPermissions, []string{"mode 0644", "chmod 600"}},
		{0o602, ErrKeyPermissions, []string{"chmod 600"}},
	} {
		t.Run(fmt.Sprintf("%04o", tc.mode), func(t *testing.T) {
			p := filepath.Join(dir, fmt.Sprintf("k%o.key", tc.mode))
			if err := os.WriteFile(p, pemBytes, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			got, err := ReadPrivateKeyFile(p)
			wantErr(t, err, tc.want, tc.fragments...)
			if tc.want == nil && !got.Equal(k) {
				t.Fatal("read a different key")
			}
		})
	}
	_, err := ReadPrivateKeyFile(dir)
	wantErr(t, err, ErrInvalidKey, "not a regular file")
	_, err = ReadPrivateKeyFile(filepath.Join(dir, "missing"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestWriteKeyPair(t *testing.T) {
	dir := t.TempDir()
	k, err := GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	keyPath, pubPath, err := WriteKeyPair(dir, "agent-1", k)
	if err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]fs.FileMode{keyPath: 0o600, pubPath: 0o644} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		// umask may only clear bits; the key must never gain any.
		if fi.Mode().Perm()&^mode != 0 {
			t.Fatalf("%s mode %04o, want at most %04o", p, fi.Mode().Perm(), mode)
		}
	}
	pubText, _ := os.ReadFile(pubPath)
	if string(pubText) != FormatPublicKey(k.PublicKey())+"\n" {
		t.Fatalf("pub file = %q", pubText)
	}
	back, err := ReadPrivateKeyFile(keyPath)
	if err != nil || !back.Equal(k) {
		t.Fatalf("read back: %v", err)
	}
	if pub, err := ReadPublicKeyFile(pubPath); err != nil || !pub.Equal(k.PublicKey()) {
		t.Fatalf("read pub back: %v", err)
	}
	_, _, err = WriteKeyPair(dir, "agent-1", k)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrite: %v", err)
	}
	for _, bad := range []string{"", "..", "a/b", "a b", "x\n"} {
		_, _, err := WriteKeyPair(dir, bad, k)
		wantErr(t, err, ErrMalformed)
	}
	_, _, err = WriteKeyPair(dir, "zero", PrivateKey{})
	wantErr(t, err, ErrNoKey)
}

// TestPrivateKeyNeverPrints formats a key every way Go code commonly does
// and checks the secret shows up in none of them.
func TestPrivateKeyNeverPrints(t *testing.T) {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(0xA0 + i)
	}
	k, _ := PrivateKeyFromSeed(seed)
	secretForms := []string{
		hex.EncodeToString(seed), strings.ToUpper(hex.EncodeToString(seed)),
		b64.EncodeToString(seed), b64url.EncodeToString(seed),
		hex.EncodeToString(k.key), b64.EncodeToString(k.key),
		fmt.Sprint([]byte(seed)), fmt.Sprint(seed[:8]),
	}
	wrapped := struct {
		Name string
		Key  PrivateKey
		Ptr  *PrivateKey
	}{"x", k, &k}
	jsonOut, err := json.Marshal(wrapped)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := k.MarshalText()
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", k), "%+v": fmt.Sprintf("%+v", k), "%#v": fmt.Sprintf("%#v", k),
		"%s": fmt.Sprintf("%s", k), "%x": fmt.Sprintf("%x", k), "%X": fmt.Sprintf("%X", k),
		"%q": fmt.Sprintf("%q", k), "%d": fmt.Sprintf("%d", k),
		"struct %+v": fmt.Sprintf("%+v", wrapped), "struct %#v": fmt.Sprintf("%#v", wrapped),
		"pointer %v": fmt.Sprintf("%v", &k), "json": string(jsonOut), "text": string(text),
		"String": k.String(), "GoString": k.GoString(),
	}
	for name, out := range outputs {
		for _, secret := range secretForms {
			if strings.Contains(out, secret) {
				t.Errorf("%s prints the secret: %s", name, out)
			}
		}
		if !strings.Contains(out, "redacted") {
			t.Errorf("%s = %q, want the redacted description", name, out)
		}
	}
	if !strings.Contains(k.String(), FormatPublicKey(k.PublicKey())) {
		t.Errorf("String should name the public key: %s", k)
	}
}

func TestPrivateKeyZeroAndEqual(t *testing.T) {
	var z PrivateKey
	if !z.IsZero() || z.PublicKey() != nil || z.String() != "identity.PrivateKey(none)" {
		t.Fatal("zero key")
	}
	if _, err := z.Sign(nil, []byte("m"), nil); !errors.Is(err, ErrNoKey) {
		t.Fatalf("zero key signs: %v", err)
	}
	if _, err := z.MarshalPKCS8PEM(); !errors.Is(err, ErrNoKey) {
		t.Fatalf("zero key marshals: %v", err)
	}
	a, b := testKey(t, "a"), testKey(t, "b")
	if !a.Equal(testKey(t, "a")) || a.Equal(b) || a.Equal(z) || z.Equal(z) || a.Equal(a.key) {
		t.Fatal("Equal")
	}
	sig, err := a.Sign(rand.Reader, []byte("m"), &ed25519.Options{})
	if err != nil || !ed25519.Verify(a.PublicKey(), []byte("m"), sig) {
		t.Fatalf("crypto.Signer Sign: %v", err)
	}
	if _, err := PrivateKeyFromSeed(make([]byte, 31)); !errors.Is(err, ErrInvalidKey) {
		t.Fatal("short seed accepted")
	}
}
