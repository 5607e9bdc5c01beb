package pipeline

import "github.com/iatp/iatp/detect"

// parseJSON validates, scans and scrubs doc in one pass and, when value is
// set, builds the value operator rules see from that same pass.
func parseJSON(dst, doc []byte, maxDepth int, value bool) (detect.Parsed, error) {
	return detect.ParseJSON(dst, doc, detect.Options{MaxDepth: maxDepth, Value: value})
}
