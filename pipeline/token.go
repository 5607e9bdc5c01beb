package pipeline

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MinTokenLen is the shortest override or admin token accepted.
const MinTokenLen = 16

// weakWords are tokens people type when asked for a secret. A token that is
// one of them, or one of them repeated, is refused.
var weakWords = []string{
	"true", "yes", "1", "on", "y", "ok", "admin", "administrator", "root",
	"password", "passw0rd", "secret", "token", "override", "changeme",
	"change-me", "change_me", "test", "testing", "default", "letmein",
	"qwerty", "123456", "12345678", "iatp", "user", "guest", "allow",
}

// ErrWeakToken is wrapped by the reason a token is refused.
var ErrWeakToken = errors.New("weak token")

// Secret is a human-held secret (an override or admin token) compared in
// constant time. Its zero value matches nothing. String never reveals it.
type Secret struct {
	sum [sha256.Size]byte
	set bool
}

// NewSecret checks t's strength (PROTOCOL §6): at least MinTokenLen
// characters once surrounding white space is trimmed, at least 8 distinct
// characters, and not a well-known word or a repetition of one.
func NewSecret(t string) (Secret, error) {
	t = strings.TrimSpace(t)
	if t == "" {
		return Secret{}, fmt.Errorf("%w: not set", ErrWeakToken)
	}
	if len(t) < MinTokenLen {
		return Secret{}, fmt.Errorf("%w: %d characters, at least %d needed", ErrWeakToken, len(t), MinTokenLen)
	}
	distinct := map[rune]bool{}
	for _, r := range t {
		distinct[r] = true
	}
	if len(distinct) < 8 {
		return Secret{}, fmt.Errorf("%w: only %d distinct characters", ErrWeakToken, len(distinct))
	}
	lower := strings.ToLower(t)
	for _, w := range weakWords {
		if strings.Repeat(w, len(lower)/len(w)) == lower {
			return Secret{}, fmt.Errorf("%w: a well-known word", ErrWeakToken)
		}
	}
	return Secret{sum: sha256.Sum256([]byte(t)), set: true}, nil
}

// Matches compares a presented value with the token in constant time
// (hashing both first, so neither length leaks), ignoring surrounding
// white space. An unset token matches nothing.
func (s Secret) Matches(presented string) bool {
	if !s.set {
		return false
	}
	p := sha256.Sum256([]byte(strings.TrimSpace(presented)))
	return subtle.ConstantTimeCompare(p[:], s.sum[:]) == 1
}

// String never prints the token.
func (s Secret) String() string {
	if s.set {
		return "[set]"
	}
	return "[not set]"
}

// GenerateToken returns a random token that passes the strength rules, for
// demos and first set-up.
func GenerateToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic("iatp: crypto/rand failed: " + err.Error()) // crypto/rand does not fail on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// IsSet reports whether the token is configured.
func (s Secret) IsSet() bool { return s.set }
