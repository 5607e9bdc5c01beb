// Package frame is the wire format of typed pipes between two processes
// over a Unix domain socket: small, versioned, length-prefixed binary
// frames; a handshake in which both ends sign with their identity keys;
// and messages chained by SHA-256 and signed in batches, so that every
// message is covered by an Ed25519 signature of its sender without paying
// for one signature per message. docs/pipes.md describes the format for
// implementers in other languages.
//
// Every frame is an 8-byte header followed by its body:
//
//	offset  size  field
//	0       1     version (1)
//	1       1     type (1 hello, 2 accept, 3 open, 4 msg, 5 sig, 6 close)
//	2       2     flags, zero
//	4       4     body length, big-endian
//
// The package imports no iatp package but identity and internal/wire.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/iatp/iatp/internal/wire"
)

// Version is the framing version this package speaks.
const Version = 1

// HeaderLen is the length of a frame's header.
const HeaderLen = 8

// Type says what a frame carries.
type Type uint8

// Frame types.
const (
	// TypeHello opens a connection, sender to receiver: a nonce and the
	// sender's agent id.
	TypeHello Type = 1
	// TypeAccept answers it, receiver to sender: a nonce, the receiver's
	// agent id, its limits and its signature over the handshake.
	TypeAccept Type = 2
	// TypeOpen completes the handshake, sender to receiver: the sender's
	// signature over the handshake.
	TypeOpen Type = 3
	// TypeMsg carries one message, sender to receiver.
	TypeMsg Type = 4
	// TypeSig signs every message up to a sequence number, sender to
	// receiver; the receiver delivers none before it is verified.
	TypeSig Type = 5
	// TypeClose ends a connection, either way, with a code and a reason.
	TypeClose Type = 6
)

// String returns the type's name.
func (t Type) String() string {
	switch t {
	case TypeHello:
		return "hello"
	case TypeAccept:
		return "accept"
	case TypeOpen:
		return "open"
	case TypeMsg:
		return "msg"
	case TypeSig:
		return "sig"
	case TypeClose:
		return "close"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Limits of the format.
const (
	// NonceLen is the length of each side's handshake nonce.
	NonceLen = 32
	// SignatureLen is the length of an Ed25519 signature.
	SignatureLen = 64
	// MaxIDLen bounds message ids and trace ids.
	MaxIDLen = 128
	// MaxNameLen bounds agent ids and type names.
	MaxNameLen = 256
	// MaxReasonLen bounds a close frame's reason.
	MaxReasonLen = 1024
	// MaxControlLen bounds the body of every frame but msg.
	MaxControlLen = 4096
	// MaxMessageLen is the largest message payload a receiver may
	// announce.
	MaxMessageLen = 64 << 20
	// MaxMetaLen is what a msg body holds besides its payload, at most.
	MaxMetaLen = 8 + 5*2 + 2*MaxIDLen + 3*MaxNameLen
)

// ErrProtocol is wrapped by every error about bytes that break the format.
var ErrProtocol = errors.New("frame: protocol violation")

func protocolf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

// ParseHeader reads a frame header: the version must be Version, the flags
// zero, the type known, and the body length within the type's limit —
// MaxControlLen, or MaxMetaLen+maxMessage for a msg.
func ParseHeader(h []byte, maxMessage int) (Type, int, error) {
	if len(h) < HeaderLen {
		return 0, 0, protocolf("header of %d bytes, want %d", len(h), HeaderLen)
	}
	if h[0] != Version {
		return 0, 0, protocolf("version %d, this side speaks %d", h[0], Version)
	}
	t := Type(h[1])
	if t < TypeHello || t > TypeClose {
		return 0, 0, protocolf("unknown frame type %d", h[1])
	}
	if f := binary.BigEndian.Uint16(h[2:4]); f != 0 {
		return 0, 0, protocolf("flags %#04x on a %s frame; none are defined", f, t)
	}
	n := binary.BigEndian.Uint32(h[4:8])
	limit := uint32(MaxControlLen)
	if t == TypeMsg {
		limit = uint32(MaxMetaLen + min(max(maxMessage, 0), MaxMessageLen))
	}
	if n > limit {
		return 0, 0, protocolf("%s frame of %d bytes, over the limit of %d", t, n, limit)
	}
	return t, int(n), nil
}

// AppendHeader appends a header for a frame of type t with a body of n bytes.
func AppendHeader(dst []byte, t Type, n int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, Version, byte(t), 0, 0), uint32(n))
}

// Msg is one message: its sequence number on the connection, its
// envelope and its JSON payload.
type Msg struct {
	// Seq numbers the msg frames of a connection from 1, without gaps.
	Seq uint64
	// ID is the message's id: 1–128 characters of [A-Za-z0-9._:-].
	ID string
	// TraceID is the message's trace id, at most 128 bytes; the receiver
	// checks its grammar like the trace-id header's.
	TraceID string
	// Source and Target are the sending and receiving agents' ids.
	Source, Target string
	// Type is the name of the message's type.
	Type string
	// Payload is the message, JSON-encoded.
	Payload []byte
}

// SeqOffset is where a msg frame's sequence number sits: a sender builds
// the frame first and sets the number when it writes the frame.
const SeqOffset = HeaderLen

// AppendMsg appends m as a whole msg frame, header included.
func AppendMsg(dst []byte, m *Msg) ([]byte, error) {
	if err := m.check(); err != nil {
		return dst, err
	}
	n := 8 + 10 + len(m.ID) + len(m.TraceID) + len(m.Source) + len(m.Target) + len(m.Type) + len(m.Payload)
	dst = AppendHeader(dst, TypeMsg, n)
	dst = binary.BigEndian.AppendUint64(dst, m.Seq)
	for _, s := range [...]string{m.ID, m.TraceID, m.Source, m.Target, m.Type} {
		dst = appendStr(dst, s)
	}
	return append(dst, m.Payload...), nil
}

// SetSeq sets the sequence number of the msg frame f.
func SetSeq(f []byte, seq uint64) { binary.BigEndian.PutUint64(f[SeqOffset:], seq) }

// ParseMsg reads the body of a msg frame. The strings are copies; Payload
// aliases body.
func ParseMsg(body []byte) (Msg, error) {
	var m Msg
	r := reader{b: body}
	m.Seq = r.u64()
	m.ID, m.TraceID, m.Source, m.Target, m.Type = r.str(), r.str(), r.str(), r.str(), r.str()
	if r.err != nil {
		return Msg{}, protocolf("msg: %s", r.err)
	}
	m.Payload = r.b
	if err := m.check(); err != nil {
		return Msg{}, err
	}
	return m, nil
}

// check validates m's fields (the payload is JSON the receiver parses).
func (m *Msg) check() error {
	switch {
	case !wire.ValidTraceID(m.ID):
		return protocolf("msg: id %s is not 1–%d characters of [A-Za-z0-9._:-]", clip(m.ID), MaxIDLen)
	case len(m.TraceID) > MaxIDLen:
		return protocolf("msg: trace id of %d bytes, at most %d", len(m.TraceID), MaxIDLen)
	case len(m.Payload) > MaxMessageLen:
		return protocolf("msg: payload of %d bytes, at most %d", len(m.Payload), MaxMessageLen)
	}
	for _, f := range [...]struct{ name, v string }{{"source", m.Source}, {"target", m.Target}, {"type", m.Type}} {
		if err := checkName(f.name, f.v); err != nil {
			return protocolf("msg: %s", err)
		}
	}
	return nil
}

// Hello is the first frame, sender to receiver.
type Hello struct {
	// Nonce is the sender's fresh random nonce.
	Nonce [NonceLen]byte
	// Sender is the sender's agent id.
	Sender string
}

// Append appends h as a whole frame.
func (h *Hello) Append(dst []byte) []byte {
	dst = AppendHeader(dst, TypeHello, NonceLen+2+len(h.Sender))
	return appendStr(append(dst, h.Nonce[:]...), h.Sender)
}

// ParseHello reads the body of a hello frame.
func ParseHello(body []byte) (Hello, error) {
	var h Hello
	r := reader{b: body}
	r.fixed(h.Nonce[:])
	h.Sender = r.str()
	r.end()
	if r.err != nil {
		return Hello{}, protocolf("hello: %s", r.err)
	}
	if err := checkName("sender", h.Sender); err != nil {
		return Hello{}, protocolf("hello: %s", err)
	}
	return h, nil
}

// Accept is the receiver's answer to a hello.
type Accept struct {
	// Nonce is the receiver's fresh random nonce.
	Nonce [NonceLen]byte
	// Receiver is the receiver's agent id: the target of every message.
	Receiver string
	// MaxMessage is the largest payload the receiver takes, in bytes.
	MaxMessage uint32
	// MaxBatch is the most msg frames the receiver holds before a sig.
	MaxBatch uint32
	// Signature is the receiver's Ed25519 signature over AcceptSigned.
	Signature [SignatureLen]byte
}

// Append appends a as a whole frame.
func (a *Accept) Append(dst []byte) []byte {
	dst = AppendHeader(dst, TypeAccept, NonceLen+2+len(a.Receiver)+8+SignatureLen)
	dst = appendStr(append(dst, a.Nonce[:]...), a.Receiver)
	dst = binary.BigEndian.AppendUint32(dst, a.MaxMessage)
	dst = binary.BigEndian.AppendUint32(dst, a.MaxBatch)
	return append(dst, a.Signature[:]...)
}

// ParseAccept reads the body of an accept frame.
func ParseAccept(body []byte) (Accept, error) {
	var a Accept
	r := reader{b: body}
	r.fixed(a.Nonce[:])
	a.Receiver = r.str()
	a.MaxMessage, a.MaxBatch = r.u32(), r.u32()
	r.fixed(a.Signature[:])
	r.end()
	if r.err != nil {
		return Accept{}, protocolf("accept: %s", r.err)
	}
	if err := checkName("receiver", a.Receiver); err != nil {
		return Accept{}, protocolf("accept: %s", err)
	}
	if a.MaxMessage == 0 || a.MaxMessage > MaxMessageLen || a.MaxBatch == 0 {
		return Accept{}, protocolf("accept: limits %d bytes, %d messages per signature", a.MaxMessage, a.MaxBatch)
	}
	return a, nil
}

// Open completes the handshake, sender to receiver.
type Open struct {
	// Signature is the sender's Ed25519 signature over OpenSigned.
	Signature [SignatureLen]byte
}

// Append appends o as a whole frame.
func (o *Open) Append(dst []byte) []byte {
	return append(AppendHeader(dst, TypeOpen, SignatureLen), o.Signature[:]...)
}

// ParseOpen reads the body of an open frame.
func ParseOpen(body []byte) (Open, error) {
	var o Open
	r := reader{b: body}
	r.fixed(o.Signature[:])
	r.end()
	if r.err != nil {
		return Open{}, protocolf("open: %s", r.err)
	}
	return o, nil
}

// Sig signs every msg frame of the connection up to Seq.
type Sig struct {
	// Seq is the last msg frame covered.
	Seq uint64
	// Signature is the sender's Ed25519 signature over SigSigned.
	Signature [SignatureLen]byte
}

// Append appends s as a whole frame.
func (s *Sig) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint64(AppendHeader(dst, TypeSig, 8+SignatureLen), s.Seq)
	return append(dst, s.Signature[:]...)
}

// ParseSig reads the body of a sig frame.
func ParseSig(body []byte) (Sig, error) {
	var s Sig
	r := reader{b: body}
	s.Seq = r.u64()
	r.fixed(s.Signature[:])
	r.end()
	if r.err != nil {
		return Sig{}, protocolf("sig: %s", r.err)
	}
	return s, nil
}

// Close codes.
const (
	// CodeNormal: the sender is done; everything it sent was signed.
	CodeNormal uint16 = 0
	// CodeProtocol: the peer broke the format.
	CodeProtocol uint16 = 1
	// CodeRefused: the handshake failed (unknown agent, bad signature).
	CodeRefused uint16 = 2
	// CodeClosed: the receiving pipeline is closed.
	CodeClosed uint16 = 3
	// CodeInternal: the closing side failed.
	CodeInternal uint16 = 4
)

// Close ends a connection.
type Close struct {
	// Code says why (CodeNormal …).
	Code uint16
	// Reason says why in words, for logs: at most MaxReasonLen bytes.
	Reason string
}

// Append appends c as a whole frame; a long reason is cut.
func (c *Close) Append(dst []byte) []byte {
	reason := c.Reason
	if len(reason) > MaxReasonLen {
		reason = reason[:MaxReasonLen]
	}
	dst = binary.BigEndian.AppendUint16(AppendHeader(dst, TypeClose, 2+len(reason)), c.Code)
	return append(dst, reason...)
}

// ParseClose reads the body of a close frame.
func ParseClose(body []byte) (Close, error) {
	if len(body) < 2 || len(body)-2 > MaxReasonLen {
		return Close{}, protocolf("close: body of %d bytes", len(body))
	}
	return Close{Code: binary.BigEndian.Uint16(body), Reason: string(body[2:])}, nil
}

// Error is a close frame received, as an error.
func (c Close) Error() string {
	name := "code " + strconv.Itoa(int(c.Code))
	switch c.Code {
	case CodeNormal:
		name = "done"
	case CodeProtocol:
		name = "protocol violation"
	case CodeRefused:
		name = "refused"
	case CodeClosed:
		name = "pipeline closed"
	case CodeInternal:
		name = "internal error"
	}
	return "frame: the peer closed the connection (" + name + "): " + printable(c.Reason)
}

// printable replaces the control characters of an untrusted text.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// checkName validates an agent id or a type name: 1–MaxNameLen bytes of
// UTF-8 without control characters.
func checkName(field, s string) error {
	if s == "" || len(s) > MaxNameLen {
		return fmt.Errorf("%s of %d bytes, want 1–%d", field, len(s), MaxNameLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not UTF-8", field)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%s holds a control character", field)
		}
	}
	return nil
}

func appendStr(dst []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(dst, uint16(len(s))), s...)
}

// reader reads the fields of a body; the first error sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) need(n int) bool {
	if r.err == nil && len(r.b) < n {
		r.err = fmt.Errorf("body ends early")
	}
	return r.err == nil
}

func (r *reader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) str() string {
	if !r.need(2) {
		return ""
	}
	n := int(binary.BigEndian.Uint16(r.b))
	if !r.need(2 + n) {
		return ""
	}
	s := string(r.b[2 : 2+n])
	r.b = r.b[2+n:]
	return s
}

func (r *reader) fixed(dst []byte) {
	if r.need(len(dst)) {
		copy(dst, r.b)
		r.b = r.b[len(dst):]
	}
}

func (r *reader) end() {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d bytes after the last field", len(r.b))
	}
}

// clip quotes an untrusted value, kept short, for messages.
func clip(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}
