// Package layout holds the test that keeps iatp's dependencies pointing one
// way: cmd → internal/cli → sidecar → policy, recorder, reputation,
// identity → manifest, detect.
package layout
