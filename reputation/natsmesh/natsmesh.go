// Package natsmesh carries a reputation.Node's events over NATS JetStream,
// for meshes of many nodes.
//
// Every node publishes the events it signs on one subject, captured by one
// stream that keeps them for the node's MaxEventAge, and reads the stream
// through its own durable consumer: a node that joins late, or comes back
// after a restart, reads what it missed. An event is acknowledged to the
// stream only once the node has applied it durably. Events carry the
// reporter's signature, so the NATS server is trusted with delivery, not
// with content: a forged event is refused by every node.
//
// Losing the server never stops local decisions: Report and Score work on,
// events to publish wait in a bounded queue and flow again on reconnect;
// if the queue overflowed, the node republishes every event it signed
// within MaxEventAge once the server is back (receivers drop duplicates).
package natsmesh

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/iatp/iatp/reputation"
)

// Defaults of Config.
const (
	DefaultSubject = "iatp.reputation.events"
	DefaultStream  = "IATP_REPUTATION"
	DefaultQueue   = 8192
	DefaultBatch   = 256
	// DrainTimeout bounds how long Close waits for queued events to be
	// published.
	DrainTimeout = 2 * time.Second
)

// Config configures the NATS transport. Node and URL are required.
type Config struct {
	Node *reputation.Node
	// URL of the NATS server(s), comma-separated (reputation.nats.url).
	URL string
	// Options are extra connection options (credentials, TLS).
	Options []nats.Option
	// Subject events are published on. If "", DefaultSubject.
	Subject string
	// Stream that keeps them. If "", DefaultStream.
	Stream string
	// Durable names this node's consumer. If "", derived from the node's
	// agent id and database instance, so that a node with a new database
	// reads the stream from its start.
	Durable string
	// Replicas of the stream in a clustered server. If 0, 1.
	Replicas int
	// Queue bounds the events waiting to be published. If 0, DefaultQueue.
	Queue int
	// Logger. If nil, slog.Default().
	Logger *slog.Logger
}

// Mesh is the NATS transport of one node. New registers it with the node,
// whose Close closes it.
type Mesh struct {
	cfg   Config
	node  *reputation.Node
	log   *slog.Logger
	nc    *nats.Conn
	queue chan reputation.SignedEvent
	in    chan jetstream.Msg
	stop  chan struct{}
	wg    sync.WaitGroup

	closed    atomic.Bool
	resync    atomic.Bool
	dropped   atomic.Uint64
	published atomic.Uint64
	received  atomic.Uint64

	mu   sync.Mutex
	js   jetstream.JetStream
	cons jetstream.ConsumeContext
}

var _ reputation.Transport = (*Mesh)(nil)

// New connects (in the background: a server that is down now is retried
// for ever) and starts publishing and consuming.
func New(cfg Config) (*Mesh, error) {
	if cfg.Node == nil {
		return nil, errors.New("natsmesh: Node is required")
	}
	if cfg.URL == "" {
		return nil, errors.New("natsmesh: URL is required")
	}
	if cfg.Subject == "" {
		cfg.Subject = DefaultSubject
	}
	if cfg.Stream == "" {
		cfg.Stream = DefaultStream
	}
	if cfg.Durable == "" {
		sum := sha256.Sum256([]byte(cfg.Node.AgentID() + "\x00" + cfg.Node.Instance()))
		cfg.Durable = "iatp-" + hex.EncodeToString(sum[:12])
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = 1
	}
	if cfg.Queue == 0 {
		cfg.Queue = DefaultQueue
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Mesh{
		cfg: cfg, node: cfg.Node, log: cfg.Logger,
		queue: make(chan reputation.SignedEvent, cfg.Queue),
		in:    make(chan jetstream.Msg, DefaultBatch),
		stop:  make(chan struct{}),
	}
	opts := append([]nats.Option{
		nats.Name("iatp-reputation " + cfg.Node.AgentID()),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectHandler(func(*nats.Conn) { m.log.Info("natsmesh: reconnected") }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if !m.closed.Load() {
				m.log.Warn("natsmesh: disconnected; events queue until the server is back", "err", err)
			}
		}),
	}, cfg.Options...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("natsmesh: connect: %w", err)
	}
	m.nc = nc
	m.wg.Add(3)
	go m.setup()
	go m.publisher()
	go m.applier()
	cfg.Node.AddTransport(m)
	return m, nil
}

// Publish queues the events this node signed (events from elsewhere are
// on the stream already). It never blocks: when the queue is full the
// event is dropped and the node republishes its own events once the
// server is back.
func (m *Mesh) Publish(b reputation.Batch) {
	if b.Source != "" || m.closed.Load() {
		return
	}
	for _, ev := range b.Events {
		if ev.Body.Reporter != m.node.AgentID() {
			continue
		}
		select {
		case m.queue <- ev:
		default:
			m.dropped.Add(1)
			m.resync.Store(true)
		}
	}
}

// Stats are the transport's counters.
type Stats struct {
	Published, Received, Dropped uint64
	Queued                       int
	Connected                    bool
}

// Stats returns the transport's counters.
func (m *Mesh) Stats() Stats {
	return Stats{Published: m.published.Load(), Received: m.received.Load(), Dropped: m.dropped.Load(),
		Queued: len(m.queue), Connected: m.nc.IsConnected()}
}

// Close publishes what is queued (within ctx), stops consuming and closes
// the connection.
func (m *Mesh) Close(ctx context.Context) error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Let the publisher drain the queue while ctx allows, for at most
	// DrainTimeout.
	deadline := time.Now().Add(DrainTimeout)
	for len(m.queue) > 0 && ctx.Err() == nil && m.nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	close(m.stop)
	m.mu.Lock()
	if m.cons != nil {
		m.cons.Stop()
	}
	m.mu.Unlock()
	done := make(chan struct{})
	go func() { m.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("natsmesh: close: %w", ctx.Err())
	}
	m.nc.Close()
	return err
}

// setup creates the stream and this node's consumer, retrying until the
// server answers, then starts consuming.
func (m *Mesh) setup() {
	defer m.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		err := m.start()
		if err == nil {
			return
		}
		m.log.Debug("natsmesh: setup failed; retrying", "err", err)
		select {
		case <-time.After(backoff + rand.N(backoff/2)):
		case <-m.stop:
			return
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

func (m *Mesh) start() error {
	js, err := jetstream.New(m.nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:       m.cfg.Stream,
		Subjects:   []string{m.cfg.Subject},
		MaxAge:     m.node.MaxEventAge(),
		Storage:    jetstream.FileStorage,
		Replicas:   m.cfg.Replicas,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, m.cfg.Stream, jetstream.ConsumerConfig{
		Durable:       m.cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckWait:       30 * time.Second,
		MaxDeliver:    50,
		MaxAckPending: 4 * DefaultBatch,
		// A consumer unused for as long as events are kept is useless:
		// its node would read the stream from the start anyway.
		InactiveThreshold: m.node.MaxEventAge(),
		FilterSubject:     m.cfg.Subject,
	})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		select {
		case m.in <- msg:
		case <-m.stop:
		}
	}, jetstream.PullMaxMessages(DefaultBatch), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !m.closed.Load() {
			m.log.Debug("natsmesh: consume", "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	m.mu.Lock()
	m.js, m.cons = js, cc
	if m.closed.Load() {
		cc.Stop()
	}
	m.mu.Unlock()
	return nil
}

// applier applies received events in batches and acknowledges each once
// its outcome is final.
func (m *Mesh) applier() {
	defer m.wg.Done()
	for {
		var batch []jetstream.Msg
		select {
		case msg := <-m.in:
			batch = append(batch, msg)
		case <-m.stop:
			return
		}
	fill:
		for len(batch) < DefaultBatch {
			select {
			case msg := <-m.in:
				batch = append(batch, msg)
			default:
				break fill
			}
		}
		m.applyBatch(batch)
	}
}

func (m *Mesh) applyBatch(batch []jetstream.Msg) {
	evs := make([]reputation.SignedEvent, 0, len(batch))
	msgs := make([]jetstream.Msg, 0, len(batch))
	for _, msg := range batch {
		var ev reputation.SignedEvent
		if err := ev.UnmarshalJSON(msg.Data()); err != nil {
			m.log.Warn("natsmesh: dropping a malformed event", "err", err)
			_ = msg.Term()
			continue
		}
		evs = append(evs, ev)
		msgs = append(msgs, msg)
	}
	m.received.Add(uint64(len(batch)))
	if len(evs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, err := range m.node.ApplyBatch(ctx, "nats", evs) {
		switch {
		case err == nil, errors.Is(err, reputation.ErrDuplicate), errors.Is(err, reputation.ErrStale),
			errors.Is(err, reputation.ErrCellFull):
			_ = msgs[i].Ack()
		case errors.Is(err, reputation.ErrUnknownKey), errors.Is(err, reputation.ErrFuture), errors.Is(err, reputation.ErrStoreFull):
			// May be accepted later: a key learned, a clock caught up, room made.
			_ = msgs[i].NakWithDelay(30 * time.Second)
		case errors.Is(err, reputation.ErrUnsigned), errors.Is(err, reputation.ErrBadSignature), errors.Is(err, reputation.ErrInvalidEvent):
			m.log.Warn("natsmesh: refusing an event", "id", evs[i].ID, "err", err)
			_ = msgs[i].Term()
		default:
			_ = msgs[i].NakWithDelay(time.Second) // the node could not write: retry
		}
	}
}

// publisher publishes queued events one by one, waiting for the stream's
// acknowledgement, and retries one that failed until the server is back.
func (m *Mesh) publisher() {
	defer m.wg.Done()
	backoff := 50 * time.Millisecond
	var pending *reputation.SignedEvent
	for {
		if pending == nil {
			select {
			case ev := <-m.queue:
				pending = &ev
			case <-m.stop:
				return
			}
		}
		if err := m.publish(pending); err != nil {
			select {
			case <-time.After(backoff):
			case <-m.stop:
				return
			}
			backoff = min(2*backoff, 2*time.Second)
			continue
		}
		pending, backoff = nil, 50*time.Millisecond
		if m.resync.CompareAndSwap(true, false) {
			m.republish()
		}
	}
}

func (m *Mesh) publish(ev *reputation.SignedEvent) error {
	m.mu.Lock()
	js := m.js
	m.mu.Unlock()
	if js == nil {
		return errors.New("not set up yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := js.Publish(ctx, m.cfg.Subject, ev.AppendJSON(nil), jetstream.WithMsgID(ev.ID))
	if err == nil {
		m.published.Add(1)
	}
	return err
}

// republish sends again every event this node signed within MaxEventAge,
// after the queue dropped some.
func (m *Mesh) republish() {
	evs, err := m.node.LocalEvents(time.Now().Add(-m.node.MaxEventAge()), 1<<20)
	if err != nil {
		m.log.Warn("natsmesh: cannot read events to republish", "err", err)
		m.resync.Store(true)
		return
	}
	m.log.Info("natsmesh: republishing this node's events after the queue overflowed", "events", len(evs))
	for i := range evs {
		for m.publish(&evs[i]) != nil {
			select {
			case <-time.After(250 * time.Millisecond):
			case <-m.stop:
				return
			}
		}
	}
}
