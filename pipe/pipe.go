package pipe

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
)

// Pipe is a pipeline from In to Out, not yet running: stages composed by
// From, Then, FanOut and FanIn. Open runs it; one Pipe may be opened any
// number of times.
type Pipe[In, Out any] struct {
	build  func(b *builder, next []*sink[Out]) []*sink[In]
	agents []*manifest.Manifest // every stage's agent, for Open's checks
	last   []string             // the agents of the stages whose output leaves
	first  *Sender              // set when the first stage is remote
	err    error
}

// From starts a pipe with its first stage.
func From[In, Out any](s Stage[In, Out]) Pipe[In, Out] {
	p := Pipe[In, Out]{
		build:  func(b *builder, next []*sink[Out]) []*sink[In] { return []*sink[In]{newNode(b, s, next)} },
		agents: []*manifest.Manifest{s.agent},
		last:   []string{s.Agent()},
		first:  s.remote,
		err:    s.check(),
	}
	return p
}

// Then adds stage s after p: each output of p becomes a message to s.
func Then[In, Mid, Out any](p Pipe[In, Mid], s Stage[Mid, Out]) Pipe[In, Out] {
	err := errors.Join(p.err, s.check())
	if s.remote != nil {
		err = errors.Join(err, p.remoteFrom(s.remote))
	}
	return Pipe[In, Out]{
		build: func(b *builder, next []*sink[Out]) []*sink[In] {
			return p.build(b, []*sink[Mid]{newNode(b, s, next)})
		},
		agents: append(slices.Clone(p.agents), s.agent),
		last:   []string{s.Agent()},
		first:  p.first,
		err:    err,
	}
}

// FanOut adds branches after p: each output of p becomes a message to
// every branch, and what the branches send goes on, merged, to whatever
// follows (FanIn collects it per output of p).
func FanOut[In, Mid, Out any](p Pipe[In, Mid], branches ...Stage[Mid, Out]) Pipe[In, Out] {
	err := p.err
	if len(branches) == 0 {
		err = errors.Join(err, errors.New("pipe: FanOut without branches"))
	}
	agents, last := slices.Clone(p.agents), []string{}
	for _, br := range branches {
		err = errors.Join(err, br.check())
		if br.remote != nil {
			err = errors.Join(err, fmt.Errorf("pipe: remote stage %q cannot be a branch of a fan-out", br.Agent()))
		}
		agents, last = append(agents, br.agent), append(last, br.Agent())
	}
	return Pipe[In, Out]{
		build: func(b *builder, next []*sink[Out]) []*sink[In] {
			sinks := make([]*sink[Mid], len(branches))
			for i, br := range branches {
				sinks[i] = newNode(b, br, next)
			}
			return p.build(b, sinks)
		},
		agents: agents,
		last:   last,
		first:  p.first,
		err:    err,
	}
}

// FanIn adds stage s after p, collecting the messages that come of one
// output of the latest FanOut before it: s runs once they have all
// arrived, on their values in the order of the branches. When one of them
// was stopped, s does not run for that output. Without a FanOut before
// it, s runs on each message alone.
func FanIn[In, Mid, Out any](p Pipe[In, Mid], s Stage[[]Mid, Out]) Pipe[In, Out] {
	err := errors.Join(p.err, s.check())
	if s.remote != nil {
		err = errors.Join(err, fmt.Errorf("pipe: remote stage %q cannot collect a fan-in", s.Agent()))
	}
	return Pipe[In, Out]{
		build: func(b *builder, next []*sink[Out]) []*sink[In] {
			return p.build(b, []*sink[Mid]{newFanIn(b, s, next)})
		},
		agents: append(slices.Clone(p.agents), s.agent),
		last:   []string{s.Agent()},
		first:  p.first,
		err:    err,
	}
}

// remoteFrom checks that the stages before a remote stage are the agent
// the connection speaks for.
func (p Pipe[In, Out]) remoteFrom(s *Sender) error {
	for _, id := range p.last {
		if id != s.Agent() {
			return fmt.Errorf("pipe: stage %q sends to the remote stage %q over a connection that speaks for %q", id, s.Receiver(), s.Agent())
		}
	}
	return nil
}

// builder collects the nodes of a pipeline being opened.
type builder struct {
	rt     *shared
	starts []func()
	err    error
}

// shared is what the nodes of one running pipeline share.
type shared struct {
	ctx     context.Context
	cfg     Config
	owner   policy.Caller
	workers sync.WaitGroup
	// record records what fails outside a check list (a stage's function).
	record *pipeline.Pipeline
	// fail hands an error to the owner's results; set by Open.
	fail func(err error)
}

// reputation returns what the reporter holds about an agent.
func (rt *shared) reputation(agentID string) policy.Reputation {
	if rt.cfg.Reporter == nil {
		return policy.Reputation{}
	}
	return rt.cfg.Reporter.Reputation(agentID)
}

// caller returns the policy's view of a local agent sending a message:
// authenticated by construction, at the level its manifest claims.
func caller(m *manifest.Manifest) policy.Caller {
	return policy.Caller{AgentID: m.AgentID(), Authenticated: true, TrustLevel: m.TrustLevel}
}

// failed hands err to the owner and settles the message's group.
func (rt *shared) failed(err error, g *group) {
	if g != nil {
		g.fail()
	}
	rt.fail(err)
}

// envelope is a message inside a running pipeline.
type envelope[T any] struct {
	value T
	meta  Meta
	group *group // the fan-out the message comes of, if any
	slot  int    // its branch in group
}

// sink is where messages of type T are delivered: a stage's buffer, the
// owner's results or a connection to another process.
type sink[T any] struct {
	rt    *shared
	agent *manifest.Manifest
	id    string
	typ   string
	// push delivers env; wait means without the send timeout.
	push func(ctx context.Context, env *envelope[T], x *pipeline.Exchange, wait bool) *pipeline.Refusal
	// after, if not nil, runs once a message was delivered.
	after func(ctx context.Context, env *envelope[T])
	// inbox is a stage's buffer, closed once every sender is done.
	inbox   chan envelope[T]
	senders atomic.Int32
	exit    bool
	remote  *Sender
}

func (s *sink[T]) addSender() { s.senders.Add(1) }

func (s *sink[T]) senderDone() {
	if s.senders.Add(-1) == 0 && s.inbox != nil {
		close(s.inbox)
	}
}

// pushInbox puts env into the stage's buffer, waiting for room at most
// the send timeout (or, with wait, until the context ends).
func (s *sink[T]) pushInbox(ctx context.Context, env *envelope[T], _ *pipeline.Exchange, wait bool) *pipeline.Refusal {
	select {
	case s.inbox <- *env:
		return nil
	default:
	}
	var timeout <-chan time.Time
	if !wait {
		t := time.NewTimer(s.rt.cfg.SendTimeout)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case s.inbox <- *env:
		return nil
	case <-timeout:
		return s.rt.fullRefusal(s.id)
	case <-ctx.Done():
		return canceledRefusal(s.id, ctx.Err())
	case <-s.rt.ctx.Done():
		return canceledRefusal(s.id, s.rt.ctx.Err())
	}
}

// newNode returns the sink of a stage that sends to next, and registers
// its workers to be started.
func newNode[In, Out any](b *builder, s Stage[In, Out], next []*sink[Out]) *sink[In] {
	if s.remote != nil {
		return newRemote(b, s, next)
	}
	in := &sink[In]{rt: b.rt, agent: s.agent, id: s.Agent(), typ: TypeName[In](), inbox: make(chan envelope[In], b.rt.cfg.Buffer)}
	in.push = in.pushInbox
	for _, nx := range next {
		nx.addSender()
	}
	n := &node[In, Out]{rt: b.rt, stage: s, in: in, next: next}
	b.starts = append(b.starts, func() { n.start(n.work) })
	return in
}

// node is a running stage.
type node[In, Out any] struct {
	rt    *shared
	stage Stage[In, Out]
	in    *sink[In]
	next  []*sink[Out]
	live  atomic.Int32
}

// start runs the stage's workers; when the last one ends, every sink it
// sends to has one sender less.
func (n *node[In, Out]) start(work func(links []*link[Out])) {
	n.live.Store(int32(n.stage.workers))
	n.rt.workers.Add(n.stage.workers)
	for range n.stage.workers {
		links := make([]*link[Out], len(n.next))
		for i, nx := range n.next {
			links[i] = newLink(n.rt, caller(n.stage.agent), nx, false, true)
		}
		go func() {
			defer n.rt.workers.Done()
			defer func() {
				if n.live.Add(-1) == 0 {
					for _, nx := range n.next {
						nx.senderDone()
					}
				}
			}()
			work(links)
		}()
	}
}

// receive waits for the next message; false when the stage is done.
func (n *node[In, Out]) receive() (envelope[In], bool) {
	if n.rt.ctx.Err() != nil {
		return envelope[In]{}, false
	}
	select {
	case env, ok := <-n.in.inbox:
		return env, ok
	case <-n.rt.ctx.Done():
		return envelope[In]{}, false
	}
}

// work runs the stage on each message it receives.
func (n *node[In, Out]) work(links []*link[Out]) {
	for {
		env, ok := n.receive()
		if !ok {
			return
		}
		out, err := n.call(env.value)
		if err != nil {
			n.rt.stageFailed(&env.meta, env.group, err)
			continue
		}
		emit(n.rt, links, env.meta.TraceID, env.group, env.slot, out)
	}
}

// call runs the stage's function; a panic is its failure.
func (n *node[In, Out]) call(v In) (out Out, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	return n.stage.fn(n.rt.ctx, v)
}

// emit sends v, the output of one message, to every link: one message
// each, all of the trace traceID. Sent to several links, the messages
// form a new group inside g.
func emit[T any](rt *shared, links []*link[T], traceID string, g *group, slot int, v T) {
	if len(links) > 1 {
		g = newGroup(len(links), g, slot)
	}
	for i, l := range links {
		env := envelope[T]{value: v, meta: Meta{TraceID: traceID}, group: g, slot: slot}
		if len(links) > 1 {
			env.slot = i
		}
		if _, err := l.send(rt.ctx, env, nil); err != nil {
			rt.failed(err, env.group)
		}
	}
}

// stageFailed records a stage's failure on the message m and hands the
// error to the owner.
func (rt *shared) stageFailed(m *Meta, g *group, err error) {
	msg := "stage " + m.Target + " failed: " + pipeline.ScrubbedText(err.Error())
	x := pipeline.Acquire()
	x.Kind = pipeline.Message
	x.TraceID, x.TargetID = m.TraceID, m.Target
	x.Caller = policy.Caller{AgentID: m.Source, Authenticated: true}
	pm := policy.Message{ID: m.ID, TraceID: m.TraceID, Source: m.Source, Target: m.Target, Type: m.Type, Size: m.Size}
	x.Message = &pm
	rt.record.Refuse(rt.ctx, x, &pipeline.Refusal{Status: 502, Reason: pipeline.Upstream, Msg: msg, Cause: err})
	pipeline.Release(x)
	rt.failed(&Error{Meta: *m, Check: "stage", Reason: pipeline.Upstream, Msg: pipeline.ScrubbedText(err.Error()), Cause: err, kind: ErrStage}, g)
}

// newFanIn returns the sink of a stage that collects the messages of one
// fan-out.
func newFanIn[T, Out any](b *builder, s Stage[[]T, Out], next []*sink[Out]) *sink[T] {
	in := &sink[T]{rt: b.rt, agent: s.agent, id: s.Agent(), typ: TypeName[T](), inbox: make(chan envelope[T], b.rt.cfg.Buffer)}
	in.push = in.pushInbox
	for _, nx := range next {
		nx.addSender()
	}
	n := &node[[]T, Out]{rt: b.rt, stage: s, next: next}
	b.starts = append(b.starts, func() {
		n.start(func(links []*link[Out]) {
			for {
				env, ok := receiveFrom(b.rt, in.inbox)
				if !ok {
					return
				}
				vals, g, slot := []T{env.value}, env.group, env.slot
				if g != nil {
					all, done := g.arrive(env.slot, env.value)
					if !done {
						continue
					}
					vals = make([]T, len(all))
					for i, v := range all {
						vals[i] = v.(T)
					}
					g, slot = g.parent, g.slot
				}
				out, err := n.call(vals)
				if err != nil {
					n.rt.stageFailed(&env.meta, g, err)
					continue
				}
				emit(n.rt, links, env.meta.TraceID, g, slot, out)
			}
		})
	})
	return in
}

// receiveFrom waits for the next message of inbox; false when it is
// closed or the pipeline's context ended.
func receiveFrom[T any](rt *shared, inbox chan envelope[T]) (envelope[T], bool) {
	if rt.ctx.Err() != nil {
		return envelope[T]{}, false
	}
	select {
	case env, ok := <-inbox:
		return env, ok
	case <-rt.ctx.Done():
		return envelope[T]{}, false
	}
}

// group follows the messages that come of one output sent to several
// stages (a fan-out), so that a FanIn can collect them: each either
// arrives or fails.
type group struct {
	mu      sync.Mutex
	n       int
	settled int
	failed  bool
	values  []any
	parent  *group // the group the output itself belongs to
	slot    int    // the output's branch in parent
}

func newGroup(n int, parent *group, slot int) *group {
	return &group{n: n, values: make([]any, n), parent: parent, slot: slot}
}

// arrive records the value of branch slot. Once every branch has settled
// and none failed, it returns the values in branch order and true.
func (g *group) arrive(slot int, v any) ([]any, bool) {
	g.mu.Lock()
	g.values[slot] = v
	g.settled++
	done, failed := g.settled == g.n, g.failed
	g.mu.Unlock()
	switch {
	case !done:
		return nil, false
	case failed:
		if g.parent != nil {
			g.parent.fail() // the collected output will never be sent
		}
		return nil, false
	}
	return g.values, true
}

// fail records a branch that was stopped.
func (g *group) fail() {
	g.mu.Lock()
	g.failed = true
	g.settled++
	done := g.settled == g.n
	g.mu.Unlock()
	if done && g.parent != nil {
		g.parent.fail()
	}
}
