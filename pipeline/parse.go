package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/internal/wire"
)

// scrubPool recycles the buffers that hold scrubbed payloads.
var scrubPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

func (x *Exchange) releaseScrub() {
	if x.scrub != nil {
		*x.scrub = (*x.scrub)[:0]
		scrubPool.Put(x.scrub)
		x.scrub = nil
	}
}

// Parse parses the JSON body once (PROTOCOL §5: anything else is a 400):
// in the same pass the detector validates it, finds sensitive data and
// scrubs the copy that is recorded, and, when an operator rule reads the
// body, the value rules see is built from that parse.
type Parse struct {
	// MaxDepth bounds JSON nesting.
	MaxDepth int
	// Value builds x.Value for operator rules.
	Value bool
	// MaxRecordPayload bounds the recorded payload.
	MaxRecordPayload int
	// RedactForwarded forwards the scrubbed body instead of the original.
	RedactForwarded bool
	// AllowText lets a body that is not JSON go on (egress: an agent may
	// call others with any body): its text, form-decoded for a form, is
	// scanned and recorded scrubbed. An empty body is then no body.
	AllowText bool
}

// Name returns "parse".
func (Parse) Name() string { return "parse" }

// Run parses x.Body.
func (p Parse) Run(_ context.Context, x *Exchange) *Refusal {
	if p.AllowText && len(x.Body) == 0 {
		return nil
	}
	bp := scrubPool.Get().(*[]byte)
	parsed, err := parseJSON((*bp)[:0], x.Body, p.MaxDepth, p.Value)
	if err != nil {
		*bp = (*bp)[:0]
		scrubPool.Put(bp)
		form := isForm(x.ContentType)
		x.Payload = TextPayload(x.Body, form, p.MaxRecordPayload)
		if p.AllowText {
			x.found(scanText(x.Body, form), "body")
			return nil
		}
		return Refuse(http.StatusBadRequest, BadBody, "Invalid JSON payload: "+err.Error())
	}
	*bp = parsed.Scrubbed
	x.scrub = bp
	x.Payload = BoundedJSON(parsed.Scrubbed, p.MaxRecordPayload)
	x.found(parsed.Found, "body")
	x.Value = parsed.Value
	if p.RedactForwarded {
		x.Body = parsed.Scrubbed
	}
	return nil
}

func isForm(contentType string) bool {
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(contentType)), "application/x-www-form-urlencoded")
}

func (x *Exchange) found(s detect.Set, where string) {
	if s != 0 {
		x.Found |= s
		x.Where = append(x.Where, where)
	}
}

// Detect looks for sensitive data everywhere else a request carries it
// (PROTOCOL §4): the path and the query (percent-decoded, and form-decoded
// for the query), every header value but the credentials the sidecar
// consumes, and the trailers. It sets the path and query to record,
// decoded and scrubbed.
type Detect struct{}

// Name returns "detect".
func (Detect) Name() string { return "detect" }

// Run scans x.
func (Detect) Run(_ context.Context, x *Exchange) *Refusal {
	fm := detect.ScanText(bytesOf(x.Method))
	x.found(fm, "method")
	path, fp := scanPath(x.Path)
	x.found(fp, "path")
	x.RecordedPath = scrubString(path, fp)
	if q := x.RawQuery; q != "" {
		view, fq := scanQuery(q)
		x.found(fq, "query")
		x.RecordedQuery = scrubString(view, fq)
	}
	scanFields(x, x.Header, "header:")
	scanFields(x, x.Trailer, "trailer:")
	return nil
}

// scanPath scans a path as sent and percent-decoded (leniently), and
// returns the decoded view to record. Both forms count: "%34321112860366"
// decodes to thirteen digits that are no card, but a server that logs the
// path as sent keeps the fourteen after the '%', which are one.
func scanPath(p string) (string, detect.Set) {
	dec := unescape(p, false)
	found := detect.ScanText(bytesOf(dec))
	if dec != p {
		found |= detect.ScanText(bytesOf(p))
	}
	return dec, found
}

// scanQuery scans a query as sent, percent-decoded and, when it holds '+',
// form-decoded too; it returns the view to record.
func scanQuery(q string) (string, detect.Set) {
	view := unescape(q, false)
	found := detect.ScanText(bytesOf(view))
	if view != q {
		found |= detect.ScanText(bytesOf(q))
	}
	if strings.IndexByte(q, '+') >= 0 {
		view = unescape(q, true)
		found |= detect.ScanText(bytesOf(view))
	}
	return view, found
}

// recordedRequest fills the path and query to record when no Detect check
// ran (a refusal before it): decoded and scrubbed all the same.
func (x *Exchange) recordedRequest() {
	if x.RecordedPath == "" && x.Path != "" {
		p, f := scanPath(x.Path)
		x.RecordedPath = scrubString(p, f)
	}
	if x.RecordedQuery == "" && x.RawQuery != "" {
		q, f := scanQuery(x.RawQuery)
		x.RecordedQuery = scrubString(q, f)
	}
}

func scanFields(x *Exchange, f Fields, where string) {
	for _, h := range f {
		if wire.IsCredential(h.Name) || wire.Same(h.Name, wire.ContentDigest) {
			continue
		}
		s := detect.ScanText(bytesOf(h.Value))
		var sn detect.Set
		if strings.ContainsAny(h.Name, "0123456789@") {
			sn = detect.ScanText(bytesOf(h.Name))
		}
		if s|sn != 0 {
			// The place is named by the header's name, scrubbed when the
			// name itself holds the data.
			x.found(s|sn, where+scrubString(strings.ToLower(h.Name), sn))
		}
	}
}

// unescape percent-decodes s, and with form reads '+' as a space, the way
// lenient parsers do: a malformed escape is kept as it is instead of
// failing the whole text, which would leave the rest of it unscanned.
func unescape(s string, form bool) string {
	if strings.IndexByte(s, '%') < 0 && (!form || strings.IndexByte(s, '+') < 0) {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				c = byte(v)
				i += 2
			}
		} else if c == '+' && form {
			c = ' '
		}
		b = append(b, c)
	}
	return string(b)
}

// scrubString scrubs s when found says it holds anything.
func scrubString(s string, found detect.Set) string {
	if found == 0 {
		return s
	}
	out, _ := detect.ScrubText(nil, bytesOf(s))
	return string(out)
}

// bytesOf returns the bytes of s without copying. The detector only reads
// its input, so the string's immutability is kept.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// BoundedJSON returns the scrubbed JSON payload to record: itself when it
// fits in limit bytes, else a summary with its size, hash and a prefix cut
// where no value can be split (see CutSafe).
func BoundedJSON(scrubbed []byte, limit int) json.RawMessage {
	if len(scrubbed) <= limit {
		return scrubbed
	}
	return summary(scrubbed, len(scrubbed), limit)
}

func summary(scrubbed []byte, total, limit int) json.RawMessage {
	prefix := CutSafe(scrubbed, max(0, limit-256))
	for {
		b, _ := EncodeJSON(struct {
			Truncated bool   `json:"truncated"`
			Bytes     int    `json:"bytes"`
			Prefix    string `json:"prefix"`
		}{true, total, strings.ToValidUTF8(string(prefix), "\uFFFD")})
		if len(b) <= limit || len(prefix) == 0 {
			return b
		}
		prefix = CutSafe(prefix, len(prefix)/2)
	}
}

// TextPayload returns what is recorded of a body that is not JSON: its
// text (form-decoded first when form is true, so that percent-encoded
// digits are scrubbed too), scrubbed, then cut to limit where no value can
// be split, as a JSON string.
func TextPayload(body []byte, form bool, limit int) json.RawMessage {
	text := body
	if form {
		text = []byte(unescape(string(body), true))
	}
	scrubbed := scrubText(text)
	return textJSON(scrubbed, len(scrubbed) > limit, limit)
}

// scrubText scrubs text that may be JSON, or a prefix of JSON, read as
// text. A finding that JSON escapes glue to a letter (a card after "\n",
// or written "\u0034…"), which the document read as JSON would show, is
// found in a view of the text with its escapes decoded; that view,
// scrubbed, is then what is recorded.
func scrubText(text []byte) []byte {
	scrubbed, _ := detect.ScrubText(nil, text)
	if bytes.IndexByte(scrubbed, '\\') < 0 {
		return scrubbed
	}
	view := unescapeJSON(scrubbed)
	if detect.ScanText(view) == 0 {
		return scrubbed
	}
	out, _ := detect.ScrubText(nil, view)
	return out
}

// unescapeJSON decodes the JSON string escapes in b as far as the detector
// reads them: an escape of an ASCII character becomes that character, any
// other \u escape U+FFFD, which separates words as the character it
// stands for does.
func unescapeJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			out = append(out, b[i])
			continue
		}
		i++
		switch c := b[i]; c {
		case 'b', 'f', 'n', 'r', 't':
			out = append(out, "\b\f\n\r\t"[strings.IndexByte("bfnrt", c)])
		case 'u':
			if i+4 >= len(b) {
				out = append(out, '\\', c)
				continue
			}
			v, err := strconv.ParseUint(string(b[i+1:i+5]), 16, 16)
			switch {
			case err != nil:
				out = append(out, '\\', c)
				continue
			case v < utf8.RuneSelf:
				out = append(out, byte(v))
			default:
				out = utf8.AppendRune(out, utf8.RuneError)
			}
			i += 4
		default: // \" \\ \/
			out = append(out, c)
		}
	}
	return out
}

// textJSON encodes scrubbed text as a JSON string of at most about limit
// bytes, or, when cut, as a summary with its prefix.
func textJSON(scrubbed []byte, cut bool, limit int) json.RawMessage {
	if !cut {
		b, _ := EncodeJSON(strings.ToValidUTF8(string(scrubbed), "\uFFFD"))
		if len(b) <= limit+limit/4+64 {
			return b
		}
	}
	return summary(scrubbed, len(scrubbed), limit)
}

// safeCut marks the bytes no detector takes inside a finding: cutting a
// text just before one never splits a card, an SSN, an email or a token
// (a PEM block cut in its body is still found by its header).
var safeCut = func() (t [256]bool) {
	for _, c := range "\n\r\t,;\"'{}[]()<>|&:!?*^`~#$" {
		t[c] = true
	}
	return t
}()

// CutSafe returns the longest prefix of b of at most n bytes that ends
// just before a byte no finding can hold, so a value is never cut in half;
// b itself when it fits.
func CutSafe(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	for i := n; i > 0; i-- {
		if safeCut[b[i]] {
			return b[:i]
		}
	}
	return b[:0]
}

// captureMargin is how far past the record's limit a streamed answer is
// kept raw, so that a value straddling the limit is seen whole before the
// record is cut at a safe byte below it.
const captureMargin = 4 << 10

// AnswerPayload returns what is recorded of an answer body: scrubbed JSON
// when the body is whole valid JSON of a JSON type, else its scrubbed
// text. When the body is not whole (a prefix of a stream or of a large
// answer), the raw prefix is first cut at a safe byte, so a value cut by
// the end of the prefix is not recorded at all, then scrubbed, then cut
// again to limit.
func AnswerPayload(body []byte, contentType string, whole bool, limit, maxDepth int) json.RawMessage {
	if len(body) == 0 {
		return nil
	}
	if whole && strings.Contains(strings.ToLower(contentType), "json") {
		if out, _, err := detect.ScrubJSON(nil, body, detect.Options{MaxDepth: maxDepth}); err == nil {
			return BoundedJSON(out, limit)
		}
	}
	if !whole {
		body = CutSafe(body, len(body)-1)
	}
	scrubbed := scrubText(body)
	return textJSON(scrubbed, !whole || len(scrubbed) > limit, limit)
}

// ScrubbedText scrubs and clips text that may quote a request or an
// answer (an error message, a log line), for logs and records.
func ScrubbedText(t string) string {
	b, _ := detect.ScrubText(nil, []byte(t))
	return clip(string(b))
}

// scanText scans a body that is not JSON: as sent, and form-decoded when
// it is a form, so that percent-encoded digits are seen.
func scanText(body []byte, form bool) detect.Set {
	found := detect.ScanText(body)
	if form {
		found |= detect.ScanText(bytesOf(unescape(string(body), true)))
	}
	return found
}
