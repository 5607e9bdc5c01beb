package recorder

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// The line format. A record is one line:
//
//	{"seq":N,<body>,"prev_hash":"<64 hex>","hash":"<64 hex>"}\n
//
// and its canonical bytes (what "hash" is the SHA-256 of) are the line without
// `,"hash":"<64 hex>"` and without the newline. The encoder below writes
// exactly what encoding/json writes for Record with SetEscapeHTML(false); the
// tests hold it to that.
const (
	hashHexLen = 2 * sha256.Size
	linePrefix = `{"seq":`
	prevKey    = `,"prev_hash":"`
	hashKey    = `","hash":"`
	lineEnd    = `"}`
	// frameMin is the shortest possible line (without newline).
	frameMin = len(linePrefix) + 1 + len(prevKey) + hashHexLen + len(hashKey) + hashHexLen + len(lineEnd)
)

// zeroHash is the prev_hash of the first record of a chain.
var zeroHash = [hashHexLen]byte{
	'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0',
	'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0',
	'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0',
	'0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0', '0',
}

// appendBody appends the members between "seq" and "prev_hash" — from
// `,"kind":` to the last present member — validating as it goes: payload
// must be valid JSON (it is compacted, so a line never holds a raw newline),
// details a JSON object, the time within years 0-9999 (it is written in UTC),
// latency finite. Strings are made valid UTF-8 the way encoding/json does
// (each invalid byte becomes U+FFFD), so what is written decodes and
// re-encodes to the same bytes.
func appendBody(dst []byte, r *Record) ([]byte, error) {
	dst = append(dst, `,"kind":`...)
	dst = appendString(dst, string(r.Kind))
	dst = append(dst, `,"trace_id":`...)
	dst = appendString(dst, r.TraceID)
	t := r.Time.UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return dst, invalidf("time %d is outside years 0-9999", y)
	}
	dst = append(dst, `,"time":"`...)
	dst = t.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","agent_id":`...)
	dst = appendString(dst, r.AgentID)
	if r.CallerID != "" {
		dst = append(dst, `,"caller_id":`...)
		dst = appendString(dst, r.CallerID)
	}
	if r.Authenticated {
		dst = append(dst, `,"authenticated":true`...)
	}
	if r.Attested {
		dst = append(dst, `,"attested":true`...)
	}
	if r.Decision != "" {
		dst = append(dst, `,"decision":`...)
		dst = appendString(dst, r.Decision)
	}
	if len(r.Reasons) > 0 {
		dst = append(dst, `,"reasons":[`...)
		for i, s := range r.Reasons {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, s)
		}
		dst = append(dst, ']')
	}
	var err error
	if len(r.Payload) > 0 {
		dst = append(dst, `,"payload":`...)
		if r.PayloadValid {
			dst, err = appendCompactTrusted(dst, r.Payload)
		} else {
			dst, err = appendCompact(dst, r.Payload)
		}
		if err != nil {
			return dst, invalidf("payload: %w", err)
		}
	}
	if r.Status != 0 {
		dst = append(dst, `,"status":`...)
		dst = strconv.AppendInt(dst, int64(r.Status), 10)
	}
	if r.LatencyMs != 0 {
		if math.IsNaN(r.LatencyMs) || math.IsInf(r.LatencyMs, 0) {
			return dst, invalidf("latency_ms %v is not a finite number", r.LatencyMs)
		}
		dst = append(dst, `,"latency_ms":`...)
		dst = appendFloat(dst, r.LatencyMs)
	}
	if len(r.Details) > 0 {
		dst = append(dst, `,"details":`...)
		start := len(dst)
		if dst, err = appendCompact(dst, r.Details); err != nil {
			return dst, invalidf("details: %w", err)
		}
		if dst[start] != '{' {
			return dst, invalidf("details: not a JSON object")
		}
	}
	return dst, nil
}

// appendCompact appends src with insignificant white space removed, failing
// on invalid JSON.
func appendCompact(dst, src []byte) ([]byte, error) {
	buf := bytes.NewBuffer(dst)
	if err := json.Compact(buf, src); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return dst, errors.New("invalid JSON: " + se.Error())
		}
		return dst, errors.New("invalid JSON")
	}
	return buf.Bytes(), nil
}

// errTrusted is what appendCompactTrusted refuses: bytes that no JSON parser
// accepts and that would break the line format.
var errTrusted = errors.New("flagged valid but not JSON: a control character, an unterminated string or nothing but white space")

// appendCompactTrusted appends src, which the caller vouches is one valid
// JSON value, without insignificant white space, the way json.Compact does
// but without validating the grammar. It refuses only what would break a
// line: a byte below 0x20 inside a string (valid JSON escapes those), an
// unterminated string, or an empty value. Outside strings it drops space,
// tab, CR and LF, and refuses any other control byte.
func appendCompactTrusted(dst, src []byte) ([]byte, error) {
	start, i, n := len(dst), 0, len(src)
	from := 0
	for i < n {
		c := src[i]
		switch {
		case c == '"':
			i++
			for {
				if i >= n {
					return dst[:start], errTrusted
				}
				c = src[i]
				if c == '"' {
					break
				}
				if c < 0x20 {
					return dst[:start], errTrusted
				}
				if c == '\\' {
					if i+1 >= n || src[i+1] < 0x20 {
						return dst[:start], errTrusted
					}
					i++
				}
				i++
			}
			i++
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			dst = append(dst, src[from:i]...)
			i++
			from = i
		case c < 0x20:
			return dst[:start], errTrusted
		default:
			i++
		}
	}
	dst = append(dst, src[from:]...)
	if len(dst) == start {
		return dst, errTrusted
	}
	return dst, nil
}

// appendString appends s as a JSON string the way encoding/json does with
// HTML escaping off, except that an invalid UTF-8 byte becomes the raw
// U+FFFD character rather than the escape \ufffd, so that decoding and
// re-encoding gives the same bytes.
func appendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\uFFFD"...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendFloat appends f the way encoding/json writes a float64.
func appendFloat(dst []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendLine appends the whole line of a record: seq, the pre-encoded body,
// prev_hash and hash, and a newline. It returns the hash.
func appendLine(dst []byte, seq uint64, body []byte, prev *[hashHexLen]byte) ([]byte, [hashHexLen]byte) {
	start := len(dst)
	dst = append(dst, linePrefix...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, body...)
	dst = append(dst, prevKey...)
	dst = append(dst, prev[:]...)
	dst = append(dst, '"')
	h := canonicalHash(dst[start:])
	dst = append(dst, hashKey[1:]...)
	dst = append(dst, h[:]...)
	dst = append(dst, lineEnd...)
	dst = append(dst, '\n')
	return dst, h
}

// canonicalHash returns the hex SHA-256 of head+"}", where head is a line up
// to and including the closing quote of prev_hash.
func canonicalHash(head []byte) [hashHexLen]byte {
	d := sha256.New()
	d.Write(head)
	d.Write([]byte{'}'})
	var sum [sha256.Size]byte
	var out [hashHexLen]byte
	hex.Encode(out[:], d.Sum(sum[:0]))
	return out
}

// frame is what the fixed parts of a line say, without decoding JSON.
type frame struct {
	seq  uint64
	prev [hashHexLen]byte
	hash [hashHexLen]byte
	// hashOK: hash equals the SHA-256 of the canonical bytes.
	hashOK bool
}

// errFrame is the reason a line is not a record line.
var errFrame = errors.New("not a record line")

// parseFrame checks the fixed parts of line (without its newline) and
// recomputes the hash. It never decodes the JSON between them.
func parseFrame(line []byte) (frame, error) {
	var f frame
	if len(line) < frameMin || !bytes.HasPrefix(line, []byte(linePrefix)) ||
		!bytes.HasSuffix(line, []byte(lineEnd)) {
		return f, errFrame
	}
	i := len(linePrefix)
	j := i
	for j < len(line) && line[j] >= '0' && line[j] <= '9' {
		j++
	}
	if j == i || j-i > 20 || (line[i] == '0' && j-i > 1) || line[j] != ',' {
		return f, errFrame
	}
	seq, err := strconv.ParseUint(string(line[i:j]), 10, 64)
	if err != nil {
		return f, errFrame
	}
	f.seq = seq
	end := len(line) - len(lineEnd)
	hashStart := end - hashHexLen
	prevEnd := hashStart - len(hashKey)
	prevStart := prevEnd - hashHexLen
	if prevStart-len(prevKey) < j ||
		string(line[hashStart-len(hashKey):hashStart]) != hashKey ||
		string(line[prevStart-len(prevKey):prevStart]) != prevKey ||
		!lowerHex(line[hashStart:end]) || !lowerHex(line[prevStart:prevEnd]) {
		return f, errFrame
	}
	copy(f.prev[:], line[prevStart:prevEnd])
	copy(f.hash[:], line[hashStart:end])
	f.hashOK = canonicalHash(line[:prevEnd+1]) == f.hash
	return f, nil
}

// lowerHex reports whether b is all lowercase hex digits.
func lowerHex(b []byte) bool {
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// decodeLine decodes a record line (without newline) and checks that it is in
// canonical form: re-encoding the decoded record gives the same bytes. The
// frame (and so the hash) must have been checked by parseFrame.
func decodeLine(line []byte, r *Record) error {
	*r = Record{}
	if err := json.Unmarshal(line, r); err != nil {
		return errors.New("not valid JSON: " + err.Error())
	}
	if !validKind(r.Kind) || (r.TraceID != "" && !ValidTraceID(r.TraceID)) {
		return errors.New("bad kind or trace id")
	}
	if len(r.PrevHash) != hashHexLen || len(r.Hash) != hashHexLen {
		return errors.New("bad hash member")
	}
	var prev [hashHexLen]byte
	copy(prev[:], r.PrevHash)
	body, err := appendBody(make([]byte, 0, len(line)), r)
	if err != nil {
		return errors.New("not encodable: " + err.Error())
	}
	again, h := appendLine(make([]byte, 0, len(line)+1), r.Seq, body, &prev)
	if !bytes.Equal(again[:len(again)-1], line) || string(h[:]) != r.Hash {
		return errors.New("not in canonical form")
	}
	return nil
}
