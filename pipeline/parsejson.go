package pipeline

import (
	"bytes"
	"encoding/json"

	"github.com/iatp/iatp/detect"
)

// parsed is the result of parseJSON.
type parsed struct {
	Scrubbed []byte
	Found    detect.Set
	Value    any
}

// parseJSON validates, scans and scrubs doc in one pass and, when value is
// set, decodes it for operator rules. The value is decoded only from a
// document the detector accepted, with numbers kept as their text.
func parseJSON(dst, doc []byte, maxDepth int, value bool) (parsed, error) {
	out, found, err := detect.ScrubJSON(dst, doc, detect.Options{MaxDepth: maxDepth})
	if err != nil {
		return parsed{}, err
	}
	p := parsed{Scrubbed: out, Found: found}
	if value {
		var v any // its own variable: &p.Value would put p on the heap on every call
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return parsed{}, err
		}
		p.Value = v
	}
	return p, nil
}
