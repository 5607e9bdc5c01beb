package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser: it must never panic, must
// return either a manifest or an error, and a manifest it accepts must
// survive the served-document round trip unchanged.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "manifests", "*"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var ve *ValidationError
			if m != nil || (!errors.As(err, &ve) && !errors.Is(err, ErrNotManifest)) {
				t.Fatalf("Parse returned %v, %v", m, err)
			}
			return
		}
		_ = m.TrustScore()
		doc, err := m.Document()
		if err != nil {
			t.Fatalf("Document: %v", err)
		}
		back, err := Parse(doc)
		if err != nil {
			t.Fatalf("Parse(Document()) failed: %v\n%s", err, doc)
		}
		m.notes, back.notes = nil, nil
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip changed the manifest:\n got  %+v\nwant %+v", back, m)
		}
	})
}
