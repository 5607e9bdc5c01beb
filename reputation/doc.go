// Package reputation keeps the reputation of agents across a mesh of
// sidecars: exact scores, signed events, their durable store, and the
// snapshots the Python package exchanges (PROTOCOL.md section 10).
// docs/reputation.md is the operators' description of the model and its
// limits.
//
// # Scores
//
// A score is kept in hundredths (Points), from 0.00 to 10.00, starting at
// the neutral 5.00. Delta gives the change of each reason and severity
// (hallucination critical/high/medium/low −2/−1/−0.5/−0.25; failure,
// timeout, error −0.5; success +0.1). Level and TrustLevel map a score to
// a trust level with the bands BandVerifiedPartner… — the one definition
// the policy and the mesh's reporter weights share. Nothing goes through a
// float: JSON numbers are read from their decimal text, so the Python
// package's 5.9999999999999964 reads as 6.00.
//
// # Node: one member of the mesh
//
// Open returns a Node for the sidecar: its reports (Report) and the
// outcomes its egress observes (Observe, aggregated into one summary event
// per subject per interval) become events signed with the node's Ed25519
// key; events from other nodes (Apply, ApplyBatch) are accepted only with
// a valid signature by a trusted reporter key, once (by content-derived
// id), and inside MaxEventAge. A subject's score is the fold of its events
// in (time, id) order, each event's delta scaled by its reporter's
// standing and limited by that reporter's per-window budget (GainCap,
// LossCap) before clamping, so it depends only on the set of events: nodes
// holding the same events hold the same scores whatever order they came
// in. A node's reports never raise its own agent.
//
// Everything is committed (fsynced, group commit) to a bbolt database in
// the data directory before it is acknowledged, and is bounded: agents in
// memory (MaxAgents; an evicted agent with a penalty stays known, cold),
// events per reporter, subject and window (MaxEventsPerCell), events per
// agent and in all (compacted into a signed checkpoint per agent), subjects
// observed per interval. Score and Observe are the per-request calls: no
// allocation, no contended lock.
//
// Transports (package gossip for HTTP between peers, package natsmesh for
// NATS JetStream) register with AddTransport; the node hands them every
// new durable event and closes them in Close.
//
// # Store (the single-node store, kept for compatibility)
//
// Store is the in-memory store the sidecar used before the mesh: it
// applies events in arrival order and trusts its caller. It stays so the
// sidecar builds unchanged until it is wired to a Node; new code uses Node.
// Its Import validates the Python snapshot format, which Node.Import reuses.
package reputation
