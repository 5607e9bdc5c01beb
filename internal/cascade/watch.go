package cascade

import (
	"context"
	"time"

	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/reputation"
)

// watchEvery is how often the watcher reads every sidecar's view of every
// agent: the resolution of the isolation times.
const watchEvery = 2 * time.Millisecond

// view is what one sidecar's reputation of an agent means for its calls.
type view struct {
	// cut: a destructive request from the agent is blocked (by the
	// operator rule or untrusted_caller).
	cut bool
	// untrusted: every request from or to it is blocked.
	untrusted bool
}

// track is when the mesh's views of one agent changed.
type track struct {
	firstCut, allCut             time.Time
	firstUntrusted, allUntrusted time.Time
}

// watcher follows every sidecar's view of every agent while an arm runs.
type watcher struct {
	nodes  []*reputation.Node
	ids    []string
	engine *policy.Engine
	target policy.Target
	memo   map[reputation.Points]view
	tracks []track
	stopc  chan struct{}
	done   chan struct{}
}

func newWatcher(r *runner, m *mesh) (*watcher, error) {
	t := r.plan.Topology
	engine, err := policy.New(policy.Config{Rules: []policy.Rule{r.rule}})
	if err != nil {
		return nil, err
	}
	exec, err := agentManifest(t.Agents[t.Layers[RoleExecute][0]])
	if err != nil {
		return nil, err
	}
	w := &watcher{engine: engine, target: policy.Target{Manifest: exec}, memo: map[reputation.Points]view{},
		tracks: make([]track, len(t.Agents)), stopc: make(chan struct{}), done: make(chan struct{})}
	for _, n := range m.nodes {
		w.nodes = append(w.nodes, n.rep)
	}
	for _, a := range t.Agents {
		w.ids = append(w.ids, a.ID)
	}
	return w, nil
}

// viewOf decides a destructive request from an attested, pinned caller
// with reputation p, as every ingress of the arm would.
func (w *watcher) viewOf(p reputation.Points, known bool) view {
	if !known {
		return view{}
	}
	if v, ok := w.memo[p]; ok {
		return v
	}
	rep := policy.Reputation{Known: true, Hundredths: int64(p), Level: reputation.TrustLevel(p)}
	d, err := w.engine.Decide(context.Background(), &policy.Input{
		Direction: policy.Ingress,
		Caller:    policy.Caller{AgentID: "watched", Authenticated: true, Attested: true, TrustLevel: manifest.Trusted, Reputation: rep},
		Target:    w.target,
		Request:   policy.Request{Method: "POST", Path: "/proxy", Body: map[string]any{"task": "delete", "id": "watch", "input": ""}},
	})
	v := view{cut: err != nil || d.Outcome == policy.Block, untrusted: rep.Level == manifest.Untrusted}
	w.memo[p] = v
	return v
}

func (w *watcher) run() {
	defer close(w.done)
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		w.look(time.Now())
		select {
		case <-w.stopc:
			w.look(time.Now())
			return
		case <-tick.C:
		}
	}
}

// look reads every view once and notes the first time each threshold is
// crossed somewhere and everywhere.
func (w *watcher) look(now time.Time) {
	for i, id := range w.ids {
		cut, untrusted := 0, 0
		for _, n := range w.nodes {
			p, known := n.Score(id)
			v := w.viewOf(p, known)
			if v.cut {
				cut++
			}
			if v.untrusted {
				untrusted++
			}
		}
		tr := &w.tracks[i]
		mark := func(t *time.Time, hit bool) {
			if hit && t.IsZero() {
				*t = now
			}
		}
		mark(&tr.firstCut, cut > 0)
		mark(&tr.allCut, cut == len(w.nodes))
		mark(&tr.firstUntrusted, untrusted > 0)
		mark(&tr.allUntrusted, untrusted == len(w.nodes))
	}
}

func (w *watcher) stop() {
	close(w.stopc)
	<-w.done
}

// finalViews counts, per agent, the sidecars whose view at the end of the
// rounds cuts it off.
type finalViews struct {
	cut, untrusted []int
}

// final reads every view once more; call it after stop.
func (w *watcher) final() *finalViews {
	f := &finalViews{cut: make([]int, len(w.ids)), untrusted: make([]int, len(w.ids))}
	for i, id := range w.ids {
		for _, n := range w.nodes {
			p, known := n.Score(id)
			v := w.viewOf(p, known)
			if v.cut {
				f.cut[i]++
			}
			if v.untrusted {
				f.untrusted[i]++
			}
		}
	}
	return f
}
