package identity

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/iatp/iatp/internal/wire"
)

// PublicKeyPrefix starts the textual form of a public key: "ed25519:<base64>".
const PublicKeyPrefix = "ed25519:"

// Size limits for key material read from text or files.
const (
	maxKeyText     = 4 << 10  // a PEM public key is ~113 bytes
	maxKeyFileSize = 64 << 10 // generous for comments around a PEM block
)

// b64 is the standard, padded base64 alphabet, refusing non-zero trailing
// bits so that every value has exactly one accepted encoding.
var b64 = base64.StdEncoding.Strict()

// b64url is unpadded base64url (JWS, nonces, X-IATP-Attestation), strict.
var b64url = base64.RawURLEncoding.Strict()

// ParsePublicKey reads an Ed25519 public key in any of the forms operators
// meet: raw 32 bytes in standard base64 (the widely installed Python
// package's form), "ed25519:<base64>" (the manifest form), or a PEM
// "PUBLIC KEY" block (SPKI). Surrounding white space is ignored.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if len(s) > maxKeyText {
		return nil, fmt.Errorf("%w: public key text longer than %d bytes", ErrInvalidKey, maxKeyText)
	}
	if strings.HasPrefix(s, "-----BEGIN") {
		return parsePublicKeyPEM([]byte(s))
	}
	form := "raw base64"
	if rest, ok := strings.CutPrefix(s, PublicKeyPrefix); ok {
		s, form = rest, PublicKeyPrefix+"<base64>"
	}
	raw, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s public key is not standard padded base64", ErrInvalidKey, form)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: %s public key is %d bytes, want %d", ErrInvalidKey, form, len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

func parsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block", ErrInvalidKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: data after the PEM block", ErrInvalidKey)
	}
	if block.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%w: PEM block is %q, want \"PUBLIC KEY\"", ErrInvalidKey, block.Type)
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: PEM key is %T, want Ed25519", ErrInvalidKey, k)
	}
	return pub, nil
}

// FormatPublicKey returns the "ed25519:<base64>" form of pub, or "" when pub
// is not 32 bytes long.
func FormatPublicKey(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		return ""
	}
	return PublicKeyPrefix + b64.EncodeToString(pub)
}

// MarshalPublicKeyPEM returns pub as a PEM "PUBLIC KEY" (SPKI) block.
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ReadPublicKeyFile reads a public key file in any form ParsePublicKey
// accepts.
func ReadPublicKeyFile(path string) (ed25519.PublicKey, error) {
	data, err := readBounded(path, maxKeyFileSize)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("public key file %s: %w", path, err)
	}
	return pub, nil
}

// PrivateKey is an Ed25519 private key whose bytes cannot be printed:
// String, GoString, Format, MarshalText and MarshalJSON show only the public
// half. The zero value holds no key and refuses to sign (ErrNoKey).
// PrivateKey implements crypto.Signer.
type PrivateKey struct {
	key ed25519.PrivateKey
}

var _ crypto.Signer = PrivateKey{}

// GenerateKey creates a new private key from r, or from crypto/rand when r
// is nil.
func GenerateKey(r io.Reader) (PrivateKey, error) {
	if r == nil {
		r = rand.Reader
	}
	_, k, err := ed25519.GenerateKey(r)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return PrivateKey{key: k}, nil
}

// PrivateKeyFromSeed returns the private key for a 32-byte RFC 8032 seed.
func PrivateKeyFromSeed(seed []byte) (PrivateKey, error) {
	if len(seed) != ed25519.SeedSize {
		return PrivateKey{}, fmt.Errorf("%w: seed is %d bytes, want %d", ErrInvalidKey, len(seed), ed25519.SeedSize)
	}
	return PrivateKey{key: ed25519.NewKeyFromSeed(seed)}, nil
}

// ParsePrivateKey reads a private key from a PEM "PRIVATE KEY" block
// (PKCS#8, what iatp keygen writes) or from the standard base64 of the raw
// 32-byte seed (the widely installed Python package's form).
func ParsePrivateKey(data []byte) (PrivateKey, error) {
	data = bytes.TrimSpace(data)
	if len(data) > maxKeyFileSize {
		return PrivateKey{}, fmt.Errorf("%w: private key longer than %d bytes", ErrInvalidKey, maxKeyFileSize)
	}
	if !bytes.HasPrefix(data, []byte("-----BEGIN")) {
		seed, err := b64.DecodeString(string(data))
		if err != nil {
			return PrivateKey{}, fmt.Errorf("%w: private key is neither PEM nor standard base64", ErrInvalidKey)
		}
		return PrivateKeyFromSeed(seed)
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return PrivateKey{}, fmt.Errorf("%w: no PEM block", ErrInvalidKey)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return PrivateKey{}, fmt.Errorf("%w: data after the PEM block", ErrInvalidKey)
	}
	if block.Type != "PRIVATE KEY" {
		return PrivateKey{}, fmt.Errorf("%w: PEM block is %q, want \"PRIVATE KEY\" (PKCS#8)", ErrInvalidKey, block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("%w: %v", ErrInvalidKey, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return PrivateKey{}, fmt.Errorf("%w: PKCS#8 key is %T, want Ed25519", ErrInvalidKey, k)
	}
	return PrivateKey{key: priv}, nil
}

// ReadPrivateKeyFile reads a private key file (see ParsePrivateKey). A file
// that group or others may access is refused with ErrKeyPermissions and the
// command that fixes it; so is anything but a regular file.
func ReadPrivateKeyFile(path string) (PrivateKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read private key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read private key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return PrivateKey{}, fmt.Errorf("%w: %s is not a regular file", ErrInvalidKey, path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return PrivateKey{}, fmt.Errorf("%w: %s has mode %04o, readable or writable by group or others; fix it with: chmod 600 %s",
			ErrKeyPermissions, path, perm, path)
	}
	data, err := wire.ReadAll(f, maxKeyFileSize)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("read private key: %w", err)
	}
	k, err := ParsePrivateKey(data)
	if err != nil {
		return PrivateKey{}, fmt.Errorf("private key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyPair writes k to dir/name.key (PEM PKCS#8, mode 0600) and its
// public key to dir/name.pub (one line "ed25519:<base64>", mode 0644). It
// refuses to overwrite either file and to use a name that is not a plain
// file name of letters, digits, '.', '_' and '-'.
func WriteKeyPair(dir, name string, k PrivateKey) (keyPath, pubPath string, err error) {
	if k.IsZero() {
		return "", "", ErrNoKey
	}
	if !validKeyName(name) {
		return "", "", fmt.Errorf("%w: key name %q: use letters, digits, '.', '_' and '-' only", ErrMalformed, name)
	}
	pemBytes, err := k.MarshalPKCS8PEM()
	if err != nil {
		return "", "", err
	}
	keyPath = filepath.Join(dir, name+".key")
	pubPath = filepath.Join(dir, name+".pub")
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists: %w", p, fs.ErrExist)
		}
	}
	if err := writeNew(keyPath, pemBytes, 0o600); err != nil {
		return "", "", err
	}
	if err := writeNew(pubPath, []byte(FormatPublicKey(k.PublicKey())+"\n"), 0o644); err != nil {
		_ = os.Remove(keyPath)
		return "", "", err
	}
	return keyPath, pubPath, nil
}

func validKeyName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 128 {
		return false
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// writeNew creates path (which must not exist) with perm and writes data.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// IsZero reports whether k holds no key.
func (k PrivateKey) IsZero() bool { return len(k.key) != ed25519.PrivateKeySize }

// PublicKey returns the public half of k, or nil for the zero key.
func (k PrivateKey) PublicKey() ed25519.PublicKey {
	if k.IsZero() {
		return nil
	}
	return k.key.Public().(ed25519.PublicKey)
}

// Public implements crypto.Signer.
func (k PrivateKey) Public() crypto.PublicKey { return k.PublicKey() }

// Sign implements crypto.Signer: plain Ed25519 (opts.HashFunc() == 0) over
// message, or Ed25519ph / Ed25519ctx as ed25519.PrivateKey.Sign allows.
func (k PrivateKey) Sign(r io.Reader, message []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.IsZero() {
		return nil, ErrNoKey
	}
	return k.key.Sign(r, message, opts)
}

// sign returns the pure Ed25519 signature of msg.
func (k PrivateKey) sign(msg []byte) ([]byte, error) {
	if k.IsZero() {
		return nil, ErrNoKey
	}
	return ed25519.Sign(k.key, msg), nil
}

// ed25519Key returns the underlying key for libraries that need it (go-jose).
func (k PrivateKey) ed25519Key() ed25519.PrivateKey { return k.key }

// Equal reports, in constant time, whether x is a PrivateKey holding the
// same key.
func (k PrivateKey) Equal(x crypto.PrivateKey) bool {
	o, ok := x.(PrivateKey)
	if !ok || k.IsZero() || o.IsZero() {
		return false
	}
	return subtle.ConstantTimeCompare(k.key, o.key) == 1
}

// MarshalPKCS8PEM returns k as a PEM "PRIVATE KEY" block (PKCS#8): the
// only way to get the secret out, for writing key files.
func (k PrivateKey) MarshalPKCS8PEM() ([]byte, error) {
	if k.IsZero() {
		return nil, ErrNoKey
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// String describes k by its public key; the secret never appears.
func (k PrivateKey) String() string {
	if k.IsZero() {
		return "identity.PrivateKey(none)"
	}
	return "identity.PrivateKey(redacted; public " + FormatPublicKey(k.PublicKey()) + ")"
}

// GoString is String, so %#v does not print the secret either.
func (k PrivateKey) GoString() string { return k.String() }

// Format prints String for every verb (%v, %+v, %#v, %s, %x, %q …).
func (k PrivateKey) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, k.String()) }

// MarshalText returns String, so text encoders (YAML, logs) never see the
// secret.
func (k PrivateKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// MarshalJSON returns String as a JSON string.
func (k PrivateKey) MarshalJSON() ([]byte, error) { return json.Marshal(k.String()) }

// readBounded reads a whole file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := wire.ReadAll(f, limit)
	if errors.Is(err, wire.ErrTooLarge) {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrMalformed, path, limit)
	}
	return data, err
}
