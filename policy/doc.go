// Package policy is the decision engine: for each request it returns exactly
// one decision — allow, warn or block — from the built-in block rules, the
// operator's CEL rules and the built-in warnings, in the fixed order of
// PROTOCOL §3, and says whether a request that goes ahead is quarantined.
//
// The engine is built once (New compiles every rule, so a bad rule stops
// start-up) and is safe for concurrent use. It does no I/O: the caller
// supplies the target's manifest, the authenticated caller, reputations and
// the sensitive kinds the detector found.
package policy
