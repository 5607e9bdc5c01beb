package manifest

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of the spec-shaped manifest. A
// test keeps it and the Go types in step.
//
//go:embed manifest.schema.json
var Schema []byte
