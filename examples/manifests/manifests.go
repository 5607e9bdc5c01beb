// Package manifests embeds the example capability manifests of this
// directory, so that programs such as iatp demo use exactly the files the
// documentation shows.
package manifests

import "embed"

// Files holds every example manifest, by file name (secure_bank.json …).
//
//go:embed *.json *.yaml
var Files embed.FS
