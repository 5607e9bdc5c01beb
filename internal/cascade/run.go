package cascade

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/reputation"
)

// Streams of the seed: each part of the run draws from its own, so that
// changing one parameter leaves the others' draws alone.
const (
	streamTopology = 1
	streamTraffic  = 2
	streamPeers    = 3
)

// runner is one run: the plan, the identities and the shared clock.
type runner struct {
	cfg   Config
	plan  *Plan
	keys  *keyring
	rule  policy.Rule
	dir   string
	clock func() time.Time
}

// arm is one arm being run.
type arm struct {
	name string
	r    *runner
	mesh *mesh
	led  *ledger
}

// Run runs the experiment: it draws the mesh and the traffic from the
// seed, then runs each arm of cfg.Arms on them in turn and measures it.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	started := time.Now()
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	t, err := NewTopology(cfg.Agents, cfg.Fanout, cfg.BadShare, rand.New(rand.NewPCG(cfg.Seed, streamTopology)))
	if err != nil {
		return nil, err
	}
	for _, a := range t.Agents {
		if _, err := agentManifest(a); err != nil {
			return nil, fmt.Errorf("cascade: manifest of %s: %w", a.ID, err)
		}
	}
	rule := policy.Rule{Name: RuleName, When: cfg.Rule, Decision: "block",
		Reason: "a destructive task needs a caller with a trust score of at least 7"}
	if _, err := policy.New(policy.Config{Rules: []policy.Rule{rule}}); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	r := &runner{cfg: cfg, rule: rule,
		plan:  NewPlan(t, cfg.Rounds, cfg.Params, rand.New(rand.NewPCG(cfg.Seed, streamTraffic))),
		clock: windowClock(time.Now())}
	if r.keys, err = newKeyring(t, r.clock()); err != nil {
		return nil, err
	}
	r.dir = cfg.Dir
	if r.dir == "" {
		if r.dir, err = os.MkdirTemp("", "iatp-cascade-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(r.dir)
	} else if err := os.MkdirAll(r.dir, 0o700); err != nil {
		return nil, err
	}
	res := newResult(cfg, r.plan)
	for _, name := range cfg.Arms {
		ar, err := r.runArm(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("cascade: arm %s: %w", name, err)
		}
		res.Arms = append(res.Arms, ar)
	}
	res.Seconds = time.Since(started).Seconds()
	return res, nil
}

// windowClock returns the clock every sidecar of the run shares: real time
// shifted so that the run starts at the top of an hour. Reputation caps
// and reporters' standing are counted per window (one hour, aligned on the
// epoch); a run that crossed into a new window would count differently
// from one that did not, and counts must not depend on the time of day.
func windowClock(now time.Time) func() time.Time {
	shift := now.Truncate(time.Hour).Add(time.Hour).Sub(now)
	return func() time.Time { return time.Now().Add(shift) }
}

func (r *runner) peerRand(i int) *rand.Rand {
	return rand.New(rand.NewPCG(r.cfg.Seed, streamPeers<<32|uint64(i)))
}

func (r *runner) progress(format string, args ...any) {
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, format+"\n", args...)
	}
}

// runArm starts the arm's mesh, replays the plan round by round and
// measures what happened.
func (r *runner) runArm(ctx context.Context, name string) (ArmResult, error) {
	a := &arm{name: name, r: r, led: newLedger()}
	sidecars := name != ArmControl
	transport := ""
	if name == ArmIATP {
		transport = r.cfg.Transport
	}
	t0 := time.Now()
	r.progress("%s: starting %d agents%s", name, len(r.plan.Topology.Agents), map[bool]string{true: " behind sidecars", false: ""}[sidecars])
	m, err := r.startMesh(ctx, a, sidecars, transport)
	if err != nil {
		return ArmResult{}, err
	}
	a.mesh = m
	stopped := false
	defer func() {
		if !stopped {
			_ = m.stop()
		}
	}()
	var w *watcher
	if sidecars {
		if transport != "" {
			// One event about an agent outside the mesh opens every
			// node's subscription before the traffic starts.
			if _, err := m.nodes[0].rep.Report(ctx, reputation.Report{Subject: warmupSubject, Type: "error"}); err != nil {
				return ArmResult{}, fmt.Errorf("warm-up report: %w", err)
			}
			if !a.settle(ctx) {
				return ArmResult{}, errors.New("the reputation transport did not deliver a warm-up event to every sidecar")
			}
		}
		if w, err = newWatcher(r, m); err != nil {
			return ArmResult{}, err
		}
	}
	startup := time.Since(t0)
	r.progress("%s: %d rounds", name, len(r.plan.Rounds))
	t1 := time.Now()
	a.led.start = t1
	if w != nil {
		go w.run()
	}
	res := ArmResult{Name: name, Transport: transport}
	for i, round := range r.plan.Rounds {
		if err := ctx.Err(); err != nil {
			if w != nil {
				w.stop()
			}
			return ArmResult{}, err
		}
		a.play(ctx, round)
		res.Cumulative = append(res.Cumulative, a.led.poisonedActions())
		if !sidecars {
			continue
		}
		n, honest, errs := a.verify(ctx, round)
		res.Slashes += n
		res.SlashesOfHonest += honest
		res.SlashErrors += errs
		if r.cfg.SummaryEvery > 0 && (i+1)%r.cfg.SummaryEvery == 0 {
			a.summarise(ctx)
		}
		if transport != "" && !a.settle(ctx) {
			res.Unsettled++
		}
	}
	rounds := time.Since(t1)
	var views *finalViews
	if w != nil {
		w.stop()
		views = w.final()
	}
	r.progress("%s: stopping", name)
	t2 := time.Now()
	stopped = true
	if err := m.stop(); err != nil {
		return ArmResult{}, fmt.Errorf("stop: %w", err)
	}
	res.Timing = Timing{StartSeconds: startup.Seconds(), RoundsSeconds: rounds.Seconds(), StopSeconds: time.Since(t2).Seconds()}
	a.measure(&res, w, views)
	return res, nil
}

// play runs one round's chains, at most Concurrency at a time.
func (a *arm) play(ctx context.Context, round []*Chain) {
	sem := make(chan struct{}, a.r.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, c := range round {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a.send(ctx, c, 0)
		}()
	}
	wg.Wait()
}

// verify runs the verifier over the round: each output that reached the
// next agent is flagged or not, as the plan drew it, and each flagged one
// is slashed at the sidecar of the agent that received it, in the plan's
// order. It returns the slashes made, those of honest agents, and the
// slashes refused.
func (a *arm) verify(ctx context.Context, round []*Chain) (slashes, honest, failed int) {
	pl := a.r.plan
	signer := &identity.RequestSigner{AgentID: verifierID, Key: a.r.keys.verifier}
	for _, c := range round {
		for h := range Hops {
			if !pl.Flagged(c, h) || !a.led.delivered(c.RequestID(h+1)) {
				continue
			}
			subject := pl.Topology.Agents[c.Path[h]]
			if err := a.slash(ctx, signer, a.mesh.nodes[c.Path[h+1]], subject.ID, c, h); err != nil {
				failed++
				continue
			}
			slashes++
			if !subject.Bad {
				honest++
			}
		}
	}
	return slashes, honest, failed
}

// slash reports a hallucination by subject with a request signed by the
// verifier's key (RFC 9421), to the sidecar at.
func (a *arm) slash(ctx context.Context, signer *identity.RequestSigner, at *node, subject string, c *Chain, h int) error {
	body, _ := json.Marshal(map[string]any{"reason": "hallucination", "severity": a.r.cfg.Severity,
		"trace_id": c.TraceID(), "details": map[string]string{"request": c.RequestID(h + 1)}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, at.ingressURL+"/reputation/"+url.PathEscape(subject)+"/slash", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wire.TraceID, c.TraceID())
	if err := signer.SignRequest(req, body); err != nil {
		return err
	}
	resp, err := a.mesh.user.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("slash %s at %s: HTTP %d %s", subject, at.ingressURL, resp.StatusCode, strings.TrimSpace(string(answer)))
	}
	return nil
}

// summarise makes every sidecar turn the outcomes its egress observed into
// summary events now.
func (a *arm) summarise(ctx context.Context) {
	var wg sync.WaitGroup
	for _, n := range a.mesh.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = n.rep.Flush(ctx)
		}()
	}
	wg.Wait()
}

// settle waits until every sidecar holds the same reputation events (the
// digests of their windows agree), for at most SettleTimeout. It reports
// whether they did.
func (a *arm) settle(ctx context.Context) bool {
	deadline := time.Now().Add(a.r.cfg.SettleTimeout)
	for {
		if agreed(a.mesh.nodes) {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// agreed reports whether every node's event digest is the first one's.
func agreed(nodes []*node) bool {
	first := digestKey(nodes[0].rep.Digest())
	for _, n := range nodes[1:] {
		if digestKey(n.rep.Digest()) != first {
			return false
		}
	}
	return true
}

func digestKey(d []reputation.DigestEntry) string {
	slices.SortFunc(d, func(x, y reputation.DigestEntry) int { return cmp.Compare(x.Window, y.Window) })
	var b strings.Builder
	for _, e := range d {
		fmt.Fprintf(&b, "%d:%d:%s;", e.Window, e.Count, e.Hash)
	}
	return b.String()
}
