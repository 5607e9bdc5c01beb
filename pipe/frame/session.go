package frame

import (
	"bufio"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/iatp/iatp/identity"
)

// ErrRefused is wrapped by the errors of a handshake the other side
// could not authenticate, or that named another agent.
var ErrRefused = errors.New("frame: handshake refused")

// Contexts of the signed byte strings: each kind of signature covers its
// own context, so that no signature can be taken for one of another kind.
const (
	acceptContext = "iatp-pipe/1 accept\x00"
	openContext   = "iatp-pipe/1 open\x00"
	chainContext  = "iatp-pipe/1 chain\x00"
	sigContext    = "iatp-pipe/1 sig\x00"
)

// Handshake is what both sides agree on before the first message.
type Handshake struct {
	// SenderNonce and ReceiverNonce are the nonces of hello and accept.
	SenderNonce, ReceiverNonce [NonceLen]byte
	// Sender and Receiver are the two agents' ids.
	Sender, Receiver string
	// MaxMessage and MaxBatch are the receiver's limits.
	MaxMessage, MaxBatch uint32
}

// transcript is what both handshake signatures and the chain start cover:
// both nonces, both agent ids, the receiver's limits.
func (h *Handshake) transcript(context string) []byte {
	b := make([]byte, 0, len(context)+2*NonceLen+4+len(h.Sender)+len(h.Receiver)+8)
	b = append(append(append(b, context...), h.SenderNonce[:]...), h.ReceiverNonce[:]...)
	b = appendStr(appendStr(b, h.Sender), h.Receiver)
	b = binary.BigEndian.AppendUint32(b, h.MaxMessage)
	return binary.BigEndian.AppendUint32(b, h.MaxBatch)
}

// AcceptSigned returns the bytes the receiver signs in accept.
func (h *Handshake) AcceptSigned() []byte { return h.transcript(acceptContext) }

// OpenSigned returns the bytes the sender signs in open.
func (h *Handshake) OpenSigned() []byte { return h.transcript(openContext) }

// Chain returns the hash chain of the connection's msg frames, at its
// start: SHA-256 of the transcript under the chain context.
func (h *Handshake) Chain() *Chain {
	c := &Chain{h: sha256.New()}
	c.sum = sha256.Sum256(h.transcript(chainContext))
	return c
}

// Chain is the running hash of a connection's msg frames: after frame n,
// its sum is SHA-256(sum after frame n−1 ‖ frame n, header included).
type Chain struct {
	sum [sha256.Size]byte
	seq uint64
	h   hash.Hash
}

// Add adds the next msg frame, whose sequence number must be Seq()+1.
func (c *Chain) Add(frame []byte) {
	c.h.Reset()
	c.h.Write(c.sum[:])
	c.h.Write(frame)
	c.h.Sum(c.sum[:0])
	c.seq++
}

// Seq returns the sequence number of the last frame added.
func (c *Chain) Seq() uint64 { return c.seq }

// Sum returns the chain's hash after the last frame added.
func (c *Chain) Sum() [sha256.Size]byte { return c.sum }

// SigSigned returns the bytes a sig frame signs: the sig context, the
// chain's sum and the sequence number of its last frame.
func (c *Chain) SigSigned() []byte {
	b := append([]byte(sigContext), c.sum[:]...)
	return binary.BigEndian.AppendUint64(b, c.seq)
}

// Reader reads frames from a connection.
type Reader struct {
	r          *bufio.Reader
	maxMessage int
	buf        []byte
}

// NewReader returns a reader refusing msg frames whose payload could
// exceed maxMessage bytes.
func NewReader(r io.Reader, maxMessage int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), maxMessage: maxMessage, buf: make([]byte, 0, 4<<10)}
}

// Next reads one frame and returns its type, the whole frame and its
// body; both stay valid until the next call. A connection that ends
// between frames gives io.EOF; inside one, io.ErrUnexpectedEOF.
func (r *Reader) Next() (t Type, frame, body []byte, err error) {
	r.buf = r.buf[:HeaderLen]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		return 0, nil, nil, err
	}
	t, n, err := ParseHeader(r.buf, r.maxMessage)
	if err != nil {
		return 0, nil, nil, err
	}
	if cap(r.buf) < HeaderLen+n {
		r.buf = append(r.buf, make([]byte, n)...)
	}
	r.buf = r.buf[:HeaderLen+n]
	if _, err := io.ReadFull(r.r, r.buf[HeaderLen:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, nil, err
	}
	return t, r.buf, r.buf[HeaderLen:], nil
}

// ClientConfig configures the sending side of a connection.
type ClientConfig struct {
	// Agent is the sending agent's id, which Key speaks for (required).
	Agent string
	// Key signs the handshake and every batch of messages (required).
	Key identity.PrivateKey
	// Receiver is the agent the sender expects at the other end
	// (required): a receiver that names another is refused.
	Receiver string
	// ReceiverKey is the receiver's public key, pinned (required).
	ReceiverKey ed25519.PublicKey
	// Rand is the source of the nonce; nil means crypto/rand.
	Rand io.Reader
}

// Client is the sending side of a connection, after the handshake. It is
// not safe for concurrent use: one goroutine writes.
type Client struct {
	w        *bufio.Writer
	rd       *Reader
	hs       Handshake
	chain    *Chain
	key      identity.PrivateKey
	unsigned int
	buf      []byte
}

// NewClient runs the handshake as the sender over rw: hello, the
// receiver's accept checked against the pinned key, open. The caller
// bounds it with a deadline on the connection.
func NewClient(rw io.ReadWriter, cfg ClientConfig) (*Client, error) {
	if err := checkName("agent", cfg.Agent); err != nil {
		return nil, fmt.Errorf("frame: client: %w", err)
	}
	if err := checkName("receiver", cfg.Receiver); err != nil {
		return nil, fmt.Errorf("frame: client: %w", err)
	}
	if cfg.Key.IsZero() {
		return nil, errors.New("frame: client: no key")
	}
	if len(cfg.ReceiverKey) != ed25519.PublicKeySize {
		return nil, errors.New("frame: client: no receiver key")
	}
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	c := &Client{w: bufio.NewWriterSize(rw, 64<<10), rd: NewReader(rw, 0), key: cfg.Key}
	hello := Hello{Sender: cfg.Agent}
	if _, err := io.ReadFull(rnd, hello.Nonce[:]); err != nil {
		return nil, fmt.Errorf("frame: client: nonce: %w", err)
	}
	if _, err := rw.Write(hello.Append(nil)); err != nil {
		return nil, fmt.Errorf("frame: client: hello: %w", err)
	}
	t, _, body, err := c.rd.Next()
	if err != nil {
		return nil, fmt.Errorf("frame: client: reading accept: %w", err)
	}
	switch t {
	case TypeAccept:
	case TypeClose:
		cl, err := ParseClose(body)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrRefused, cl)
	default:
		return nil, protocolf("%s frame where accept was due", t)
	}
	a, err := ParseAccept(body)
	if err != nil {
		return nil, err
	}
	if a.Receiver != cfg.Receiver {
		return nil, fmt.Errorf("%w: the receiver is %s, not %s", ErrRefused, clip(a.Receiver), clip(cfg.Receiver))
	}
	c.hs = Handshake{SenderNonce: hello.Nonce, ReceiverNonce: a.Nonce, Sender: cfg.Agent, Receiver: a.Receiver,
		MaxMessage: a.MaxMessage, MaxBatch: a.MaxBatch}
	if !ed25519.Verify(cfg.ReceiverKey, c.hs.AcceptSigned(), a.Signature[:]) {
		return nil, fmt.Errorf("%w: the accept of %s is not signed by its pinned key", ErrRefused, clip(a.Receiver))
	}
	var open Open
	sig, err := cfg.Key.Sign(nil, c.hs.OpenSigned(), crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("frame: client: signing open: %w", err)
	}
	copy(open.Signature[:], sig)
	if _, err := rw.Write(open.Append(nil)); err != nil {
		return nil, fmt.Errorf("frame: client: open: %w", err)
	}
	c.chain = c.hs.Chain()
	return c, nil
}

// Handshake returns what the handshake agreed.
func (c *Client) Handshake() Handshake { return c.hs }

// Closed waits for the receiver to end the connection, which it does
// only with a close frame: it returns that frame as an error, io.EOF when
// the connection ended without one, or the error that broke the read. It
// may run in its own goroutine while another writes.
func (c *Client) Closed() error {
	t, _, body, err := c.rd.Next()
	if err != nil {
		return err
	}
	if t != TypeClose {
		return protocolf("%s frame from the receiver after the handshake", t)
	}
	cl, err := ParseClose(body)
	if err != nil {
		return err
	}
	return cl
}

// WriteMsg writes a msg frame built by AppendMsg, setting its sequence
// number first. It is buffered until Sign.
func (c *Client) WriteMsg(f []byte) error {
	if len(f) < HeaderLen+8 || Type(f[1]) != TypeMsg {
		return errors.New("frame: WriteMsg: not a msg frame")
	}
	SetSeq(f, c.chain.Seq()+1)
	c.chain.Add(f)
	c.unsigned++
	_, err := c.w.Write(f)
	return err
}

// Unsigned returns how many messages were written since the last sig.
func (c *Client) Unsigned() int { return c.unsigned }

// Sign writes a sig frame over every message written so far, if any was
// written since the last, and flushes.
func (c *Client) Sign() error {
	if c.unsigned > 0 {
		sig, err := c.key.Sign(nil, c.chain.SigSigned(), crypto.Hash(0))
		if err != nil {
			return fmt.Errorf("frame: signing: %w", err)
		}
		s := Sig{Seq: c.chain.Seq()}
		copy(s.Signature[:], sig)
		c.buf = s.Append(c.buf[:0])
		if _, err := c.w.Write(c.buf); err != nil {
			return err
		}
		c.unsigned = 0
	}
	return c.w.Flush()
}

// Close signs what is unsigned, then writes a close frame with code and
// reason. The caller closes the connection.
func (c *Client) Close(code uint16, reason string) error {
	if err := c.Sign(); err != nil {
		return err
	}
	cl := Close{Code: code, Reason: reason}
	if _, err := c.w.Write(cl.Append(nil)); err != nil {
		return err
	}
	return c.w.Flush()
}

// DefaultMaxBatch is the most messages a receiver holds before a sig when
// ServerConfig.MaxBatch is zero.
const DefaultMaxBatch = 1024

// ServerConfig configures the receiving side of a connection.
type ServerConfig struct {
	// Agent is the receiving agent's id: the target of every message
	// (required).
	Agent string
	// Key signs the accept frame (required).
	Key identity.PrivateKey
	// Peers are the agents that may send, with their public keys
	// (required, at least one).
	Peers map[string]ed25519.PublicKey
	// MaxMessage is the largest payload taken, in bytes (required, at
	// most MaxMessageLen).
	MaxMessage int
	// MaxBatch is the most messages held before a sig; 0 means
	// DefaultMaxBatch.
	MaxBatch int
	// MaxBatchBytes is the most payload bytes held before a sig; 0 means
	// the larger of 8 MiB and twice MaxMessage.
	MaxBatchBytes int
	// Rand is the source of the nonce; nil means crypto/rand.
	Rand io.Reader
	// Admit, if not nil, is asked about a peer once its hello is read; an
	// error refuses it, with the error's text as the reason.
	Admit func(sender string) error
}

// Server is the receiving side of a connection, after the handshake. It
// is not safe for concurrent use: one goroutine reads.
type Server struct {
	rd       *Reader
	rw       io.ReadWriter
	hs       Handshake
	chain    *Chain
	peer     ed25519.PublicKey
	maxBytes int
	batch    []Msg
	offs     []int
	arena    []byte
}

// NewServer runs the handshake as the receiver over rw: the sender's
// hello, accept signed with Key, the sender's open checked against its
// key in Peers. A sender that is not a peer, or whose signature fails, is
// sent a close frame and refused. The caller bounds it with a deadline on
// the connection.
func NewServer(rw io.ReadWriter, cfg ServerConfig) (*Server, error) {
	if err := checkName("agent", cfg.Agent); err != nil {
		return nil, fmt.Errorf("frame: server: %w", err)
	}
	if cfg.Key.IsZero() {
		return nil, errors.New("frame: server: no key")
	}
	if len(cfg.Peers) == 0 {
		return nil, errors.New("frame: server: no peers")
	}
	if cfg.MaxMessage <= 0 || cfg.MaxMessage > MaxMessageLen {
		return nil, fmt.Errorf("frame: server: max message %d is outside 1–%d", cfg.MaxMessage, MaxMessageLen)
	}
	maxBatch := cfg.MaxBatch
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	maxBytes := cfg.MaxBatchBytes
	if maxBytes <= 0 {
		maxBytes = max(8<<20, 2*cfg.MaxMessage)
	}
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	s := &Server{rd: NewReader(rw, cfg.MaxMessage), rw: rw, maxBytes: maxBytes}
	t, _, body, err := s.rd.Next()
	if err != nil {
		return nil, fmt.Errorf("frame: server: reading hello: %w", err)
	}
	if t != TypeHello {
		return nil, s.refuse(CodeProtocol, protocolf("%s frame where hello was due", t))
	}
	hello, err := ParseHello(body)
	if err != nil {
		return nil, s.refuse(CodeProtocol, err)
	}
	pub, ok := cfg.Peers[hello.Sender]
	if !ok || len(pub) != ed25519.PublicKeySize {
		return nil, s.refuse(CodeRefused, fmt.Errorf("%w: agent %s is not a peer of %s", ErrRefused, clip(hello.Sender), clip(cfg.Agent)))
	}
	if cfg.Admit != nil {
		if err := cfg.Admit(hello.Sender); err != nil {
			return nil, s.refuse(CodeRefused, fmt.Errorf("%w: %w", ErrRefused, err))
		}
	}
	s.peer = pub
	s.hs = Handshake{SenderNonce: hello.Nonce, Sender: hello.Sender, Receiver: cfg.Agent,
		MaxMessage: uint32(cfg.MaxMessage), MaxBatch: uint32(maxBatch)}
	if _, err := io.ReadFull(rnd, s.hs.ReceiverNonce[:]); err != nil {
		return nil, fmt.Errorf("frame: server: nonce: %w", err)
	}
	a := Accept{Nonce: s.hs.ReceiverNonce, Receiver: cfg.Agent, MaxMessage: s.hs.MaxMessage, MaxBatch: s.hs.MaxBatch}
	sig, err := cfg.Key.Sign(nil, s.hs.AcceptSigned(), crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("frame: server: signing accept: %w", err)
	}
	copy(a.Signature[:], sig)
	if _, err := rw.Write(a.Append(nil)); err != nil {
		return nil, fmt.Errorf("frame: server: accept: %w", err)
	}
	t, _, body, err = s.rd.Next()
	if err != nil {
		return nil, fmt.Errorf("frame: server: reading open: %w", err)
	}
	if t != TypeOpen {
		return nil, s.refuse(CodeProtocol, protocolf("%s frame where open was due", t))
	}
	open, err := ParseOpen(body)
	if err != nil {
		return nil, s.refuse(CodeProtocol, err)
	}
	if !ed25519.Verify(pub, s.hs.OpenSigned(), open.Signature[:]) {
		return nil, s.refuse(CodeRefused, fmt.Errorf("%w: the open of %s is not signed by its key", ErrRefused, clip(hello.Sender)))
	}
	s.chain = s.hs.Chain()
	return s, nil
}

// refuse sends a close frame with code and err, and returns err.
func (s *Server) refuse(code uint16, err error) error {
	s.Close(code, Reason(err))
	return err
}

// Reason returns the text of err for a close frame: without the package's
// prefixes, which the code already says.
func Reason(err error) string {
	msg := err.Error()
	for _, p := range []error{ErrRefused, ErrProtocol} {
		msg = strings.TrimPrefix(msg, p.Error()+": ")
	}
	return msg
}

// Handshake returns what the handshake agreed.
func (s *Server) Handshake() Handshake { return s.hs }

// Next reads up to the next sig frame and returns the messages it
// signs, once the signature is verified; they stay valid until the next
// call. It returns io.EOF when the sender closed normally with nothing
// unsigned, a Close when it closed with another code, and an error
// wrapping ErrProtocol for bytes that break the format — a sequence
// number out of order, a message from another agent or for another, more
// messages than MaxBatch before a sig, or a signature that does not
// verify. Unsigned messages are never returned.
func (s *Server) Next() ([]Msg, error) {
	s.batch, s.offs, s.arena = s.batch[:0], s.offs[:0], s.arena[:0]
	for {
		t, f, body, err := s.rd.Next()
		if err != nil {
			if len(s.batch) > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		switch t {
		case TypeMsg:
			m, err := ParseMsg(body)
			if err != nil {
				return nil, err
			}
			switch {
			case m.Seq != s.chain.Seq()+1:
				return nil, protocolf("msg %d where %d was due", m.Seq, s.chain.Seq()+1)
			case m.Source != s.hs.Sender:
				return nil, protocolf("msg %d from %s on the connection of %s", m.Seq, clip(m.Source), clip(s.hs.Sender))
			case m.Target != s.hs.Receiver:
				return nil, protocolf("msg %d for %s, sent to %s", m.Seq, clip(m.Target), clip(s.hs.Receiver))
			case len(m.Payload) > int(s.hs.MaxMessage):
				return nil, protocolf("msg %d of %d bytes, over the limit of %d", m.Seq, len(m.Payload), s.hs.MaxMessage)
			case len(s.batch) >= int(s.hs.MaxBatch) || len(s.arena)+len(m.Payload) > s.maxBytes:
				return nil, protocolf("more than %d messages or %d bytes before a signature", s.hs.MaxBatch, s.maxBytes)
			}
			s.chain.Add(f)
			s.offs = append(s.offs, len(s.arena))
			s.arena = append(s.arena, m.Payload...)
			m.Payload = nil
			s.batch = append(s.batch, m)
		case TypeSig:
			sg, err := ParseSig(body)
			if err != nil {
				return nil, err
			}
			if len(s.batch) == 0 || sg.Seq != s.chain.Seq() {
				return nil, protocolf("sig up to %d where %d messages are unsigned up to %d", sg.Seq, len(s.batch), s.chain.Seq())
			}
			if !ed25519.Verify(s.peer, s.chain.SigSigned(), sg.Signature[:]) {
				return nil, protocolf("the sig up to %d does not verify with the key of %s", sg.Seq, clip(s.hs.Sender))
			}
			for i := range s.batch {
				end := len(s.arena)
				if i+1 < len(s.offs) {
					end = s.offs[i+1]
				}
				s.batch[i].Payload = s.arena[s.offs[i]:end:end]
			}
			return s.batch, nil
		case TypeClose:
			cl, err := ParseClose(body)
			if err != nil {
				return nil, err
			}
			if len(s.batch) > 0 {
				return nil, protocolf("closed with %d unsigned messages, which were discarded", len(s.batch))
			}
			if cl.Code == CodeNormal {
				return nil, io.EOF
			}
			return nil, cl
		default:
			return nil, protocolf("%s frame after the handshake", t)
		}
	}
}

// Close writes a close frame with code and reason. The caller closes the
// connection.
func (s *Server) Close(code uint16, reason string) error {
	cl := Close{Code: code, Reason: reason}
	_, err := s.rw.Write(cl.Append(nil))
	return err
}
