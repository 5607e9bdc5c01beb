package reputation

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/gowebpki/jcs"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
)

// TypeSummary is the event type of an aggregated outcome report: how many
// calls to the subject succeeded, failed, timed out or errored, as seen by
// the reporter during one interval.
const TypeSummary = "summary"

// Errors of signed events that callers branch on. Every error Apply returns
// for a refused event wraps one of them (or ErrInvalidEvent).
var (
	// ErrUnsigned means an event carries no signature.
	ErrUnsigned = errors.New("reputation: unsigned event")
	// ErrUnknownKey means the event's reporter has no key this node trusts.
	ErrUnknownKey = errors.New("reputation: unknown reporter key")
	// ErrBadSignature means the signature does not verify under the
	// reporter's key, or the id is not the event's content hash.
	ErrBadSignature = errors.New("reputation: bad event signature")
	// ErrDuplicate means the event was already applied (or compacted);
	// nothing changed. Receivers treat it as success.
	ErrDuplicate = ErrDuplicateEvent
	// ErrStale means the event is older than the mesh keeps events
	// (Config.MaxEventAge) or older than the subject's compacted history.
	ErrStale = errors.New("reputation: stale event")
	// ErrFuture means the event's time is ahead of this node's clock by
	// more than Config.MaxClockSkew.
	ErrFuture = errors.New("reputation: event from the future")
	// ErrCellFull means the reporter already has Config.MaxEventsPerCell
	// earlier events about the subject in the event's window.
	ErrCellFull = errors.New("reputation: too many events from one reporter")
)

// signingContext prefixes the signed bytes, so that an event signature can
// never be taken for a signature of anything else.
const signingContext = "iatp-reputation-event/1\n"

// timeLayout is the one spelling of event times: UTC, microseconds.
const timeLayout = "2006-01-02T15:04:05.000000Z"

// MaxSummaryCount bounds each count of a summary event.
const MaxSummaryCount = 1 << 30

// Counts are the outcomes a summary event reports.
type Counts struct {
	Success uint32 `json:"success"`
	Failure uint32 `json:"failure"`
	Timeout uint32 `json:"timeout"`
	Error   uint32 `json:"error"`
}

func (c Counts) zero() bool { return c == Counts{} }

// delta is the raw score change of the counts: +0.10 per success, −0.50
// per failure, timeout or error.
func (c Counts) delta() Points {
	return Points(c.Success)*10 - Points(uint64(c.Failure)+uint64(c.Timeout)+uint64(c.Error))*50
}

// EventBody is the signed content of a mesh event. Its canonical encoding
// (fixed key order, optional fields left out when empty, times as
// timeLayout) is what the reporter signs and what the id hashes.
type EventBody struct {
	// V is the format version, 1.
	V int
	// Reporter is the agent id of the node that signed the event.
	Reporter string
	// Subject is the agent the event is about.
	Subject string
	// Type is hallucination, failure, timeout, error, summary or import.
	Type string
	// Severity is set for hallucinations: critical, high, medium or low.
	Severity string
	// Time is when the reporter made the event, UTC, to the microsecond.
	Time time.Time
	// TraceID is the trace the event concerns, if any.
	TraceID string
	// DetectedBy names who detected the misbehaviour (a verifier, "admin",
	// the peer whose snapshot was imported).
	DetectedBy string
	// DetailsSHA256 is the hex SHA-256 of the RFC 8785 form of the details
	// object, which travels beside the body: a node may drop details
	// without breaking the signature.
	DetailsSHA256 string
	// Counts is set for summaries.
	Counts Counts
	// Delta is set for imports only: the change the imported snapshot asks
	// for, in [−10, 0].
	Delta Points
}

// SignedEvent is an event as the mesh carries it: the body, the reporter's
// Ed25519 signature over its canonical form, the id (the hex SHA-256 of
// that form) and optional details.
type SignedEvent struct {
	ID        string
	Body      EventBody
	Details   json.RawMessage
	Signature []byte
}

// canonical appends the canonical encoding of b.
func (b *EventBody) canonical(dst []byte) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, int64(b.V), 10)
	dst = appendField(dst, "reporter", b.Reporter)
	dst = appendField(dst, "subject", b.Subject)
	dst = appendField(dst, "type", b.Type)
	if b.Severity != "" {
		dst = appendField(dst, "severity", b.Severity)
	}
	dst = append(dst, `,"time":"`...)
	dst = b.Time.UTC().AppendFormat(dst, timeLayout)
	dst = append(dst, '"')
	if b.TraceID != "" {
		dst = appendField(dst, "trace_id", b.TraceID)
	}
	if b.DetectedBy != "" {
		dst = appendField(dst, "detected_by", b.DetectedBy)
	}
	if b.DetailsSHA256 != "" {
		dst = appendField(dst, "details_sha256", b.DetailsSHA256)
	}
	if !b.Counts.zero() {
		dst = append(dst, `,"counts":{"success":`...)
		dst = strconv.AppendUint(dst, uint64(b.Counts.Success), 10)
		dst = append(dst, `,"failure":`...)
		dst = strconv.AppendUint(dst, uint64(b.Counts.Failure), 10)
		dst = append(dst, `,"timeout":`...)
		dst = strconv.AppendUint(dst, uint64(b.Counts.Timeout), 10)
		dst = append(dst, `,"error":`...)
		dst = strconv.AppendUint(dst, uint64(b.Counts.Error), 10)
		dst = append(dst, '}')
	}
	if b.Delta != 0 {
		dst = append(dst, `,"delta":`...)
		dst = b.Delta.AppendJSON(dst)
	}
	return append(dst, '}')
}

func appendField(dst []byte, key, v string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return appendString(dst, v)
}

// appendString writes s as a JSON string: '"', '\\' and control
// characters escaped, everything else as UTF-8. s is valid UTF-8 (checked
// before).
func appendString(dst []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// eventID returns the id of a canonical body.
func eventID(canon []byte) [32]byte { return sha256.Sum256(canon) }

// signEvent validates b, attaches details (already canonical, or nil) and
// signs it with key.
func signEvent(b EventBody, details []byte, key identity.PrivateKey) (SignedEvent, error) {
	if len(details) > 0 {
		sum := sha256.Sum256(details)
		b.DetailsSHA256 = hex.EncodeToString(sum[:])
	}
	b.V = 1
	b.Time = b.Time.UTC().Truncate(time.Microsecond)
	if err := b.validate(); err != nil {
		return SignedEvent{}, err
	}
	canon := b.canonical(make([]byte, 0, 256))
	sig, err := key.Sign(nil, append([]byte(signingContext), canon...), cryptoNoHash{})
	if err != nil {
		return SignedEvent{}, fmt.Errorf("reputation: sign event: %w", err)
	}
	id := eventID(canon)
	return SignedEvent{ID: hex.EncodeToString(id[:]), Body: b, Details: details, Signature: sig}, nil
}

// verifyEvent checks the id and signature of ev under pub and returns the
// binary id. Details that do not match DetailsSHA256 are an error too.
func verifyEvent(ev *SignedEvent, pub ed25519.PublicKey) ([32]byte, error) {
	canon := ev.Body.canonical(make([]byte, 0, 256))
	id := eventID(canon)
	if ev.ID != "" && ev.ID != hex.EncodeToString(id[:]) {
		return id, fmt.Errorf("%w: id %.16s… is not the hash of the event", ErrBadSignature, ev.ID)
	}
	msg := append([]byte(signingContext), canon...)
	if len(ev.Signature) != ed25519.SignatureSize || !ed25519.Verify(pub, msg, ev.Signature) {
		return id, fmt.Errorf("%w: event %x… by %q", ErrBadSignature, id[:8], truncate(ev.Body.Reporter, 64))
	}
	return id, nil
}

// checkDetails verifies that ev.Details (if present) matches the hash in
// the body, and returns their canonical form. Details without a hash, or
// not matching, are an error.
func checkDetails(ev *SignedEvent) ([]byte, error) {
	if len(ev.Details) == 0 || string(ev.Details) == "null" {
		return nil, nil
	}
	if ev.Body.DetailsSHA256 == "" {
		return nil, fmt.Errorf("%w: details without details_sha256", ErrInvalidEvent)
	}
	canon, err := canonicalDetails(ev.Details)
	if err != nil {
		return nil, fmt.Errorf("%w: details: %w", ErrInvalidEvent, err)
	}
	sum := sha256.Sum256(canon)
	if hex.EncodeToString(sum[:]) != ev.Body.DetailsSHA256 {
		return nil, fmt.Errorf("%w: details do not match details_sha256", ErrInvalidEvent)
	}
	return canon, nil
}

// canonicalDetails checks that d is a JSON object of at most
// MaxDetailsBytes and returns its RFC 8785 form.
func canonicalDetails(d []byte) ([]byte, error) {
	if len(d) > MaxDetailsBytes {
		return nil, fmt.Errorf("%d bytes exceeds the limit of %d", len(d), MaxDetailsBytes)
	}
	t := bytes.TrimSpace(d)
	if len(t) == 0 || t[0] != '{' {
		return nil, errors.New("not a JSON object")
	}
	out, err := jcs.Transform(t)
	if err != nil {
		return nil, fmt.Errorf("not canonicalizable JSON: %w", err)
	}
	if len(out) > MaxDetailsBytes {
		return nil, fmt.Errorf("%d bytes exceeds the limit of %d", len(out), MaxDetailsBytes)
	}
	return out, nil
}

// validate checks the body's fields.
func (b *EventBody) validate() error {
	fail := func(field string, err error) error {
		return fmt.Errorf("%w: %s: %w", ErrInvalidEvent, field, err)
	}
	if b.V != 1 {
		return fail("v", fmt.Errorf("version %d, want 1", b.V))
	}
	if err := checkAgentID(b.Reporter); err != nil {
		return fail("reporter", err)
	}
	if err := checkAgentID(b.Subject); err != nil {
		return fail("subject", err)
	}
	if _, err := micros(b.Time); err != nil {
		return fail("time", err)
	}
	if b.TraceID != "" {
		if reason := wire.TraceIDProblem(b.TraceID); reason != "" {
			return fail("trace_id", errors.New(reason))
		}
	}
	if b.DetectedBy != "" {
		if err := checkAgentID(b.DetectedBy); err != nil {
			return fail("detected_by", err)
		}
	}
	if b.DetailsSHA256 != "" {
		if len(b.DetailsSHA256) != 64 || !isLowerHex(b.DetailsSHA256) {
			return fail("details_sha256", errors.New("not 64 lowercase hex digits"))
		}
	}
	typ := exactType(b.Type)
	if typ == typInvalid || typ == typSuccess {
		return fail("type", fmt.Errorf("%q is not one of hallucination, failure, timeout, error, summary, import", truncate(b.Type, 32)))
	}
	switch {
	case typ == typSummary:
		if b.Counts.zero() {
			return fail("counts", errors.New("a summary counts nothing"))
		}
		for _, n := range []uint32{b.Counts.Success, b.Counts.Failure, b.Counts.Timeout, b.Counts.Error} {
			if n > MaxSummaryCount {
				return fail("counts", fmt.Errorf("%d exceeds %d", n, MaxSummaryCount))
			}
		}
	case !b.Counts.zero():
		return fail("counts", errors.New("only summaries carry counts"))
	}
	switch typ {
	case typHallucination:
		if s := b.Severity; s != SeverityCritical && s != SeverityHigh && s != SeverityMedium && s != SeverityLow {
			return fail("severity", fmt.Errorf("%q is not critical, high, medium or low", truncate(s, 32)))
		}
	default:
		if b.Severity != "" {
			return fail("severity", errors.New("only hallucinations carry a severity"))
		}
	}
	switch {
	case typ == typImport:
		if b.Delta >= 0 || b.Delta < -MaxScore {
			return fail("delta", fmt.Errorf("%s is outside [-10, 0)", b.Delta))
		}
	case b.Delta != 0:
		return fail("delta", errors.New("only imports carry a delta"))
	}
	return nil
}

// exactType returns the type spelled exactly s (successes travel inside
// summaries, so a bare success is typInvalid to the mesh's callers).
func exactType(s string) evType {
	for i, n := range typeNames {
		if i != 0 && s == n {
			return evType(i)
		}
	}
	return typInvalid
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// rawDelta is the score change an event asks for, before weights, caps and
// clamping.
func (b *EventBody) rawDelta() Points {
	switch typ := exactType(b.Type); typ {
	case typSummary:
		return b.Counts.delta()
	case typImport:
		return b.Delta
	default:
		return deltaOf(typ, parseSeverity(b.Severity))
	}
}

// wireEvent is the JSON form of a SignedEvent.
type wireEvent struct {
	ID        string          `json:"id"`
	Event     wireBody        `json:"event"`
	Details   json.RawMessage `json:"details,omitempty"`
	Signature []byte          `json:"signature"`
}

type wireBody struct {
	V             int     `json:"v"`
	Reporter      string  `json:"reporter"`
	Subject       string  `json:"subject"`
	Type          string  `json:"type"`
	Severity      string  `json:"severity,omitempty"`
	Time          string  `json:"time"`
	TraceID       string  `json:"trace_id,omitempty"`
	DetectedBy    string  `json:"detected_by,omitempty"`
	DetailsSHA256 string  `json:"details_sha256,omitempty"`
	Counts        *Counts `json:"counts,omitempty"`
	Delta         Points  `json:"delta,omitempty"`
}

// MarshalJSON encodes the event as
// {"id":…,"event":{canonical body},"details":{…},"signature":"<base64>"}.
func (ev SignedEvent) MarshalJSON() ([]byte, error) {
	return ev.AppendJSON(nil), nil
}

// AppendJSON appends the JSON form of ev (see MarshalJSON) to dst.
func (ev *SignedEvent) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, ev.ID)
	dst = append(dst, `,"event":`...)
	dst = ev.Body.canonical(dst)
	if len(ev.Details) > 0 {
		dst = append(dst, `,"details":`...)
		dst = append(dst, ev.Details...)
	}
	dst = append(dst, `,"signature":"`...)
	dst = b64.AppendEncode(dst, ev.Signature)
	return append(dst, `"}`...)
}

// UnmarshalJSON decodes the JSON form strictly (unknown fields refused) and
// checks the form of every field; it does not verify the signature (Apply
// does, against the reporter's key).
func (ev *SignedEvent) UnmarshalJSON(data []byte) error {
	var w wireEvent
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the event", ErrInvalidEvent)
	}
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidEvent)
	}
	t, err := time.Parse(timeLayout, w.Event.Time)
	if err != nil || t.Format(timeLayout) != w.Event.Time {
		return fmt.Errorf("%w: time: %q is not of the form %s", ErrInvalidEvent, truncate(w.Event.Time, 40), timeLayout)
	}
	b := EventBody{
		V: w.Event.V, Reporter: w.Event.Reporter, Subject: w.Event.Subject, Type: w.Event.Type,
		Severity: w.Event.Severity, Time: t, TraceID: w.Event.TraceID, DetectedBy: w.Event.DetectedBy,
		DetailsSHA256: w.Event.DetailsSHA256, Delta: w.Event.Delta,
	}
	if w.Event.Counts != nil {
		b.Counts = *w.Event.Counts
	}
	if err := b.validate(); err != nil {
		return err
	}
	out := SignedEvent{ID: w.ID, Body: b, Signature: w.Signature}
	if d := bytes.TrimSpace(w.Details); len(d) > 0 && string(d) != "null" {
		out.Details = append(json.RawMessage(nil), d...)
	}
	*ev = out
	return nil
}

var b64 = base64.StdEncoding

// cryptoNoHash asks crypto.Signer for pure Ed25519.
type cryptoNoHash struct{}

func (cryptoNoHash) HashFunc() crypto.Hash { return 0 }
