package pipe

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/pipe/frame"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
)

// Defaults of DialConfig and ServeConfig.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultQueue            = 256
)

// DialConfig configures the sending end of a pipe between two processes.
type DialConfig struct {
	// Path is the receiver's Unix domain socket (required).
	Path string
	// Agent is the agent this connection speaks for: the source of every
	// message sent on it (required).
	Agent string
	// Key is Agent's private key, which signs the handshake and every
	// batch of messages (required).
	Key identity.PrivateKey
	// Receiver is the agent expected at the other end (required).
	Receiver string
	// ReceiverKey is the receiver's public key, pinned (required).
	ReceiverKey ed25519.PublicKey
	// Queue is how many messages wait to be written before senders wait;
	// 0 means DefaultQueue (256).
	Queue int
	// HandshakeTimeout bounds the dial and the handshake, and how long
	// Close waits for the receiver to take what is queued; 0 means
	// DefaultHandshakeTimeout (10 s).
	HandshakeTimeout time.Duration
}

// Sender is the sending end of a pipe between two processes: the
// connection a Remote stage writes to. A single goroutine writes the
// messages in order, chains them, and signs them in batches: when no
// other message is waiting, or when the receiver's batch limit is
// reached. Close it once the runs using it are over.
type Sender struct {
	cfg   DialConfig
	conn  net.Conn
	c     *frame.Client
	hs    frame.Handshake
	queue chan *[]byte

	mu      sync.RWMutex // held shared by each message queued, exclusively to close
	closed  bool
	done    chan struct{} // closed once the writer has stopped
	watched chan struct{} // closed once the watcher has stopped
	errMu   sync.Mutex
	err     error
	closer  sync.Once
	frames  sync.Pool
}

// Dial connects to the receiver at cfg.Path and runs the handshake: the
// receiver must be cfg.Receiver, proven by cfg.ReceiverKey, and accept
// cfg.Agent, proven by cfg.Key.
func Dial(ctx context.Context, cfg DialConfig) (*Sender, error) {
	if cfg.Path == "" {
		return nil, errors.New("pipe: dial: Path is required")
	}
	if cfg.Queue < 0 {
		return nil, fmt.Errorf("pipe: dial: Queue %d is negative", cfg.Queue)
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(hctx, "unix", cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("pipe: dial: %w", err)
	}
	if dl, ok := hctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(hctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	c, err := frame.NewClient(conn, frame.ClientConfig{Agent: cfg.Agent, Key: cfg.Key, Receiver: cfg.Receiver, ReceiverKey: cfg.ReceiverKey})
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = hctx.Err()
		}
		return nil, fmt.Errorf("pipe: dial %s: %w", cfg.Path, err)
	}
	conn.SetDeadline(time.Time{})
	s := &Sender{cfg: cfg, conn: conn, c: c, hs: c.Handshake(), queue: make(chan *[]byte, cfg.Queue),
		done: make(chan struct{}), watched: make(chan struct{})}
	s.frames.New = func() any { b := make([]byte, 0, 1024); return &b }
	go s.write()
	go s.watch()
	return s, nil
}

// Agent returns the agent the connection speaks for.
func (s *Sender) Agent() string { return s.hs.Sender }

// Receiver returns the agent at the other end.
func (s *Sender) Receiver() string { return s.hs.Receiver }

// Err returns why the connection failed, or nil.
func (s *Sender) Err() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func (s *Sender) fail(err error) {
	s.errMu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.errMu.Unlock()
	s.conn.Close()
}

// write writes the queued messages, signing a batch whenever the queue is
// empty or the receiver's limit is reached. It stops at the first error;
// after Close, it signs what is left and says goodbye.
func (s *Sender) write() {
	defer close(s.done)
	limit := int(s.hs.MaxBatch)
	for f := range s.queue {
		err := s.c.WriteMsg(*f)
		s.frames.Put(f)
		if err == nil && (s.c.Unsigned() >= limit || len(s.queue) == 0) {
			err = s.c.Sign()
		}
		if err != nil {
			s.fail(err)
			return
		}
	}
	if err := s.c.Close(frame.CodeNormal, "done"); err != nil {
		s.fail(err)
		return
	}
	s.conn.Close()
}

// watch waits for the receiver to close the connection.
func (s *Sender) watch() {
	defer close(s.watched)
	err := s.c.Closed()
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed && (errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)) {
		return
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("the receiver hung up")
	}
	s.fail(err)
}

// Close signs and writes what is queued, says goodbye and closes the
// connection. It returns the connection's error, if it failed.
func (s *Sender) Close() error {
	s.closer.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		s.mu.Unlock()
	})
	select {
	case <-s.done:
	case <-time.After(s.cfg.HandshakeTimeout):
		// The receiver takes nothing: give up on what is queued.
		s.fail(errors.New("the receiver took nothing for " + s.cfg.HandshakeTimeout.String() + "; what was queued is lost"))
		<-s.done
	}
	<-s.watched
	return s.Err()
}

// enqueue queues a msg frame for the writer, waiting for room at most
// timeout (or, when wait, until a context ends).
func (s *Sender) enqueue(ctx, run context.Context, m *frame.Msg, timeout time.Duration, wait bool) *pipeline.Refusal {
	if m.Source != s.hs.Sender {
		return pipeline.Refuse(http.StatusBadGateway, pipeline.Upstream,
			fmt.Sprintf("the connection to %s speaks for %s, not %s", s.hs.Receiver, s.hs.Sender, m.Source))
	}
	if len(m.Payload) > int(s.hs.MaxMessage) {
		return pipeline.Refuse(http.StatusRequestEntityTooLarge, pipeline.TooLarge,
			fmt.Sprintf("message of %d bytes, over the limit of %d bytes %s takes", len(m.Payload), s.hs.MaxMessage, s.hs.Receiver))
	}
	f := s.frames.Get().(*[]byte)
	b, err := frame.AppendMsg((*f)[:0], m)
	if err != nil {
		s.frames.Put(f)
		r := pipeline.Refuse(http.StatusBadRequest, pipeline.BadBody, "the message cannot be framed: "+err.Error())
		r.Cause = err
		return r
	}
	*f = b
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		s.frames.Put(f)
		return pipeline.Refuse(http.StatusBadGateway, pipeline.Upstream, "the connection to "+s.hs.Receiver+" is closed")
	}
	if s.Err() != nil {
		s.frames.Put(f)
		return s.failedRefusal()
	}
	select {
	case <-s.done:
		s.frames.Put(f)
		return s.failedRefusal()
	case s.queue <- f:
		return nil
	default:
	}
	var expire <-chan time.Time
	if !wait {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expire = t.C
	}
	select {
	case s.queue <- f:
		return nil
	case <-s.done:
		s.frames.Put(f)
		return s.failedRefusal()
	case <-expire:
		s.frames.Put(f)
		return pipeline.Refuse(http.StatusGatewayTimeout, pipeline.UpstreamTimeout,
			fmt.Sprintf("the connection to %s did not take the message within %s: its queue of %d stayed full", s.hs.Receiver, timeout, cap(s.queue)))
	case <-ctx.Done():
		s.frames.Put(f)
		return canceledRefusal(s.hs.Receiver, ctx.Err())
	case <-run.Done():
		s.frames.Put(f)
		return canceledRefusal(s.hs.Receiver, run.Err())
	}
}

func (s *Sender) failedRefusal() *pipeline.Refusal {
	err := s.Err()
	r := pipeline.Refuse(http.StatusBadGateway, pipeline.Upstream, "the connection to "+s.hs.Receiver+" failed")
	r.Cause = err
	return r
}

// Sent is what a pipe ending in a Remote stage yields for each message it
// sent: the message was checked here and handed to the connection, whose
// writer signs it; the receiver checks it again, and records what it
// does with it.
type Sent struct {
	// Receiver is the agent at the other end.
	Receiver string
}

// Remote returns a stage that sends its messages to the agent target at
// the other end of s. Each message is checked here, with target's
// manifest, before it is written, and again by the receiver. A remote
// stage ends a pipe: its results are Sent receipts.
func Remote[T any](s *Sender, target *manifest.Manifest) Stage[T, Sent] {
	return Stage[T, Sent]{agent: target, remote: s, workers: 1}
}

// newRemote returns the sink of a remote stage.
func newRemote[In, Out any](b *builder, s Stage[In, Out], next []*sink[Out]) *sink[In] {
	in := &sink[In]{rt: b.rt, agent: s.agent, id: s.Agent(), typ: TypeName[In](), remote: s.remote}
	in.push = func(ctx context.Context, env *envelope[In], x *pipeline.Exchange, wait bool) *pipeline.Refusal {
		m := env.meta
		return s.remote.enqueue(ctx, b.rt.ctx, &frame.Msg{ID: m.ID, TraceID: m.TraceID, Source: m.Source, Target: m.Target, Type: m.Type, Payload: x.Body},
			b.rt.cfg.SendTimeout, wait)
	}
	if len(next) != 1 || !next[0].exit {
		b.err = errors.Join(b.err, fmt.Errorf("pipe: remote stage %q must end the pipe", s.Agent()))
		return in
	}
	exit := next[0]
	in.after = func(ctx context.Context, env *envelope[In]) {
		sent := any(Sent{Receiver: s.remote.Receiver()}).(Out)
		exit.push(ctx, &envelope[Out]{value: sent, meta: env.meta}, nil, true)
	}
	return in
}

// ServeConfig configures the receiving end of pipes between processes.
type ServeConfig struct {
	// Key is the private key of the run's first stage, which signs the
	// handshake (required).
	Key identity.PrivateKey
	// Peers are the agents that may send, with their public keys
	// (required).
	Peers map[string]ed25519.PublicKey
	// MaxBatch is the most messages held before a signature; 0 means
	// frame.DefaultMaxBatch.
	MaxBatch int
	// HandshakeTimeout bounds each handshake; 0 means
	// DefaultHandshakeTimeout (10 s).
	HandshakeTimeout time.Duration
	// OnError, if not nil, learns why a connection ended badly; peer is
	// "" before the handshake.
	OnError func(peer string, err error)
	// MaxConns bounds the connections served at once, handshakes
	// included; one more is closed at once. 0 means DefaultMaxConns.
	MaxConns int
}

// DefaultMaxConns is ServeConfig.MaxConns when it is zero.
const DefaultMaxConns = 64

// Serve accepts senders on ln and sends their messages to r's first stage
// until ctx ends or r is over; then it closes ln and returns once every
// connection has ended. Each message is checked again here: its trace id,
// size, JSON, type, the verifiers, the policy for the peer as caller, then
// recorded and delivered. A message stopped here goes to r's Results.
func Serve[In, Out any](ctx context.Context, ln net.Listener, r *Run[In, Out], cfg ServeConfig) error {
	switch {
	case cfg.Key.IsZero():
		return errors.New("pipe: serve: Key is required")
	case len(cfg.Peers) == 0:
		return errors.New("pipe: serve: Peers is required")
	case r.entry.remote != nil:
		return errors.New("pipe: serve: the run's first stage is remote")
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	slots := make(chan struct{}, cfg.MaxConns)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopRun := context.AfterFunc(r.rt.ctx, cancel)
	defer stopRun()
	stop := context.AfterFunc(sctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	var err error
	for {
		conn, aerr := ln.Accept()
		if aerr != nil {
			if sctx.Err() == nil && !errors.Is(aerr, net.ErrClosed) {
				err = fmt.Errorf("pipe: serve: %w", aerr)
			}
			break
		}
		select {
		case slots <- struct{}{}:
		default:
			conn.Close()
			if cfg.OnError != nil {
				cfg.OnError("", fmt.Errorf("pipe: serve: %d connections already; one more refused", cfg.MaxConns))
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots }()
			defer wg.Done()
			serveConn(sctx, conn, r, cfg)
		}()
	}
	cancel()
	wg.Wait()
	return err
}

// serveConn runs one sender's connection.
func serveConn[In, Out any](ctx context.Context, conn net.Conn, r *Run[In, Out], cfg ServeConfig) {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	report := func(peer string, err error) {
		if cfg.OnError != nil && ctx.Err() == nil {
			cfg.OnError(peer, err)
		}
	}
	conn.SetDeadline(time.Now().Add(cfg.HandshakeTimeout))
	// A peer whose agent is untrusted is refused in the handshake, like a
	// stage at Open; later messages of a peer that falls meet the policy.
	admit := func(peer string) error {
		if why := untrusted(&manifest.Manifest{Identity: manifest.Identity{AgentID: peer}}, r.rt.cfg.Reporter); why != "" {
			return fmt.Errorf("%s is untrusted: %s", peer, why)
		}
		return nil
	}
	srv, err := frame.NewServer(conn, frame.ServerConfig{Agent: r.entry.id, Key: cfg.Key, Peers: cfg.Peers,
		MaxMessage: r.rt.cfg.MaxMessageBytes, MaxBatch: cfg.MaxBatch, Admit: admit})
	if err != nil {
		report("", err)
		return
	}
	conn.SetDeadline(time.Time{})
	peer := srv.Handshake().Sender
	// A peer is authenticated by its pinned key, as trusted_agents are.
	l := newLink(r.rt, policy.Caller{AgentID: peer, Authenticated: true, TrustLevel: manifest.Trusted}, r.entry, true, true)
	for {
		batch, err := srv.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				if errors.Is(err, frame.ErrProtocol) {
					srv.Close(frame.CodeProtocol, frame.Reason(err))
				}
				report(peer, err)
			}
			return
		}
		for i := range batch {
			if err := r.inject(ctx, l, &batch[i]); err != nil {
				srv.Close(frame.CodeClosed, "the receiving pipeline is closed")
				return
			}
		}
	}
}
