package sidecar

import (
	"fmt"
)

// MaxTraceIDLen is the longest trace id accepted in X-Agent-Trace-ID.
const MaxTraceIDLen = 128

// validTraceID reports why id is not a valid trace id: 1–128 characters of
// [A-Za-z0-9._:-]. It returns "" when id is valid.
func validTraceID(id string) string {
	if len(id) > MaxTraceIDLen {
		return fmt.Sprintf("X-Agent-Trace-ID is %d characters long; at most %d of [A-Za-z0-9._:-] are allowed", len(id), MaxTraceIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == ':', c == '-':
		default:
			return fmt.Sprintf("X-Agent-Trace-ID holds %q at position %d; only 1–%d characters of [A-Za-z0-9._:-] are allowed", rune(c), i, MaxTraceIDLen)
		}
	}
	return ""
}
