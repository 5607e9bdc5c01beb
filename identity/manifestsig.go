package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/gowebpki/jcs"
)

// Manifest signature limits.
const (
	// MaxManifestBytes bounds a manifest document given to SignManifest or
	// VerifyManifest.
	MaxManifestBytes = 1 << 20
	// MaxManifestSignatures bounds the entries of "signatures".
	MaxManifestSignatures = 16

	signaturesMember = "signatures"
	jwsTyp           = "JOSE"
)

// manifestSignature is one entry of "signatures": a detached JWS in
// flattened form, without payload.
type manifestSignature struct {
	Protected string `json:"protected"`
	Signature string `json:"signature"`
}

// jsonMember is one top-level member of a JSON object, located in the
// document: doc[start:end] is `"name": value`, doc[valueStart:end] the value.
type jsonMember struct {
	name                   string
	start, valueStart, end int
}

// parsedDoc is a manifest document split into its top-level members.
type parsedDoc struct {
	doc     []byte
	open    int // offset of '{'
	members []jsonMember
	sigs    int // index of the "signatures" member, -1 if none
}

// parseManifestDoc validates doc as one JSON object (no duplicate names at
// any depth, valid UTF-8) and locates its top-level members.
func parseManifestDoc(doc []byte) (*parsedDoc, error) {
	if len(doc) > MaxManifestBytes {
		return nil, fmt.Errorf("%w: manifest is %d bytes, limit %d", ErrMalformed, len(doc), MaxManifestBytes)
	}
	if _, err := jcs.Transform(doc); err != nil {
		return nil, fmt.Errorf("%w: manifest is not valid JSON: %s", ErrMalformed, lowerFirst(err.Error()))
	}
	pd := &parsedDoc{doc: doc, sigs: -1}
	i := skipWS(doc, 0)
	if i >= len(doc) || doc[i] != '{' {
		return nil, fmt.Errorf("%w: manifest is not a JSON object", ErrMalformed)
	}
	pd.open = i
	i = skipWS(doc, i+1)
	if doc[i] == '}' {
		return pd, nil
	}
	for {
		start := i
		keyEnd := valueEnd(doc, i)
		var name string
		if err := json.Unmarshal(doc[start:keyEnd], &name); err != nil {
			return nil, fmt.Errorf("%w: manifest member name: %v", ErrMalformed, err)
		}
		i = skipWS(doc, keyEnd) + 1 // past ':'
		vs := skipWS(doc, i)
		end := valueEnd(doc, vs)
		if name == signaturesMember {
			pd.sigs = len(pd.members)
		}
		pd.members = append(pd.members, jsonMember{name: name, start: start, valueStart: vs, end: end})
		i = skipWS(doc, end)
		if doc[i] == '}' {
			return pd, nil
		}
		i = skipWS(doc, i+1) // past ','
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the offset just past the JSON value starting at i, in a
// document already known to be valid JSON.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return len(b)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = valueEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	default:
		j := i
		for j < len(b) && !strings.ContainsRune(",}] \t\r\n", rune(b[j])) {
			j++
		}
		return j
	}
}

// payload returns the RFC 8785 canonical JSON of the document without its
// "signatures" member: what every manifest signature covers.
func (pd *parsedDoc) payload() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	n := 0
	for i, m := range pd.members {
		if i == pd.sigs {
			continue
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		buf.Write(pd.doc[m.start:m.end])
		n++
	}
	buf.WriteByte('}')
	out, err := jcs.Transform(buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("%w: canonical manifest: %s", ErrMalformed, lowerFirst(err.Error()))
	}
	return out, nil
}

// signatures decodes the "signatures" member; nil when there is none.
func (pd *parsedDoc) signatures() ([]json.RawMessage, error) {
	if pd.sigs < 0 {
		return nil, nil
	}
	m := pd.members[pd.sigs]
	raw := pd.doc[m.valueStart:m.end]
	if raw[0] != '[' {
		return nil, fmt.Errorf("%w: signatures must be an array", ErrMalformed)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("%w: signatures: %v", ErrMalformed, err)
	}
	if len(entries) > MaxManifestSignatures {
		return nil, fmt.Errorf("%w: more than %d signatures", ErrMalformed, MaxManifestSignatures)
	}
	return entries, nil
}

// CanonicalManifest returns the bytes a manifest signature covers: the
// RFC 8785 canonical JSON of doc without its "signatures" member.
func CanonicalManifest(doc []byte) ([]byte, error) {
	pd, err := parseManifestDoc(doc)
	if err != nil {
		return nil, err
	}
	return pd.payload()
}

// SignManifest signs the manifest document doc (raw JSON) with key, as a
// detached JWS (RFC 7515, alg EdDSA, kid, typ "JOSE") over
// CanonicalManifest(doc), and returns doc with the signature appended to
// its "signatures" array, which is created if missing. An existing entry
// with the same kid is replaced; entries of other kids are kept as they
// are, so several keys can sign side by side during a key rotation. The
// rest of doc is returned byte for byte.
func SignManifest(doc []byte, key PrivateKey, kid string) ([]byte, error) {
	if key.IsZero() {
		return nil, ErrNoKey
	}
	if err := checkID("kid", kid); err != nil {
		return nil, err
	}
	pd, err := parseManifestDoc(doc)
	if err != nil {
		return nil, err
	}
	existing, err := pd.signatures()
	if err != nil {
		return nil, err
	}
	payload, err := pd.payload()
	if err != nil {
		return nil, err
	}
	opts := (&jose.SignerOptions{}).WithType(jwsTyp).WithHeader(jose.HeaderKey("kid"), kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key.ed25519Key()}, opts)
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	compact, err := jws.DetachedCompactSerialize()
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	protected, sig, ok := strings.Cut(compact, "..")
	if !ok {
		return nil, fmt.Errorf("sign manifest: unexpected detached JWS form")
	}

	var arr bytes.Buffer
	arr.WriteByte('[')
	for i, e := range existing {
		entry, h, err := decodeEntry(i, e)
		if err != nil {
			return nil, err
		}
		if h.kid == kid {
			continue // replaced below
		}
		if arr.Len() > 1 {
			arr.WriteByte(',')
		}
		b, err := json.Marshal(entry)
		if err != nil {
			return nil, fmt.Errorf("sign manifest: %w", err)
		}
		arr.Write(b)
	}
	if arr.Len() > 1 {
		arr.WriteByte(',')
	}
	entry, err := json.Marshal(manifestSignature{Protected: protected, Signature: sig})
	if err != nil {
		return nil, fmt.Errorf("sign manifest: %w", err)
	}
	arr.Write(entry)
	arr.WriteByte(']')

	var out bytes.Buffer
	switch {
	case pd.sigs >= 0:
		m := pd.members[pd.sigs]
		out.Write(doc[:m.valueStart])
		out.Write(arr.Bytes())
		out.Write(doc[m.end:])
	case len(pd.members) > 0:
		last := pd.members[len(pd.members)-1].end
		out.Write(doc[:last])
		out.WriteString(`,"signatures":`)
		out.Write(arr.Bytes())
		out.Write(doc[last:])
	default:
		out.Write(doc[:pd.open+1])
		out.WriteString(`"signatures":`)
		out.Write(arr.Bytes())
		out.Write(doc[pd.open+1:])
	}
	return out.Bytes(), nil
}

// protectedHeader is the checked content of a JWS protected header.
type protectedHeader struct {
	kid string
}

// parseProtectedHeader decodes a protected header and allows only alg
// (which must be EdDSA), kid (required) and typ (which must be "JOSE" when
// present). crit, b64, jwk, jku and every other member are refused.
func parseProtectedHeader(protected string) (protectedHeader, error) {
	raw, err := b64url.DecodeString(protected)
	if err != nil {
		return protectedHeader{}, fmt.Errorf("%w: protected header is not unpadded base64url", ErrMalformed)
	}
	if _, err := jcs.Transform(raw); err != nil {
		return protectedHeader{}, fmt.Errorf("%w: protected header is not valid JSON", ErrMalformed)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return protectedHeader{}, fmt.Errorf("%w: protected header is not a JSON object", ErrMalformed)
	}
	var h struct{ alg, kid, typ string }
	for name, value := range members {
		var dst *string
		switch name {
		case "alg":
			dst = &h.alg
		case "kid":
			dst = &h.kid
		case "typ":
			dst = &h.typ
		default:
			return protectedHeader{}, fmt.Errorf("%w: protected header member %q is not allowed", ErrMalformed, truncate(name, 32))
		}
		if len(value) == 0 || value[0] != '"' || json.Unmarshal(value, dst) != nil {
			return protectedHeader{}, fmt.Errorf("%w: protected header %s must be a string", ErrMalformed, name)
		}
	}
	if h.alg != string(jose.EdDSA) {
		return protectedHeader{}, fmt.Errorf("%w: alg %q, only EdDSA is allowed", ErrUnsupportedAlgorithm, truncate(h.alg, 32))
	}
	if _, ok := members["typ"]; ok && h.typ != jwsTyp {
		return protectedHeader{}, fmt.Errorf("%w: typ %q, want %q", ErrMalformed, truncate(h.typ, 32), jwsTyp)
	}
	if err := checkID("kid", h.kid); err != nil {
		return protectedHeader{}, err
	}
	return protectedHeader{kid: h.kid}, nil
}

// decodeEntry decodes and checks signatures[i]: an object of exactly
// "protected" and "signature", a header parseProtectedHeader accepts and a
// signature of 64 bytes in unpadded base64url.
func decodeEntry(i int, e json.RawMessage) (manifestSignature, protectedHeader, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(e, &members); err != nil || members == nil {
		return manifestSignature{}, protectedHeader{}, fmt.Errorf("%w: signatures[%d] is not an object", ErrMalformed, i)
	}
	for name, value := range members {
		if name != "protected" && name != "signature" {
			return manifestSignature{}, protectedHeader{}, fmt.Errorf("%w: signatures[%d]: member %q is not allowed", ErrMalformed, i, truncate(name, 32))
		}
		if len(value) == 0 || value[0] != '"' {
			return manifestSignature{}, protectedHeader{}, fmt.Errorf("%w: signatures[%d]: %s must be a string", ErrMalformed, i, name)
		}
	}
	var entry manifestSignature
	if err := json.Unmarshal(e, &entry); err != nil {
		return manifestSignature{}, protectedHeader{}, fmt.Errorf("%w: signatures[%d]: %v", ErrMalformed, i, err)
	}
	h, err := parseProtectedHeader(entry.Protected)
	if err != nil {
		return manifestSignature{}, protectedHeader{}, fmt.Errorf("signatures[%d]: %w", i, err)
	}
	sig, err := b64url.DecodeString(entry.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return manifestSignature{}, protectedHeader{}, fmt.Errorf("%w: signatures[%d]: signature must be the unpadded base64url of %d bytes",
			ErrMalformed, i, ed25519.SignatureSize)
	}
	return entry, h, nil
}

// checkedSignature is a well-formed "signatures" entry.
type checkedSignature struct {
	kid string
	jws *jose.JSONWebSignature
}

// checkSignatures decodes and checks every entry of the document's
// "signatures"; any malformed entry fails the whole document.
func checkSignatures(pd *parsedDoc, payload []byte) ([]checkedSignature, error) {
	entries, err := pd.signatures()
	if err != nil {
		return nil, err
	}
	if len(entries) == 0 {
		return nil, fmt.Errorf("%w: manifest is not signed", ErrNoValidSignature)
	}
	out := make([]checkedSignature, 0, len(entries))
	for i, e := range entries {
		entry, h, err := decodeEntry(i, e)
		if err != nil {
			return nil, err
		}
		jws, err := jose.ParseDetached(entry.Protected+".."+entry.Signature, payload, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			return nil, fmt.Errorf("%w: signatures[%d]: %v", ErrMalformed, i, err)
		}
		out = append(out, checkedSignature{kid: h.kid, jws: jws})
	}
	return out, nil
}

// signedParts parses a signed manifest document into the canonical
// payload its signatures cover and its well-formed signature entries.
func signedParts(doc []byte) ([]byte, []checkedSignature, error) {
	pd, err := parseManifestDoc(doc)
	if err != nil {
		return nil, nil, err
	}
	payload, err := pd.payload()
	if err != nil {
		return nil, nil, err
	}
	sigs, err := checkSignatures(pd, payload)
	if err != nil {
		return nil, nil, err
	}
	return payload, sigs, nil
}

// VerifyManifest checks the signatures of a signed manifest document and
// returns the kids whose signature verified. resolve maps a kid to its
// public key; a kid it returns an error for is skipped (an unknown signer
// proves nothing, and a rotation may leave a retired key's signature
// beside the current one). It fails closed: a malformed entry anywhere, an
// algorithm other than EdDSA, or a known kid whose signature does not
// verify (the document was changed after signing) fails the whole
// document; so does a document with no verified signature
// (ErrNoValidSignature).
func VerifyManifest(doc []byte, resolve func(kid string) (ed25519.PublicKey, error)) ([]string, error) {
	if resolve == nil {
		return nil, fmt.Errorf("%w: no key resolver", ErrNoValidSignature)
	}
	payload, sigs, err := signedParts(doc)
	if err != nil {
		return nil, err
	}
	var verified []string
	for _, s := range sigs {
		pub, err := resolve(s.kid)
		if err != nil || len(pub) != ed25519.PublicKeySize {
			continue
		}
		if err := s.jws.DetachedVerify(payload, pub); err != nil {
			return nil, fmt.Errorf("%w: manifest signature by %q does not verify: the document changed after signing or the key is wrong",
				ErrBadSignature, truncate(s.kid, 64))
		}
		if !slices.Contains(verified, s.kid) {
			verified = append(verified, s.kid)
		}
	}
	if len(verified) == 0 {
		return nil, fmt.Errorf("%w: no signature by a known key", ErrNoValidSignature)
	}
	return verified, nil
}

// VerifyManifestKey returns the kids of the signatures on doc that verify
// under pub, whatever their kid: the question "did the key this identity
// names sign this document?". Signatures that do not verify under pub are
// ignored (they may be by other keys), malformed entries fail the whole
// document, and no match is ErrNoValidSignature.
func VerifyManifestKey(doc []byte, pub ed25519.PublicKey) ([]string, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: public key is %d bytes, want %d", ErrInvalidKey, len(pub), ed25519.PublicKeySize)
	}
	payload, sigs, err := signedParts(doc)
	if err != nil {
		return nil, err
	}
	var verified []string
	for _, s := range sigs {
		if err := s.jws.DetachedVerify(payload, pub); err == nil && !slices.Contains(verified, s.kid) {
			verified = append(verified, s.kid)
		}
	}
	if len(verified) == 0 {
		return nil, fmt.Errorf("%w: no signature by %s", ErrNoValidSignature, FormatPublicKey(pub))
	}
	return verified, nil
}

// errUnknownKid is what a resolver built by KeyResolver returns for a kid it
// does not know.
var errUnknownKid = errors.New("unknown kid")

// KeyResolver returns a resolver for VerifyManifest over a fixed map of kid
// to public key.
func KeyResolver(keys map[string]ed25519.PublicKey) func(kid string) (ed25519.PublicKey, error) {
	return func(kid string) (ed25519.PublicKey, error) {
		if k, ok := keys[kid]; ok {
			return k, nil
		}
		return nil, errUnknownKid
	}
}
