package identity

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Caller is who sent a request. The zero value is an unauthenticated,
// unattested caller: it denies.
type Caller struct {
	// AgentID is the signature's keyid once verified; "" otherwise.
	AgentID string
	// Authenticated is true when the request signature verified under a
	// key configured for AgentID or attested for it.
	Authenticated bool
	// Attested is true when the key came from (or matches) a valid v2
	// attestation by a trusted control-plane key for AgentID.
	Attested bool
}

// AuthError is the error CallerVerifier returns: its message is the reason
// to send back to the caller in a 401 (it quotes caller input only
// truncated), and it wraps the sentinel to branch on (ErrNoSignature,
// ErrMalformed, ErrMissingComponents, ErrUnsupportedAlgorithm,
// ErrStaleSignature, ErrFutureSignature, ErrUnknownKey, ErrBadAttestation,
// ErrBadSignature, ErrBadDigest, ErrReplayedNonce, ErrNonceCacheFull).
type AuthError struct {
	Err error
}

// Error returns the reason, fit for a 401 response body.
func (e *AuthError) Error() string { return "request signature refused: " + e.Err.Error() }

// Unwrap returns the cause.
func (e *AuthError) Unwrap() error { return e.Err }

// HTTPStatus is 401 Unauthorized.
func (e *AuthError) HTTPStatus() int { return http.StatusUnauthorized }

// CallerVerifierConfig configures a CallerVerifier.
type CallerVerifierConfig struct {
	// TrustedAgents pins agent ids to their keys (config trusted_agents).
	TrustedAgents map[string]ed25519.PublicKey
	// Attestations holds the trusted control-plane keys. A caller that is
	// not in TrustedAgents is accepted only with a valid v2 attestation in
	// X-IATP-Attestation checked by it. If nil, only TrustedAgents are
	// accepted.
	Attestations *Validator
	// MaxClockSkew is how old, or how far in the future, created may be.
	// If 0, DefaultClockSkew (60 s).
	MaxClockSkew time.Duration
	// NonceCacheSize bounds the replay cache. If 0, DefaultNonceCacheSize.
	NonceCacheSize int
	// AttestationCacheSize bounds the cache of verified attestations. If 0,
	// 1024.
	AttestationCacheSize int
	// Clock gives the current time. If nil, time.Now.
	Clock func() time.Time
}

// CallerVerifier authenticates the callers of requests signed by
// RequestSigner (PROTOCOL.md section 9). Safe for concurrent use; the zero
// value refuses every request.
type CallerVerifier struct {
	trusted map[string]ed25519.PublicKey
	att     *Validator
	skew    time.Duration
	clock   func() time.Time
	nonces  *NonceCache
	cache   *attestationCache
}

// NewCallerVerifier checks cfg and returns a verifier.
func NewCallerVerifier(cfg CallerVerifierConfig) (*CallerVerifier, error) {
	cv := &CallerVerifier{
		trusted: make(map[string]ed25519.PublicKey, len(cfg.TrustedAgents)),
		att:     cfg.Attestations,
		skew:    cfg.MaxClockSkew,
		clock:   cfg.Clock,
		nonces:  NewNonceCache(cfg.NonceCacheSize),
		cache:   newAttestationCache(cfg.AttestationCacheSize),
	}
	for id, pub := range cfg.TrustedAgents {
		if err := checkID("trusted agent id", id); err != nil {
			return nil, err
		}
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: trusted agent %q: key is %d bytes, want %d", ErrInvalidKey, id, len(pub), ed25519.PublicKeySize)
		}
		cv.trusted[id] = append(ed25519.PublicKey(nil), pub...)
	}
	if cv.skew < 0 {
		return nil, fmt.Errorf("%w: negative clock skew", ErrMalformed)
	}
	if cv.skew == 0 {
		cv.skew = DefaultClockSkew
	}
	if cv.clock == nil {
		cv.clock = time.Now
	}
	return cv, nil
}

// Verify authenticates the caller of m at the verifier's clock time.
func (cv *CallerVerifier) Verify(m Message) (Caller, error) {
	if cv == nil || cv.clock == nil {
		return Caller{}, &AuthError{Err: fmt.Errorf("%w: verifier not configured", ErrUnknownKey)}
	}
	return cv.VerifyAt(m, cv.clock())
}

// VerifyRequest authenticates the caller of r, whose body is body (read by
// the caller of VerifyRequest, within its own size limit).
func (cv *CallerVerifier) VerifyRequest(r *http.Request, body []byte) (Caller, error) {
	return cv.Verify(MessageFromRequest(r, body))
}

// VerifyAt authenticates the caller of m at time now. In order it checks:
// the signature headers' form, the policy (alg ed25519; @method,
// @target-uri, content-digest and x-agent-trace-id covered; created, keyid
// and nonce present), created within the clock skew (and expires, if
// given), the caller's key (TrustedAgents, else a valid v2 attestation for
// the keyid), the signature, the Content-Digest against the body, and last
// the nonce, which is recorded only for a request that passed everything
// else. Every failure is an *AuthError and the zero Caller.
func (cv *CallerVerifier) VerifyAt(m Message, now time.Time) (Caller, error) {
	c, err := cv.verifyAt(&m, now)
	if err != nil {
		return Caller{}, &AuthError{Err: err}
	}
	return c, nil
}

func (cv *CallerVerifier) verifyAt(m *Message, now time.Time) (Caller, error) {
	if cv == nil || cv.nonces == nil {
		return Caller{}, fmt.Errorf("%w: verifier not configured", ErrUnknownKey)
	}
	rs, err := parseRequestSignature(m, SignatureLabel)
	if err != nil {
		return Caller{}, err
	}
	p := rs.params
	if p.Alg != SignatureAlgorithm {
		if p.Alg == "" {
			return Caller{}, fmt.Errorf("%w: alg parameter is missing", ErrMissingComponents)
		}
		return Caller{}, fmt.Errorf("%w: alg %q, want %q", ErrUnsupportedAlgorithm, truncate(p.Alg, 32), SignatureAlgorithm)
	}
	var missing []string
	for _, c := range requiredComponents {
		if !slices.Contains(p.Components, c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return Caller{}, fmt.Errorf("%w: not covered: %v", ErrMissingComponents, missing)
	}
	switch {
	case p.Created.IsZero():
		return Caller{}, fmt.Errorf("%w: created parameter is missing", ErrMissingComponents)
	case p.KeyID == "":
		return Caller{}, fmt.Errorf("%w: keyid parameter is missing", ErrMissingComponents)
	case p.Nonce == "":
		return Caller{}, fmt.Errorf("%w: nonce parameter is missing", ErrMissingComponents)
	}
	if len(p.Nonce) > maxNonceLen {
		return Caller{}, fmt.Errorf("%w: nonce longer than %d bytes", ErrMalformed, maxNonceLen)
	}
	if err := checkID("keyid", p.KeyID); err != nil {
		return Caller{}, err
	}
	// Compare instants, not durations: a created far from now would
	// saturate time.Duration, and a saturated negative cannot be negated.
	if p.Created.Before(now.Add(-cv.skew)) {
		return Caller{}, fmt.Errorf("%w: created %s ago, more than the allowed %s", ErrStaleSignature, now.Sub(p.Created).Truncate(time.Second), cv.skew)
	}
	if p.Created.After(now.Add(cv.skew)) {
		return Caller{}, fmt.Errorf("%w: created %s ahead of this clock, more than the allowed %s", ErrFutureSignature, p.Created.Sub(now).Truncate(time.Second), cv.skew)
	}
	if !p.Expires.IsZero() && now.After(p.Expires) {
		return Caller{}, fmt.Errorf("%w: signature expired %s ago", ErrStaleSignature, now.Sub(p.Expires).Truncate(time.Second))
	}

	pub, attested, err := cv.callerKey(m, p.KeyID, now)
	if err != nil {
		return Caller{}, err
	}
	if !ed25519.Verify(pub, rs.base, rs.sig) {
		return Caller{}, fmt.Errorf("%w: does not verify under the key of agent %q", ErrBadSignature, truncate(p.KeyID, 64))
	}
	if err := verifyDigest(m); err != nil {
		return Caller{}, err
	}
	if err := cv.nonces.Use(p.KeyID, p.Nonce, p.Created.Add(cv.skew), now); err != nil {
		return Caller{}, err
	}
	return Caller{AgentID: p.KeyID, Authenticated: true, Attested: attested}, nil
}

// callerKey finds the key of agentID: pinned in TrustedAgents, or bound by
// the v2 attestation in X-IATP-Attestation. attested reports that a valid
// attestation for agentID binds the returned key.
func (cv *CallerVerifier) callerKey(m *Message, agentID string, now time.Time) (ed25519.PublicKey, bool, error) {
	pinned, isPinned := cv.trusted[agentID]
	var header string
	if lines := m.header("x-iatp-attestation"); len(lines) > 0 {
		if len(lines) > 1 {
			return nil, false, fmt.Errorf("%w: more than one X-IATP-Attestation", ErrBadAttestation)
		}
		header = lines[0]
	}
	if header == "" {
		if isPinned {
			return pinned, false, nil
		}
		return nil, false, fmt.Errorf("%w: agent %q is not in trusted_agents and sent no attestation", ErrUnknownKey, truncate(agentID, 64))
	}
	if cv.att == nil {
		if isPinned {
			return pinned, false, nil
		}
		return nil, false, fmt.Errorf("%w: agent %q is not in trusted_agents and attestations are not accepted here", ErrUnknownKey, truncate(agentID, 64))
	}
	attKey, err := cv.attestedKey(header, agentID, now)
	if isPinned {
		// The pinned key decides; the attestation only adds "attested" when
		// it is valid and binds that same key.
		return pinned, err == nil && subtle.ConstantTimeCompare(attKey, pinned) == 1, nil
	}
	if err != nil {
		return nil, false, err
	}
	return attKey, true, nil
}

// attestedKey validates a base64url X-IATP-Attestation for agentID and
// returns the key it binds, using the cache of verified attestations.
func (cv *CallerVerifier) attestedKey(header, agentID string, now time.Time) (ed25519.PublicKey, error) {
	if len(header) > base64.RawURLEncoding.EncodedLen(MaxAttestationBytes) {
		return nil, fmt.Errorf("%w: X-IATP-Attestation larger than %d bytes", ErrBadAttestation, MaxAttestationBytes)
	}
	gen := cv.att.generation()
	id := sha256.Sum256([]byte(header))
	if e, ok := cv.cache.get(id, gen, now); ok {
		if e.agentID != agentID {
			return nil, fmt.Errorf("%w: %w: attestation is for %q, not %q", ErrBadAttestation, ErrAgentMismatch, truncate(e.agentID, 64), truncate(agentID, 64))
		}
		return e.key, nil
	}
	raw, err := b64url.DecodeString(header)
	if err != nil {
		return nil, fmt.Errorf("%w: X-IATP-Attestation is not unpadded base64url", ErrBadAttestation)
	}
	a, err := DecodeAttestation(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAttestation, err)
	}
	v, err := cv.att.ValidateAt(a, now, ValidateOptions{RequireV2: true, ClockSkew: cv.skew})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAttestation, err)
	}
	cv.cache.put(id, attestationCacheEntry{
		agentID:   v.AgentID,
		key:       v.VerificationKey,
		notBefore: v.IssuedAt.Add(-cv.skew),
		notAfter:  v.ExpiresAt,
		gen:       gen,
	})
	if v.AgentID != agentID {
		return nil, fmt.Errorf("%w: %w: attestation is for %q, not %q", ErrBadAttestation, ErrAgentMismatch, truncate(v.AgentID, 64), truncate(agentID, 64))
	}
	return v.VerificationKey, nil
}

// attestationCacheEntry is a verified v2 attestation.
type attestationCacheEntry struct {
	agentID             string
	key                 ed25519.PublicKey
	notBefore, notAfter time.Time
	gen                 uint64 // Validator key generation it was verified under
}

// attestationCache remembers verified attestations by the SHA-256 of their
// header, so a caller that sends the same attestation on every request
// costs one verification per attestation, not one per request. Bounded: when
// full, the oldest inserted entry goes. An entry is used only inside its
// validity window and while the Validator's keys are unchanged.
type attestationCache struct {
	mu      sync.Mutex
	entries map[[32]byte]attestationCacheEntry
	order   [][32]byte // ring of keys in insertion order
	next    int
}

func newAttestationCache(capacity int) *attestationCache {
	if capacity <= 0 {
		capacity = 1024
	}
	return &attestationCache{entries: make(map[[32]byte]attestationCacheEntry, capacity), order: make([][32]byte, 0, capacity)}
}

func (c *attestationCache) get(id [32]byte, gen uint64, now time.Time) (attestationCacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || e.gen != gen || now.Before(e.notBefore) || !now.Before(e.notAfter) {
		return attestationCacheEntry{}, false
	}
	return e, true
}

func (c *attestationCache) put(id [32]byte, e attestationCacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[id]; ok {
		c.entries[id] = e
		return
	}
	if len(c.order) < cap(c.order) {
		c.order = append(c.order, id)
	} else {
		delete(c.entries, c.order[c.next])
		c.order[c.next] = id
		c.next = (c.next + 1) % len(c.order)
	}
	c.entries[id] = e
}

func (c *attestationCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// IsUnsigned reports whether err means the request carried no iatp
// signature at all, as opposed to a signature that failed: the sidecar lets
// unsigned callers through as unknown unless it requires authentication.
func IsUnsigned(err error) bool { return errors.Is(err, ErrNoSignature) }
