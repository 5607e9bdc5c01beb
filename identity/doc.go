// Package identity gives every iatp agent a checkable identity: Ed25519 keys,
// control-plane attestations, detached JWS signatures on capability
// manifests and RFC 9421 HTTP message signatures on requests.
//
// Everything here verifies before it believes and fails closed: every
// verification function returns the zero value and an error on every failure
// path, the errors wrap exported sentinels (ErrBadSignature, ErrExpired, …)
// that callers branch on with errors.Is, and time comes from an injected
// clock or an explicit now argument.
//
// The package imports no other iatp package. The sidecar wires it in:
//
//   - keys: GenerateKey, ParsePublicKey (raw base64, "ed25519:<b64>" or PEM),
//     ReadPrivateKeyFile (refuses group/other-readable files), PrivateKey never
//     prints its secret;
//   - attestations: CreateAttestation (v2 by default, v1 for the widely
//     installed Python package), DecodeAttestation, Validator.ValidateAt;
//   - manifests: SignManifest, VerifyManifest, VerifyManifestKey over the
//     RFC 8785 canonical form of the document without "signatures";
//   - requests: RequestSigner signs, CallerVerifier authenticates the caller
//     of a request from its method, target URI, a header lookup and the body,
//     so it runs on net/http and fasthttp alike;
//   - claims capped by proof: ProveManifest computes the booleans the
//     manifest package caps a remote agent's trust level with.
package identity
