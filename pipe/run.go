package pipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/pipe/frame"
	"github.com/iatp/iatp/pipeline"
)

// Run is a running pipeline. Send puts values in; Results gives what comes
// out. Close ends it once everything sent is through; cancelling the
// context given to Open ends it at once. Either way, every goroutine it
// started has ended when Wait returns. A Run is safe for concurrent use.
type Run[In, Out any] struct {
	rt      *shared
	entry   *sink[In]
	results chan Result[Out]
	links   sync.Pool // *link[In] from the owner to the first stage
	parent  context.Context
	cancel  context.CancelFunc

	mu        sync.RWMutex // held shared by each Send, exclusively to close
	closed    bool
	closeOnce sync.Once
	closing   chan struct{} // closed by Close
	done      chan struct{} // closed once every goroutine has ended
	err       error         // why the run ended early, set before done
}

// Open checks cfg and p and starts p: every stage's workers, each with a
// buffer of cfg.Buffer messages. It refuses a pipe without a policy engine
// (ErrNoPolicy) unless cfg.WithoutPolicyUnsafe, and a pipe with a stage
// whose agent is untrusted (ErrUntrusted). The pipeline runs until Close,
// or until ctx ends.
func Open[In, Out any](ctx context.Context, cfg Config, p Pipe[In, Out]) (*Run[In, Out], error) {
	if p.build == nil {
		return nil, errors.New("pipe: an empty Pipe (start one with From)")
	}
	cfg, err := cfg.resolve()
	if err = errors.Join(err, p.err); err != nil {
		return nil, err
	}
	for _, m := range slices.Concat(p.agents, []*manifest.Manifest{cfg.Owner}) {
		if why := untrusted(m, cfg.Reporter); why != "" {
			return nil, fmt.Errorf("%w: %q may not take part in a pipeline: %s", ErrUntrusted, m.AgentID(), why)
		}
	}
	if p.first != nil && p.first.Agent() != cfg.Owner.AgentID() {
		return nil, fmt.Errorf("pipe: the owner %q sends to the remote stage %q over a connection that speaks for %q",
			cfg.Owner.AgentID(), p.first.Receiver(), p.first.Agent())
	}
	rctx, cancel := context.WithCancel(ctx)
	rt := &shared{ctx: rctx, cfg: cfg, owner: caller(cfg.Owner)}
	// A stage's failure is recorded under the trace id of its message:
	// NewTraceID (nil: the pipeline's own) is never asked for one.
	rt.record = pipeline.New(pipeline.Config{Recorder: cfg.Recorder, AgentID: cfg.Owner.AgentID(), Clock: cfg.Clock,
		NewTraceID: cfg.NewID, OnRecordError: rt.onRecordError()})
	r := &Run[In, Out]{rt: rt, results: make(chan Result[Out], cfg.Buffer), parent: ctx, cancel: cancel,
		closing: make(chan struct{}), done: make(chan struct{})}
	rt.fail = func(err error) {
		res := Result[Out]{Err: err}
		var e *Error
		if errors.As(err, &e) {
			res.Meta = e.Meta
		}
		select {
		case r.results <- res:
		case <-rctx.Done():
		}
	}
	exit := &sink[Out]{rt: rt, agent: cfg.Owner, id: cfg.Owner.AgentID(), typ: TypeName[Out](), exit: true}
	exit.push = r.pushResult
	b := &builder{rt: rt}
	r.entry = p.build(b, []*sink[Out]{exit})[0]
	if b.err != nil {
		cancel()
		return nil, b.err
	}
	r.entry.addSender()
	r.links.New = func() any { return newLink(rt, rt.owner, r.entry, false, false) }
	for _, start := range b.starts {
		start()
	}
	go r.closer()
	return r, nil
}

// closer closes the results once the run is over: after Close, when every
// stage has drained its buffer; after the context ended, when every
// worker has stopped.
func (r *Run[In, Out]) closer() {
	select {
	case <-r.closing:
	case <-r.rt.ctx.Done():
	}
	r.rt.workers.Wait()
	r.mu.Lock() // wait for the Sends under way
	r.closed = true
	r.err = r.parent.Err() // the context ended before the stages did
	close(r.results)
	r.mu.Unlock()
	r.cancel()
	close(r.done)
}

// Send sends v into the pipeline as a message from the owner to the first
// stage, under a new trace id, and returns the message's Meta. It waits
// for room in the first stage's buffer at most the send timeout. An error
// means v did not enter: the *Error names the check that refused it. What
// happens to v later comes out of Results.
func (r *Run[In, Out]) Send(ctx context.Context, v In) (Meta, error) {
	return r.send(ctx, "", v)
}

// SendTrace is Send under the trace id traceID, such as the one of the
// request the owner is serving: 1–128 characters of [A-Za-z0-9._:-],
// holding no sensitive data.
func (r *Run[In, Out]) SendTrace(ctx context.Context, traceID string, v In) (Meta, error) {
	if why := wire.CheckTraceID(traceID); why != "" {
		return Meta{}, fmt.Errorf("%w: %s", ErrTraceID, why)
	}
	if found := detect.ScanText([]byte(traceID)); found != 0 {
		return Meta{}, fmt.Errorf("%w: it holds sensitive data (%s)", ErrTraceID, found)
	}
	return r.send(ctx, traceID, v)
}

func (r *Run[In, Out]) send(ctx context.Context, traceID string, v In) (Meta, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed || r.rt.ctx.Err() != nil {
		return Meta{}, ErrClosed
	}
	l := r.links.Get().(*link[In])
	if traceID == "" {
		traceID = l.newID()
	}
	m, err := l.send(ctx, envelope[In]{value: v, meta: Meta{TraceID: traceID}}, nil)
	r.links.Put(l)
	return m, err
}

// inject sends a message received over a socket to the first stage; what
// stops it goes to Results.
func (r *Run[In, Out]) inject(ctx context.Context, l *link[In], m *frame.Msg) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed || r.rt.ctx.Err() != nil {
		return ErrClosed
	}
	env := envelope[In]{meta: Meta{ID: m.ID, TraceID: m.TraceID, Source: m.Source, Target: m.Target, Type: m.Type}}
	if _, err := l.send(ctx, env, m.Payload); err != nil {
		r.rt.fail(err)
	}
	return nil
}

// pushResult hands a message for the owner to Results.
func (r *Run[In, Out]) pushResult(ctx context.Context, env *envelope[Out], _ *pipeline.Exchange, wait bool) *pipeline.Refusal {
	res := Result[Out]{Value: env.value, Meta: env.meta}
	select {
	case r.results <- res:
		return nil
	default:
	}
	var timeout <-chan time.Time
	if !wait {
		t := time.NewTimer(r.rt.cfg.SendTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case r.results <- res:
		return nil
	case <-timeout:
		return r.rt.fullRefusal(env.meta.Target + " (the owner, who is not reading Results)")
	case <-ctx.Done():
		return canceledRefusal(env.meta.Target, ctx.Err())
	case <-r.rt.ctx.Done():
		return canceledRefusal(env.meta.Target, r.rt.ctx.Err())
	}
}

// Results returns the channel of what comes out of the pipeline: each
// value that reached the owner, and each error that stopped a message
// after it entered. It is closed once the run is over; the pipeline waits
// while nobody reads it.
func (r *Run[In, Out]) Results() <-chan Result[Out] { return r.results }

// Close ends the run once everything sent so far is through: Send then
// returns ErrClosed, each stage drains its buffer, and Results is closed.
// It does not wait; Wait does.
func (r *Run[In, Out]) Close() {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.entry.senderDone()
		close(r.closing)
	})
}

// Wait waits until the run is over and every goroutine it started has
// ended. It returns the context's error when the run was cut short by
// it, and nil after Close.
func (r *Run[In, Out]) Wait() error {
	<-r.done
	return r.err
}

// Checks returns the names of the checks every message from the owner to
// the first stage passes, in order.
func (r *Run[In, Out]) Checks() []string {
	l := r.links.Get().(*link[In])
	defer r.links.Put(l)
	return l.p.Names()
}
