// Package reputation keeps the reputation of agents: exact scores, the
// events that moved them, and the snapshots peers exchange (PROTOCOL.md
// section 10).
//
// # Scores
//
// A score is kept in hundredths (Points), from 0.00 to 10.00, starting at
// the neutral 5.00. Delta gives the change of each reason and severity
// (hallucination critical/high/medium/low −2/−1/−0.5/−0.25; failure,
// timeout, error −0.5; success +0.1); the score is clamped after each event,
// so ten successes from 5.00 give exactly 6.00, trusted. Level maps a score
// to a trust level. Nothing here goes through a float: JSON numbers are read
// from their decimal text and rounded half away from zero to hundredths, so
// the Python package's 5.9999999999999964 reads as 6.00.
//
// # Store
//
// Store holds per agent the score, counts (total/positive/negative, import
// events included), the time of the last update and the last RecentEvents
// events in a ring. It is safe for concurrent use, takes its clock from
// Config, and is bounded: at most MaxAgents agents. When a new agent arrives
// at a full store, the least recently updated agent that has never had a
// negative event and stands at 5.00 or above is evicted; a slashed agent is
// never evicted, so flooding the store with fresh ids cannot wash out a
// slash. If no agent can go, the newcomer is refused with ErrStoreFull.
// Reads (Get, Score) never create agents.
//
// Memory (BenchmarkAgentMemory): an agent with one event costs about 300
// bytes, one with a full ring about 15 KB (about 145 bytes per event with a
// UUID id), plus details, at most MaxDetailsBytes per event. So a store full
// of agents seen once, as a flood of fresh ids leaves it, holds about 30 MB
// at the default MaxAgents; every agent with a full ring, about 1.5 GB; and
// full rings whose events all carry maximal details, MaxAgents ×
// RecentEvents × 4 KiB (about 40 GiB). Details come only from credentialed
// reporters, but a deployment that admits many reporters, or agents that
// each see many events, should lower MaxAgents.
//
// Events carry a unique ID. Applying an event whose ID is among the agent's
// retained events is a no-op (ErrDuplicateEvent); an ID that has left the
// ring would apply again. That window is enough for retries of one report;
// it is not a mesh-wide deduplication (see below).
//
// # Exchange
//
// Export and Import speak the Python package's snapshot format, so mixed
// meshes interoperate. Import validates the whole document first and then
// applies it atomically, merging by the lower score; an agent unknown
// locally counts as 5.00, so an import can lower scores but never raise one:
// a peer cannot inflate anyone. The import is recorded as an event of type
// "import" whose delta is the change.
//
// # Toward a mesh (not built yet)
//
// The protocol wants every sidecar to converge on the same score for the
// same set of events, whatever order they arrive in, with signed events,
// reporter weights and caps, and scores that survive restarts. What this
// package does now, and what would change:
//
//   - Now, Record applies events in arrival order, clamping as it goes. Two
//     nodes that see the same events in different orders can differ where a
//     clamp was hit. Later, the store keeps each agent's events ordered by
//     (time, id) and folds them in that order from a checkpoint (the score
//     and the (time, id) of the last folded event); an event older than the
//     newest one re-folds from the checkpoint before it. Event, with its ID,
//     Time, Type, Severity and DetectedBy, already carries what that fold and
//     a signature need, and the delta is a deterministic function of type and
//     severity, so every node computes the same one.
//   - Now, idempotency holds within the last RecentEvents events of an
//     agent. Later, the set of applied ids is kept for as long as events can
//     arrive late (a retention window), and older events are refused by time.
//   - Now, Record trusts its caller: the HTTP layer authenticates reporters.
//     Later, events from peers arrive signed; the transport verifies the
//     signature and the reporter's key before Record, and a reporter's
//     weight and per-window cap scale its delta, which changes deltaOf, not
//     the store.
//   - Now, Import merges Python score snapshots by the lower score, which is
//     idempotent and commutative on its own. Later, peers exchange events;
//     snapshot import stays for Python peers.
//   - Now, the store is in memory. Persistence fits as a journal the store
//     appends each applied event to before it answers (Record and Import
//     already take a context for it), replayed at start.
//
// The package imports no other iatp package.
package reputation
