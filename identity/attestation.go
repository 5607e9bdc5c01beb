package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gowebpki/jcs"
)

// Attestation limits and defaults.
const (
	// MaxAttestationBytes bounds the JSON of one attestation record.
	MaxAttestationBytes = 64 << 10
	// DefaultAttestationTTL is how long a new attestation is valid.
	DefaultAttestationTTL = 24 * time.Hour
	// DefaultMaxAttestationAge is how long after its timestamp a v1
	// attestation is accepted, whatever its unsigned expires_at says.
	DefaultMaxAttestationAge = 24 * time.Hour
	// DefaultClockSkew is the tolerance for clocks that disagree: how far in
	// the future an attestation timestamp or a request's created may lie,
	// and how old a request signature may be.
	DefaultClockSkew = 60 * time.Second

	maxIDLen             = 256 // agent ids and key ids
	maxFieldLen          = 1024
	maxExtraMembers      = 64
	timestampLayout      = "2006-01-02T15:04:05Z"
	timestampLayoutMicro = "2006-01-02T15:04:05.000000Z"
)

// Field names of an attestation record.
const (
	fieldAgentID          = "agent_id"
	fieldCodebaseHash     = "codebase_hash"
	fieldConfigHash       = "config_hash"
	fieldSignature        = "signature"
	fieldSigningKeyID     = "signing_key_id"
	fieldTimestamp        = "timestamp"
	fieldExpiresAt        = "expires_at"
	fieldSignatureVersion = "signature_version"
	fieldVerificationKey  = "verification_key"
)

var knownFields = []string{
	fieldAgentID, fieldCodebaseHash, fieldConfigHash, fieldSignature, fieldSigningKeyID,
	fieldTimestamp, fieldExpiresAt, fieldSignatureVersion, fieldVerificationKey,
}

// Attestation is a control plane's signed statement that an agent runs a
// known codebase and configuration (PROTOCOL.md section 8).
//
// Version 1 (the widely installed Python package's) signs the UTF-8 bytes
// of "agent_id:codebase_hash:config_hash:timestamp" and nothing else: not
// expires_at, not the agent's key. It is a bearer credential, bounded by the
// age of its timestamp.
//
// Version 2 adds "signature_version": 2 and "verification_key" (the agent's
// own Ed25519 key) and signs the RFC 8785 canonical JSON of every member of
// the record but "signature", members this version does not know included.
type Attestation struct {
	AgentID      string
	CodebaseHash string
	ConfigHash   string
	// Signature is the standard base64 of the 64-byte Ed25519 signature.
	Signature    string
	SigningKeyID string
	// Timestamp is when the record was signed, RFC 3339 in UTC ("Z"); v1
	// signs this string exactly as written.
	Timestamp string
	ExpiresAt string
	// SignatureVersion is 2 for v2; 0 (absent) or 1 for v1.
	SignatureVersion int
	// VerificationKey is the agent's public key, "ed25519:<base64>"; v2 only.
	VerificationKey string
	// Extra holds members this version does not know. v2 signs them too.
	Extra map[string]json.RawMessage
}

// Version returns 1 or 2 (or the unsupported number the record carries).
func (a *Attestation) Version() int {
	if a.SignatureVersion == 0 {
		return 1
	}
	return a.SignatureVersion
}

// DecodeAttestation parses an attestation record of at most
// MaxAttestationBytes. It refuses duplicate members, invalid UTF-8, members
// of the wrong type and signature versions other than 1 and 2; it does not
// check the signature (see Validator).
func DecodeAttestation(data []byte) (*Attestation, error) {
	a := new(Attestation)
	if err := a.decode(data); err != nil {
		return nil, err
	}
	return a, nil
}

// UnmarshalJSON decodes like DecodeAttestation.
func (a *Attestation) UnmarshalJSON(data []byte) error {
	var tmp Attestation
	if err := tmp.decode(data); err != nil {
		return err
	}
	*a = tmp
	return nil
}

func (a *Attestation) decode(data []byte) error {
	if len(data) > MaxAttestationBytes {
		return fmt.Errorf("%w: attestation is %d bytes, limit %d", ErrMalformed, len(data), MaxAttestationBytes)
	}
	// jcs refuses duplicate member names at every depth, invalid UTF-8 and
	// lone surrogates, which encoding/json would let through silently.
	if _, err := jcs.Transform(data); err != nil {
		return fmt.Errorf("%w: attestation is not valid JSON: %s", ErrMalformed, lowerFirst(err.Error()))
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(data, &members); err != nil || members == nil {
		return fmt.Errorf("%w: attestation is not a JSON object", ErrMalformed)
	}
	strs := []struct {
		name string
		dst  *string
	}{
		{fieldAgentID, &a.AgentID}, {fieldCodebaseHash, &a.CodebaseHash}, {fieldConfigHash, &a.ConfigHash},
		{fieldSignature, &a.Signature}, {fieldSigningKeyID, &a.SigningKeyID}, {fieldTimestamp, &a.Timestamp},
		{fieldExpiresAt, &a.ExpiresAt}, {fieldVerificationKey, &a.VerificationKey},
	}
	for _, f := range strs {
		raw, ok := members[f.name]
		if !ok {
			continue
		}
		delete(members, f.name)
		if len(raw) == 0 || raw[0] != '"' {
			return fmt.Errorf("%w: %s must be a string", ErrMalformed, f.name)
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return fmt.Errorf("%w: %s must be a string", ErrMalformed, f.name)
		}
		if len(*f.dst) > maxFieldLen {
			return fmt.Errorf("%w: %s longer than %d bytes", ErrMalformed, f.name, maxFieldLen)
		}
	}
	if raw, ok := members[fieldSignatureVersion]; ok {
		delete(members, fieldSignatureVersion)
		switch string(raw) {
		case "1":
			a.SignatureVersion = 1
		case "2":
			a.SignatureVersion = 2
		default:
			return fmt.Errorf("%w: signature_version %q (want 1 or 2)", ErrUnsupportedVersion, truncate(string(raw), 32))
		}
	}
	if len(members) > maxExtraMembers {
		return fmt.Errorf("%w: attestation has more than %d unknown members", ErrMalformed, maxExtraMembers)
	}
	if len(members) > 0 {
		a.Extra = members
	}
	return nil
}

// MarshalJSON writes the record with its members in the widely installed
// package's order (agent_id, codebase_hash, config_hash, signature,
// signing_key_id, timestamp, expires_at), then signature_version and
// verification_key when set, then Extra sorted by name.
func (a *Attestation) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	first := true
	member := func(name string, value []byte) {
		if !first {
			buf.WriteByte(',')
		}
		first = false
		buf.Write(jsonString(name))
		buf.WriteByte(':')
		buf.Write(value)
	}
	member(fieldAgentID, jsonString(a.AgentID))
	member(fieldCodebaseHash, jsonString(a.CodebaseHash))
	member(fieldConfigHash, jsonString(a.ConfigHash))
	member(fieldSignature, jsonString(a.Signature))
	member(fieldSigningKeyID, jsonString(a.SigningKeyID))
	member(fieldTimestamp, jsonString(a.Timestamp))
	member(fieldExpiresAt, jsonString(a.ExpiresAt))
	if a.SignatureVersion != 0 {
		member(fieldSignatureVersion, fmt.Appendf(nil, "%d", a.SignatureVersion))
	}
	if a.VerificationKey != "" {
		member(fieldVerificationKey, jsonString(a.VerificationKey))
	}
	names, err := a.extraNames()
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		raw := a.Extra[name]
		if !json.Valid(raw) {
			return nil, fmt.Errorf("%w: extra member %q is not valid JSON", ErrMalformed, name)
		}
		var c bytes.Buffer
		if err := json.Compact(&c, raw); err != nil {
			return nil, fmt.Errorf("%w: extra member %q: %v", ErrMalformed, name, err)
		}
		member(name, c.Bytes())
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func (a *Attestation) extraNames() ([]string, error) {
	names := make([]string, 0, len(a.Extra))
	for name := range a.Extra {
		if slices.Contains(knownFields, name) {
			return nil, fmt.Errorf("%w: extra member %q shadows a known field", ErrMalformed, name)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names, nil
}

// signingInput returns the bytes the signature covers for the record's
// version: the colon-joined v1 message or the v2 canonical JSON.
func (a *Attestation) signingInput() ([]byte, error) {
	switch a.Version() {
	case 1:
		return []byte(a.AgentID + ":" + a.CodebaseHash + ":" + a.ConfigHash + ":" + a.Timestamp), nil
	case 2:
		c := *a
		c.Signature = ""
		doc, err := c.MarshalJSON()
		if err != nil {
			return nil, err
		}
		// Remove the (empty) signature member, then canonicalize.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(doc, &m); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		delete(m, fieldSignature)
		doc, err = json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		out, err := jcs.Transform(doc)
		if err != nil {
			return nil, fmt.Errorf("%w: canonical JSON: %s", ErrMalformed, lowerFirst(err.Error()))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: %d", ErrUnsupportedVersion, a.SignatureVersion)
}

// Claims are what a control plane vouches for in an attestation.
type Claims struct {
	AgentID      string
	CodebaseHash string // "sha256:<hex>" (or bare hex)
	ConfigHash   string // "sha256:<hex>" (or bare hex)
	// VerificationKey is the agent's own public key; required for v2,
	// refused for v1 (which cannot sign it).
	VerificationKey ed25519.PublicKey
}

// AttestationOptions tunes CreateAttestation. The zero value makes a v2
// record valid for DefaultAttestationTTL from time.Now().
type AttestationOptions struct {
	// Version is 2 (the default when 0) or 1, for verifiers that only know
	// the widely installed package's scheme.
	Version int
	// TTL is how long the record is valid. If 0, DefaultAttestationTTL.
	TTL time.Duration
	// Now is the signing time. If zero, time.Now().
	Now time.Time
}

// CreateAttestation signs claims with the control plane's key, naming it
// keyID. Timestamps are written like the widely installed package writes
// them (UTC, microseconds when not zero, "Z").
func CreateAttestation(key PrivateKey, keyID string, c Claims, opts AttestationOptions) (*Attestation, error) {
	if key.IsZero() {
		return nil, ErrNoKey
	}
	version := opts.Version
	if version == 0 {
		version = 2
	}
	ttl := opts.TTL
	if ttl == 0 {
		ttl = DefaultAttestationTTL
	}
	if ttl < 0 {
		return nil, fmt.Errorf("%w: negative TTL %s", ErrMalformed, ttl)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	a := &Attestation{
		AgentID:      c.AgentID,
		CodebaseHash: c.CodebaseHash,
		ConfigHash:   c.ConfigHash,
		SigningKeyID: keyID,
		Timestamp:    formatTimestamp(now),
		ExpiresAt:    formatTimestamp(now.Add(ttl)),
	}
	switch version {
	case 1:
		if c.VerificationKey != nil {
			return nil, fmt.Errorf("%w: a v1 attestation cannot bind the agent's key; use v2", ErrMalformed)
		}
	case 2:
		a.SignatureVersion = 2
		if len(c.VerificationKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: a v2 attestation needs the agent's 32-byte verification key", ErrInvalidKey)
		}
		a.VerificationKey = FormatPublicKey(c.VerificationKey)
	default:
		return nil, fmt.Errorf("%w: %d (want 1 or 2)", ErrUnsupportedVersion, version)
	}
	if _, err := a.checkFields(); err != nil {
		return nil, err
	}
	msg, err := a.signingInput()
	if err != nil {
		return nil, err
	}
	sig, err := key.sign(msg)
	if err != nil {
		return nil, err
	}
	a.Signature = b64.EncodeToString(sig)
	return a, nil
}

// recordTimes are the parsed timestamps of a well-formed record.
type recordTimes struct {
	issued, expires time.Time
}

// checkFields checks everything about the record's form that does not need
// a key: required members, lengths, hash and timestamp formats, and for v2
// the agent key. It does not look at the signature.
func (a *Attestation) checkFields() (recordTimes, error) {
	var t recordTimes
	v := a.Version()
	if v != 1 && v != 2 {
		return t, fmt.Errorf("%w: %d (want 1 or 2)", ErrUnsupportedVersion, v)
	}
	if err := checkID(fieldAgentID, a.AgentID); err != nil {
		return t, err
	}
	if v == 1 && strings.Contains(a.AgentID, ":") {
		// v1 joins fields with ':'; a colon in agent_id would let one
		// signature stand for another split of the same message.
		return t, fmt.Errorf("%w: agent_id of a v1 attestation must not contain ':'", ErrMalformed)
	}
	if err := checkID(fieldSigningKeyID, a.SigningKeyID); err != nil {
		return t, err
	}
	if !validHash(a.CodebaseHash) {
		return t, fmt.Errorf("%w: codebase_hash must be sha256:<64 hex digits>", ErrMalformed)
	}
	if !validHash(a.ConfigHash) {
		return t, fmt.Errorf("%w: config_hash must be sha256:<64 hex digits>", ErrMalformed)
	}
	var err error
	if t.issued, err = parseTimestamp(fieldTimestamp, a.Timestamp); err != nil {
		return t, err
	}
	if t.expires, err = parseTimestamp(fieldExpiresAt, a.ExpiresAt); err != nil {
		return t, err
	}
	if !t.expires.After(t.issued) {
		return t, fmt.Errorf("%w: expires_at is not after timestamp", ErrMalformed)
	}
	if v == 2 {
		if !strings.HasPrefix(a.VerificationKey, PublicKeyPrefix) {
			return t, fmt.Errorf("%w: verification_key must be %s<base64>", ErrMalformed, PublicKeyPrefix)
		}
		if _, err := ParsePublicKey(a.VerificationKey); err != nil {
			return t, fmt.Errorf("%w: verification_key: %w", ErrMalformed, err)
		}
	}
	return t, nil
}

func checkID(name, s string) error {
	if s == "" {
		return fmt.Errorf("%w: %s is missing", ErrMalformed, name)
	}
	if len(s) > maxIDLen {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrMalformed, name, maxIDLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrMalformed, name)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s holds a control character", ErrMalformed, name)
		}
	}
	return nil
}

// formatTimestamp writes t like Python's datetime.isoformat() with "Z":
// microseconds only when they are not zero.
func formatTimestamp(t time.Time) string {
	t = t.UTC().Truncate(time.Microsecond)
	if t.Nanosecond() == 0 {
		return t.Format(timestampLayout)
	}
	return t.Format(timestampLayoutMicro)
}

// parseTimestamp reads an RFC 3339 timestamp in UTC ("Z").
func parseTimestamp(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, fmt.Errorf("%w: %s is missing", ErrMalformed, name)
	}
	if len(s) > 40 || !strings.HasSuffix(s, "Z") {
		return time.Time{}, fmt.Errorf("%w: %s must be an RFC 3339 time in UTC ending in Z", ErrMalformed, name)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %s must be an RFC 3339 time in UTC ending in Z", ErrMalformed, name)
	}
	return t, nil
}

// jsonString encodes s as a JSON string without HTML escaping.
func jsonString(s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func lowerFirst(s string) string {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
}

// truncate shortens attacker-controlled text before it goes into an error.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
