package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

// testKey returns a deterministic key derived from label.
func testKey(t testing.TB, label string) PrivateKey {
	t.Helper()
	seed := sha256.Sum256([]byte(label))
	k, err := PrivateKeyFromSeed(seed[:])
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// t0 is the fixed "now" of most tests.
var t0 = time.Date(2026, 1, 25, 10, 0, 0, 123456000, time.UTC)

// wantErr checks that err wraps want (nil: no error) and that its message
// contains every fragment.
func wantErr(t *testing.T, err, want error, fragments ...string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("error %q does not wrap %q", err, want)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Fatalf("error %q does not contain %q", err, f)
		}
	}
}

func mustPublic(t testing.TB, s string) ed25519.PublicKey {
	t.Helper()
	k, err := ParsePublicKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func isErr(err, target error) bool { return errors.Is(err, target) }
