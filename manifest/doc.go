// Package manifest reads, validates, scores and serves agent capability
// manifests.
//
// Two shapes exist in the wild and both are read into one model: the spec
// shape (identity, reversibility and privacy objects) and the legacy shape
// emitted by the widely installed Python package (top-level agent_id,
// privacy_contract, capabilities.reversibility as a string, duration strings
// such as "24h"). Document builds the one JSON document a sidecar serves at
// /.well-known/agent-manifest, which readers of either shape parse.
//
// Assess (for a document) and Manifest.Findings (for a manifest already
// built) are the one validation every reader shares: errors make a manifest
// invalid, high-risk findings mark a well-formed manifest that is unsafe to
// depend on, warnings mark doubtful claims. iatp verify, iatp scan and the
// sidecar's start-up log (Manifest.Warnings) report them in the same words.
//
// TrustScore computes the 0–10 score exactly as the Python package does, so a
// mixed mesh agrees on every number; CapTrustLevel limits a remote agent's
// claimed trust level to what it has proven.
//
// The package imports no other iatp package.
package manifest
