package identity

import "errors"

// Errors shared by keys, attestations, manifest signatures and request
// signatures. Every error returned by this package wraps one of them, so
// callers branch with errors.Is; the wrapping message adds the detail.
var (
	// ErrMalformed reports input that is not of the expected form: bad JSON,
	// a missing or mistyped field, a value out of bounds, bad base64.
	ErrMalformed = errors.New("malformed")
	// ErrInvalidKey reports a key that is not an Ed25519 key of the right
	// length or encoding.
	ErrInvalidKey = errors.New("invalid key")
	// ErrKeyPermissions reports a private key file that group or others may
	// read or write.
	ErrKeyPermissions = errors.New("private key file permissions too open")
	// ErrNoKey reports the use of a zero PrivateKey.
	ErrNoKey = errors.New("no private key")
	// ErrBadSignature reports a signature that does not verify.
	ErrBadSignature = errors.New("bad signature")
	// ErrUnknownSigningKey reports an attestation signed with a key id that is
	// not trusted.
	ErrUnknownSigningKey = errors.New("unknown signing key")
	// ErrExpired reports an attestation whose expires_at has passed.
	ErrExpired = errors.New("attestation expired")
	// ErrNotYetValid reports an attestation whose timestamp lies in the
	// future beyond the allowed clock skew.
	ErrNotYetValid = errors.New("attestation not yet valid")
	// ErrTooOld reports a v1 attestation whose timestamp is older than the
	// maximum age: v1 does not sign expires_at, so its age is what bounds it.
	ErrTooOld = errors.New("attestation too old")
	// ErrAgentMismatch reports an attestation for another agent id.
	ErrAgentMismatch = errors.New("agent id mismatch")
	// ErrCodebaseMismatch reports an attestation for another codebase hash.
	ErrCodebaseMismatch = errors.New("codebase hash mismatch")
	// ErrConfigMismatch reports an attestation for another config hash.
	ErrConfigMismatch = errors.New("config hash mismatch")
	// ErrKeyMismatch reports an attestation that binds another agent key
	// than the expected one, or a v1 attestation where a bound key is
	// required.
	ErrKeyMismatch = errors.New("verification key mismatch")
	// ErrUnsupportedVersion reports an attestation signature_version other
	// than 1 or 2.
	ErrUnsupportedVersion = errors.New("unsupported signature version")
	// ErrUnsupportedAlgorithm reports a JWS or HTTP signature algorithm other
	// than EdDSA / ed25519.
	ErrUnsupportedAlgorithm = errors.New("unsupported algorithm")
	// ErrNoValidSignature reports a manifest without any signature that
	// verifies under a known key.
	ErrNoValidSignature = errors.New("no valid signature")

	// ErrNoSignature reports a request without Signature-Input and Signature
	// headers: an unsigned caller.
	ErrNoSignature = errors.New("request is not signed")
	// ErrMissingComponents reports a request signature that does not cover
	// every required component or lacks a required parameter.
	ErrMissingComponents = errors.New("signature does not cover required components")
	// ErrUnknownKey reports a request signed with a keyid (agent id) whose key
	// is neither configured nor attested.
	ErrUnknownKey = errors.New("unknown key")
	// ErrBadDigest reports a request whose Content-Digest does not match the
	// body.
	ErrBadDigest = errors.New("content digest mismatch")
	// ErrStaleSignature reports a request signature created longer ago than
	// the allowed clock skew, or past its expires parameter.
	ErrStaleSignature = errors.New("stale signature")
	// ErrFutureSignature reports a request signature created in the future
	// beyond the allowed clock skew.
	ErrFutureSignature = errors.New("signature created in the future")
	// ErrReplayedNonce reports a nonce already seen inside the replay window.
	ErrReplayedNonce = errors.New("replayed nonce")
	// ErrNonceCacheFull reports a replay cache full of live entries: the
	// request is refused rather than accepted unchecked.
	ErrNonceCacheFull = errors.New("replay cache full")
	// ErrBadAttestation reports an X-IATP-Attestation that does not validate.
	ErrBadAttestation = errors.New("bad attestation")
)
