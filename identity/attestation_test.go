package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// vectors is testdata/attestation_vectors.json, written by
// testdata/gen_attestation_vectors.py with Python's cryptography package.
type vectors struct {
	ControlPlaneSeedHex    string `json:"control_plane_seed_hex"`
	ControlPlanePublicKey  string `json:"control_plane_public_key"`
	AgentSeedHex           string `json:"agent_seed_hex"`
	AgentPublicKey         string `json:"agent_public_key"`
	SigningKeyID           string `json:"signing_key_id"`
	V1MessageJSON          string `json:"v1_message"`
	V2MessageJSON          string `json:"v2_message"`
	controlPlane, agentKey PrivateKey
}

func loadVectors(t *testing.T) *vectors {
	t.Helper()
	data, err := os.ReadFile("testdata/attestation_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	for _, k := range []struct {
		seedHex string
		dst     *PrivateKey
	}{{v.ControlPlaneSeedHex, &v.controlPlane}, {v.AgentSeedHex, &v.agentKey}} {
		seed, err := hex.DecodeString(k.seedHex)
		if err != nil {
			t.Fatal(err)
		}
		if *k.dst, err = PrivateKeyFromSeed(seed); err != nil {
			t.Fatal(err)
		}
	}
	// The Python public keys match the Go derivation from the same seeds.
	if !mustPublic(t, v.ControlPlanePublicKey).Equal(v.controlPlane.PublicKey()) {
		t.Fatal("control-plane public key differs between Python and Go")
	}
	if !mustPublic(t, v.AgentPublicKey).Equal(v.agentKey.PublicKey()) {
		t.Fatal("agent public key differs between Python and Go")
	}
	return &v
}

func vectorValidator(t *testing.T, v *vectors) *Validator {
	t.Helper()
	val, err := NewValidator(map[string]ed25519.PublicKey{v.SigningKeyID: mustPublic(t, v.ControlPlanePublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	return val
}

// TestPythonVectors checks interoperability both ways with records made by
// Python's cryptography (testdata/gen_attestation_vectors.py): they verify
// here, and the same seeds and inputs give byte-identical records in Go.
func TestPythonVectors(t *testing.T) {
	v := loadVectors(t)
	val := vectorValidator(t, v)
	for _, tc := range []struct {
		file    string
		version int
		message string
	}{
		{"testdata/attestation_v1.json", 1, v.V1MessageJSON},
		{"testdata/attestation_v2.json", 2, v.V2MessageJSON},
	} {
		t.Run(tc.file, func(t *testing.T) {
			want, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			a, err := DecodeAttestation(want)
			if err != nil {
				t.Fatal(err)
			}
			res, err := val.ValidateAt(a, t0.Add(time.Hour), ValidateOptions{AgentID: "banking-agent"})
			if err != nil {
				t.Fatalf("Python-made record does not validate: %v", err)
			}
			if res.Version != tc.version || res.AgentID != "banking-agent" {
				t.Fatalf("validated = %+v", res)
			}
			msg, err := a.signingInput()
			if err != nil {
				t.Fatal(err)
			}
			if string(msg) != tc.message {
				t.Fatalf("signing input differs from Python's:\n got %s\nwant %s", msg, tc.message)
			}

			claims := Claims{AgentID: a.AgentID, CodebaseHash: a.CodebaseHash, ConfigHash: a.ConfigHash}
			if tc.version == 2 {
				claims.VerificationKey = v.agentKey.PublicKey()
			}
			made, err := CreateAttestation(v.controlPlane, v.SigningKeyID, claims, AttestationOptions{
				Version: tc.version, Now: t0, TTL: 24 * time.Hour,
			})
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(made)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(append(got, '\n'), want) {
				t.Fatalf("Go record differs from Python's:\n got %s\nwant %s", got, want)
			}
		})
	}
}

// newRecord returns a freshly signed record at t0 with control-plane key cp.
func newRecord(t testing.TB, cp PrivateKey, version int, agentKey ed25519.PublicKey) *Attestation {
	t.Helper()
	c := Claims{AgentID: "banking-agent", CodebaseHash: HashBytes([]byte("code")), ConfigHash: HashBytes([]byte("conf"))}
	if version == 2 {
		c.VerificationKey = agentKey
	}
	a, err := CreateAttestation(cp, "cp", c, AttestationOptions{Version: version, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestValidateAttestation(t *testing.T) {
	cp := testKey(t, "control plane")
	agent := testKey(t, "agent")
	other := testKey(t, "other")
	val, err := NewValidator(map[string]ed25519.PublicKey{"cp": cp.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	resign := func(a *Attestation) {
		msg, err := a.signingInput()
		if err != nil {
			t.Fatal(err)
		}
		sig, _ := cp.sign(msg)
		a.Signature = b64.EncodeToString(sig)
	}
	type row struct {
		name      string
		version   int
		mutate    func(a *Attestation)
		now       time.Time
		opts      ValidateOptions
		want      error
		fragments []string
	}
	rows := []row{
		{name: "v2 valid", version: 2},
		{name: "v1 valid", version: 1},
		{name: "v2 valid with every expectation", version: 2, opts: ValidateOptions{
			AgentID: "banking-agent", CodebaseHash: HashBytes([]byte("code")), ConfigHash: HashBytes([]byte("conf")),
			VerificationKey: agent.PublicKey(), RequireV2: true}},
		{name: "bare hex codebase hash matches prefixed", version: 2,
			opts: ValidateOptions{CodebaseHash: strings.ToUpper(strings.TrimPrefix(HashBytes([]byte("code")), HashPrefix))}},
		{name: "expired", version: 2, now: t0.Add(24 * time.Hour), want: ErrExpired, fragments: []string{"expired at 2026-01-26T10:00:00.123456Z"}},
		{name: "not yet valid", version: 2, now: t0.Add(-2 * time.Minute), want: ErrNotYetValid},
		{name: "timestamp ahead within skew", version: 2, now: t0.Add(-30 * time.Second)},
		{name: "unknown signing key", version: 2, mutate: func(a *Attestation) { a.SigningKeyID = "rogue" }, want: ErrUnknownSigningKey, fragments: []string{`"rogue"`}},
		{name: "v2 agent id edited", version: 2, mutate: func(a *Attestation) { a.AgentID = "evil-agent" }, want: ErrBadSignature},
		{name: "v2 expires_at moved", version: 2, mutate: func(a *Attestation) { a.ExpiresAt = "2027-01-26T10:00:00Z" }, want: ErrBadSignature},
		{name: "v2 verification key swapped", version: 2, mutate: func(a *Attestation) { a.VerificationKey = FormatPublicKey(other.PublicKey()) }, want: ErrBadSignature},
		{name: "v2 unknown member added after signing", version: 2, mutate: func(a *Attestation) {
			a.Extra = map[string]json.RawMessage{"scope": json.RawMessage(`"admin"`)}
		}, want: ErrBadSignature},
		{name: "v2 unknown member signed", version: 2, mutate: func(a *Attestation) {
			a.Extra = map[string]json.RawMessage{"scope": json.RawMessage(`"admin"`)}
			resign(a)
		}},
		{name: "v2 signed by another key", version: 2, mutate: func(a *Attestation) {
			msg, _ := a.signingInput()
			sig, _ := other.sign(msg)
			a.Signature = b64.EncodeToString(sig)
		}, want: ErrBadSignature},
		{name: "v1 agent id edited", version: 1, mutate: func(a *Attestation) { a.AgentID = "evil-agent" }, want: ErrBadSignature},
		{name: "v1 copied to another agent", version: 1, opts: ValidateOptions{AgentID: "evil-agent"}, want: ErrAgentMismatch,
			fragments: []string{`is for "banking-agent", not "evil-agent"`}},
		{name: "v1 expires_at moved, within max age", version: 1, mutate: func(a *Attestation) { a.ExpiresAt = "2030-01-01T00:00:00Z" }},
		{name: "v1 expires_at moved, past max age", version: 1, mutate: func(a *Attestation) { a.ExpiresAt = "2030-01-01T00:00:00Z" },
			now: t0.Add(25 * time.Hour), want: ErrTooOld},
		{name: "v1 shorter max age", version: 1, now: t0.Add(2 * time.Hour), opts: ValidateOptions{MaxAge: time.Hour}, want: ErrTooOld},
		{name: "v1 refused when v2 required", version: 1, opts: ValidateOptions{RequireV2: true}, want: ErrUnsupportedVersion},
		{name: "v1 binds no key", version: 1, opts: ValidateOptions{VerificationKey: agent.PublicKey()}, want: ErrKeyMismatch},
		{name: "v2 other agent key expected", version: 2, opts: ValidateOptions{VerificationKey: other.PublicKey()}, want: ErrKeyMismatch},
		{name: "codebase mismatch", version: 2, opts: ValidateOptions{CodebaseHash: HashBytes([]byte("hacked"))}, want: ErrCodebaseMismatch},
		{name: "config mismatch", version: 2, opts: ValidateOptions{ConfigHash: HashBytes([]byte("hacked"))}, want: ErrConfigMismatch},
		{name: "agent mismatch", version: 2, opts: ValidateOptions{AgentID: "someone-else"}, want: ErrAgentMismatch},
		{name: "signature truncated", version: 2, mutate: func(a *Attestation) {
			sig, _ := b64.DecodeString(a.Signature)
			a.Signature = b64.EncodeToString(sig[:63])
		}, want: ErrMalformed, fragments: []string{"64 bytes"}},
		{name: "signature oversized", version: 2, mutate: func(a *Attestation) {
			sig, _ := b64.DecodeString(a.Signature)
			a.Signature = b64.EncodeToString(append(sig, 0))
		}, want: ErrMalformed},
		{name: "signature without padding", version: 2, mutate: func(a *Attestation) { a.Signature = strings.TrimRight(a.Signature, "=") }, want: ErrMalformed},
		{name: "signature with extra padding", version: 2, mutate: func(a *Attestation) { a.Signature += "=" }, want: ErrMalformed},
		{name: "signature non-canonical trailing bits", version: 2, mutate: func(a *Attestation) {
			// 64 bytes end in "xw==": the last character carries 4 unused
			// bits; flipping one gives another text for the same bytes.
			s := []byte(a.Signature)
			i := len(s) - 3
			s[i] = b64chars[strings.IndexByte(b64chars, s[i])^1]
			a.Signature = string(s)
		}, want: ErrMalformed},
		{name: "signature base64url alphabet", version: 2, mutate: func(a *Attestation) {
			a.Signature = strings.NewReplacer("+", "-", "/", "_").Replace(a.Signature)
			if !strings.ContainsAny(a.Signature, "-_") {
				a.Signature = "-" + a.Signature[1:]
			}
		}, want: ErrMalformed},
		{name: "signature empty", version: 2, mutate: func(a *Attestation) { a.Signature = "" }, want: ErrMalformed},
		{name: "agent id missing", version: 2, mutate: func(a *Attestation) { a.AgentID = "" }, want: ErrMalformed, fragments: []string{"agent_id is missing"}},
		{name: "v1 agent id with colon", version: 1, mutate: func(a *Attestation) { a.AgentID = "a:b" }, want: ErrMalformed, fragments: []string{"':'"}},
		{name: "codebase hash not a hash", version: 2, mutate: func(a *Attestation) { a.CodebaseHash = "abc123" }, want: ErrMalformed, fragments: []string{"codebase_hash"}},
		{name: "timestamp not UTC", version: 2, mutate: func(a *Attestation) { a.Timestamp = "2026-01-25T10:00:00+01:00" }, want: ErrMalformed, fragments: []string{"timestamp"}},
		{name: "expires before timestamp", version: 2, mutate: func(a *Attestation) { a.ExpiresAt = "2026-01-24T10:00:00Z" }, want: ErrMalformed, fragments: []string{"not after"}},
		{name: "v2 verification key missing", version: 2, mutate: func(a *Attestation) { a.VerificationKey = "" }, want: ErrMalformed, fragments: []string{"verification_key"}},
		{name: "v2 verification key wrong length", version: 2, mutate: func(a *Attestation) {
			a.VerificationKey = PublicKeyPrefix + b64.EncodeToString(make([]byte, 31))
		}, want: ErrMalformed, fragments: []string{"31 bytes"}},
		{name: "unsupported version", version: 2, mutate: func(a *Attestation) { a.SignatureVersion = 3 }, want: ErrUnsupportedVersion},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			a := newRecord(t, cp, r.version, agent.PublicKey())
			if r.mutate != nil {
				r.mutate(a)
			}
			now := r.now
			if now.IsZero() {
				now = t0.Add(time.Hour)
			}
			res, err := val.ValidateAt(a, now, r.opts)
			wantErr(t, err, r.want, r.fragments...)
			if r.want != nil {
				if !reflect.DeepEqual(res, Validated{}) {
					t.Fatalf("failure returned a non-zero result %+v", res)
				}
				return
			}
			if res.AgentID != a.AgentID || res.Version != r.version {
				t.Fatalf("result = %+v", res)
			}
			if (r.version == 2) != (res.VerificationKey != nil) {
				t.Fatalf("verification key %v for v%d", res.VerificationKey, r.version)
			}
		})
	}
}

const b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func TestValidatorZeroValueAndClock(t *testing.T) {
	cp := testKey(t, "control plane")
	a := newRecord(t, cp, 2, testKey(t, "agent").PublicKey())
	var zero Validator
	_, err := zero.ValidateAt(a, t0, ValidateOptions{})
	wantErr(t, err, ErrUnknownSigningKey)
	_, err = zero.ValidateAt(nil, t0, ValidateOptions{})
	wantErr(t, err, ErrMalformed)

	v := &Validator{Clock: func() time.Time { return t0.Add(48 * time.Hour) }}
	if err := v.AddTrustedKey("cp", cp.PublicKey()); err != nil {
		t.Fatal(err)
	}
	_, err = v.Validate(a, ValidateOptions{})
	wantErr(t, err, ErrExpired) // the injected clock decides
	v.Clock = func() time.Time { return t0 }
	if _, err := v.Validate(a, ValidateOptions{}); err != nil {
		t.Fatal(err)
	}
	v.RemoveTrustedKey("cp")
	_, err = v.Validate(a, ValidateOptions{})
	wantErr(t, err, ErrUnknownSigningKey)

	wantErr(t, v.AddTrustedKey("cp", make([]byte, 31)), ErrInvalidKey)
	wantErr(t, v.AddTrustedKey("", cp.PublicKey()), ErrMalformed)
}

func TestDecodeAttestation(t *testing.T) {
	valid := `{"agent_id":"a","codebase_hash":"x","config_hash":"y","signature":"s","signing_key_id":"k","timestamp":"t","expires_at":"e"}`
	rows := []struct {
		name      string
		in        string
		want      error
		fragments []string
	}{
		{"valid", valid, nil, nil},
		{"valid v2 with extra members", `{"agent_id":"a","signature_version":2,"future":{"n":[1,2]}}`, nil, nil},
		{"duplicate member", `{"agent_id":"a","agent_id":"b"}`, ErrMalformed, []string{"duplicate key"}},
		{"nested duplicate member", `{"x":{"k":1,"k":2}}`, ErrMalformed, []string{"duplicate key"}},
		{"not an object", `["agent_id"]`, ErrMalformed, []string{"not a JSON object"}},
		{"null", `null`, ErrMalformed, nil},
		{"trailing data", valid + `{}`, ErrMalformed, nil},
		{"number for a string", `{"agent_id":1}`, ErrMalformed, []string{"agent_id must be a string"}},
		{"null for a string", `{"timestamp":null}`, ErrMalformed, []string{"timestamp must be a string"}},
		{"invalid UTF-8", "{\"agent_id\":\"\xff\"}", ErrMalformed, nil},
		{"lone surrogate", `{"agent_id":"\ud800"}`, ErrMalformed, nil},
		{"signature_version 3", `{"signature_version":3}`, ErrUnsupportedVersion, []string{`"3"`}},
		{"signature_version string", `{"signature_version":"2"}`, ErrUnsupportedVersion, nil},
		{"signature_version 2.0", `{"signature_version":2.0}`, ErrUnsupportedVersion, nil},
		{"oversized", `{"agent_id":"` + strings.Repeat("a", MaxAttestationBytes) + `"}`, ErrMalformed, []string{"limit"}},
		{"long field", `{"agent_id":"` + strings.Repeat("a", maxFieldLen+1) + `"}`, ErrMalformed, []string{"longer than"}},
		{"too many unknown members", "{" + manyMembers(maxExtraMembers+1) + "}", ErrMalformed, []string{"unknown members"}},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			a, err := DecodeAttestation([]byte(r.in))
			wantErr(t, err, r.want, r.fragments...)
			if r.want != nil && a != nil {
				t.Fatal("failure returned a record")
			}
		})
	}
}

func manyMembers(n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = `"m` + strings.Repeat("x", i) + `":1`
	}
	return strings.Join(parts, ",")
}

func TestAttestationRoundTrip(t *testing.T) {
	a := newRecord(t, testKey(t, "cp"), 2, testKey(t, "agent").PublicKey())
	a.Extra = map[string]json.RawMessage{"b": json.RawMessage(`[1, 2]`), "a": json.RawMessage(`"<&>"`)}
	data, err := a.MarshalJSON() // json.Marshal would HTML-escape "<&>"
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(data), `{"agent_id":`) || !strings.HasSuffix(string(data), `"a":"<&>","b":[1,2]}`) {
		t.Fatalf("unexpected layout: %s", data)
	}
	var back Attestation
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	back.Extra["b"] = json.RawMessage(`[1, 2]`) // compacted on the way out
	if !reflect.DeepEqual(&back, a) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, *a)
	}
	a.Extra = map[string]json.RawMessage{"agent_id": json.RawMessage(`"x"`)}
	_, err = json.Marshal(a)
	wantErr(t, err, ErrMalformed, "shadows")
}

func TestCreateAttestation(t *testing.T) {
	cp := testKey(t, "cp")
	agent := testKey(t, "agent").PublicKey()
	good := Claims{AgentID: "a", CodebaseHash: HashBytes(nil), ConfigHash: HashBytes(nil), VerificationKey: agent}
	rows := []struct {
		name   string
		key    PrivateKey
		keyID  string
		claims func(c *Claims)
		opts   AttestationOptions
		want   error
	}{
		{name: "v2 default", key: cp, keyID: "cp"},
		{name: "v1", key: cp, keyID: "cp", claims: func(c *Claims) { c.VerificationKey = nil }, opts: AttestationOptions{Version: 1}},
		{name: "zero key", keyID: "cp", want: ErrNoKey},
		{name: "no key id", key: cp, want: ErrMalformed},
		{name: "v2 without agent key", key: cp, keyID: "cp", claims: func(c *Claims) { c.VerificationKey = nil }, want: ErrInvalidKey},
		{name: "v1 with agent key", key: cp, keyID: "cp", opts: AttestationOptions{Version: 1}, want: ErrMalformed},
		{name: "version 3", key: cp, keyID: "cp", opts: AttestationOptions{Version: 3}, want: ErrUnsupportedVersion},
		{name: "bad codebase hash", key: cp, keyID: "cp", claims: func(c *Claims) { c.CodebaseHash = "deadbeef" }, want: ErrMalformed},
		{name: "no agent id", key: cp, keyID: "cp", claims: func(c *Claims) { c.AgentID = "" }, want: ErrMalformed},
		{name: "control character in agent id", key: cp, keyID: "cp", claims: func(c *Claims) { c.AgentID = "a\nb" }, want: ErrMalformed},
		{name: "negative ttl", key: cp, keyID: "cp", opts: AttestationOptions{TTL: -time.Hour}, want: ErrMalformed},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			c := good
			if r.claims != nil {
				r.claims(&c)
			}
			r.opts.Now = t0
			a, err := CreateAttestation(r.key, r.keyID, c, r.opts)
			wantErr(t, err, r.want)
			if err == nil && a.ExpiresAt != "2026-01-26T10:00:00.123456Z" {
				t.Fatalf("expires_at = %s", a.ExpiresAt)
			}
		})
	}
}

func TestFormatTimestamp(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2026, 1, 25, 10, 0, 0, 0, time.UTC), "2026-01-25T10:00:00Z"},
		{time.Date(2026, 1, 25, 10, 0, 0, 123456789, time.UTC), "2026-01-25T10:00:00.123456Z"},
		{time.Date(2026, 1, 25, 11, 0, 0, 1000, time.FixedZone("x", 3600)), "2026-01-25T10:00:00.000001Z"},
	} {
		if got := formatTimestamp(tc.in); got != tc.want {
			t.Errorf("formatTimestamp(%v) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

func TestValidatorTrustedKeys(t *testing.T) {
	k := testKey(t, "cp").PublicKey()
	v, err := NewValidator(map[string]ed25519.PublicKey{"a": k})
	if err != nil {
		t.Fatal(err)
	}
	keys := v.TrustedKeys()
	keys["b"] = k // a copy: the validator is unchanged
	if _, ok := v.TrustedKey("b"); ok || len(v.TrustedKeys()) != 1 {
		t.Fatal("TrustedKeys exposed the validator's map")
	}
	if _, err := NewValidator(map[string]ed25519.PublicKey{"a": k[:16]}); err == nil {
		t.Fatal("short key accepted")
	}
}
