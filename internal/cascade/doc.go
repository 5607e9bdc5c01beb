// Package cascade runs the cascade experiment: a layered mesh of agents,
// some of which hallucinate, played three times on the same seed and
// traffic — agents calling each other directly, every agent behind a real
// iatp sidecar with reputation spreading over the mesh, and the same
// without propagation — to measure how many poisoned requests reach an
// irreversible action, how many honest agents are cut off, how fast a bad
// agent is isolated and what a hop costs (docs/cascade.md).
package cascade
