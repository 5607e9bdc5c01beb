package cascade

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func newTestPlan(t *testing.T, n, rounds int, p Params) *Plan {
	t.Helper()
	topo, err := NewTopology(n, 3, 0.2, seeded(3))
	if err != nil {
		t.Fatal(err)
	}
	return NewPlan(topo, rounds, p, rand.New(rand.NewPCG(3, streamTraffic)))
}

func TestPlanFollowsTheMesh(t *testing.T) {
	pl := newTestPlan(t, 20, 6, Params{Hallucination: 0.5, DestructiveShare: 0.5, Recall: 0.7, FalsePositive: 0.05})
	topo := pl.Topology
	if len(pl.Rounds) != 6 || pl.Chains() != 6*len(topo.Layers[RoleEntry]) {
		t.Fatalf("%d rounds, %d chains", len(pl.Rounds), pl.Chains())
	}
	for r, round := range pl.Rounds {
		for i, c := range round {
			if c.Round != r || c.Index != i || c.Path[0] != topo.Layers[RoleEntry][i] {
				t.Errorf("chain %d of round %d: %+v", i, r, c)
			}
			for h := range Hops {
				if !slices.Contains(topo.Agents[c.Path[h]].Next, c.Path[h+1]) {
					t.Errorf("%s: %s does not call %s", c.TraceID(), topo.Agents[c.Path[h]].ID, topo.Agents[c.Path[h+1]].ID)
				}
			}
			for h := range Hops + 1 {
				ref, ok := pl.Lookup(c.RequestID(h))
				if !ok || ref.Chain != c || ref.Hop != h {
					t.Errorf("Lookup(%s) = %+v, %v", c.RequestID(h), ref, ok)
				}
			}
		}
	}
	if _, ok := pl.Lookup("r999-c000-h0"); ok {
		t.Error("Lookup found a request that is not in the plan")
	}
}

// chainFor builds a chain through a bad summariser, with chosen draws.
func chainFor(t *testing.T, pl *Plan) *Chain {
	t.Helper()
	topo := pl.Topology
	for _, s := range topo.Layers[RoleSummarise] {
		topo.Agents[s].Bad = false
	}
	for _, e := range topo.Layers[RoleEntry] {
		topo.Agents[e].Bad = false
	}
	for _, p := range topo.Layers[RolePlan] {
		topo.Agents[p].Bad = false
	}
	s := topo.Layers[RoleSummarise][0]
	topo.Agents[s].Bad = true
	var entry int
	for _, e := range topo.Layers[RoleEntry] {
		if slices.Contains(topo.Agents[e].Next, s) {
			entry = e
		}
	}
	p := topo.Agents[s].Next[0]
	x := topo.Agents[p].Next[0]
	c := &Chain{Path: [Hops + 1]int{entry, s, p, x}}
	for h := range Hops {
		c.Out[h] = Output{Hallucinate: 0.9, Kind: 0.9, Action: "delete", Verdict: 0.5}
	}
	return c
}

func TestPlanOutcomes(t *testing.T) {
	pl := newTestPlan(t, 20, 1, Params{Hallucination: 0.5, DestructiveShare: 0.5, Recall: 0.7, FalsePositive: 0.05})
	c := chainFor(t, pl)
	exec := pl.Topology.Agents[c.Path[Hops]]

	// Nobody hallucinates: clean all the way, the expected tasks.
	for h := range Hops + 1 {
		if pl.Poisoned(c, h) || pl.Origin(c, h) != -1 {
			t.Errorf("clean chain: request %d poisoned", h)
		}
	}
	wantTasks := []string{"intake", "summarise", "plan", exec.Action}
	for h, want := range wantTasks {
		if got := pl.Task(c, h); got != want {
			t.Errorf("Task(%d) = %q, want %q", h, got, want)
		}
	}
	if pl.Flagged(c, 1) {
		t.Error("an honest output flagged with draw 0.5 > P")
	}

	// The bad summariser (position 1) hallucinates a fabricated
	// instruction: requests 2 and 3 carry it, tasks unchanged.
	c.Out[1].Hallucinate = 0.1
	if !pl.Hallucinated(c, 1) || pl.Hallucinated(c, 0) || pl.Hallucinated(c, 2) {
		t.Error("Hallucinated: want position 1 only")
	}
	if pl.Poisoned(c, 1) || !pl.Poisoned(c, 2) || !pl.Poisoned(c, Hops) || pl.Origin(c, Hops) != 1 {
		t.Error("Poisoned: want requests 2 and 3, from position 1")
	}
	if pl.Task(c, 2) != "plan" {
		t.Errorf("a fabricated instruction names task %q, want plan", pl.Task(c, 2))
	}
	if !pl.Flagged(c, 1) || pl.Flagged(c, 2) {
		t.Error("Flagged: the hallucination (0.5 < R) yes, the planner passing it on (0.5 > P) no")
	}

	// The same as a destructive instruction: the planner passes the
	// destructive task on; the executor still does its own action.
	c.Out[1].Kind = 0.1
	if pl.Task(c, 2) != "delete" || pl.Task(c, Hops) != exec.Action {
		t.Errorf("tasks %q, %q; want delete, %s", pl.Task(c, 2), pl.Task(c, Hops), exec.Action)
	}

	// A larger H poisons a superset; a better verifier flags a superset.
	c.Out[1].Hallucinate = 0.6
	if pl.Hallucinated(c, 1) {
		t.Error("draw 0.6 hallucinated at H = 0.5")
	}
	pl.Params.Hallucination = 0.7
	if !pl.Hallucinated(c, 1) {
		t.Error("draw 0.6 not hallucinated at H = 0.7")
	}
	c.Out[1].Verdict = 0.8
	if pl.Flagged(c, 1) {
		t.Error("draw 0.8 flagged at R = 0.7")
	}
	pl.Params.Recall = 0.9
	if !pl.Flagged(c, 1) {
		t.Error("draw 0.8 not flagged at R = 0.9")
	}
}

func TestPlanDeterministic(t *testing.T) {
	p := Params{Hallucination: 0.5, DestructiveShare: 0.5, Recall: 0.7, FalsePositive: 0.05}
	a := newTestPlan(t, 30, 10, p)
	b := newTestPlan(t, 30, 10, p)
	if a.PoisonedChains() != b.PoisonedChains() || a.PoisonedChains() == 0 {
		t.Fatalf("poisoned chains %d and %d", a.PoisonedChains(), b.PoisonedChains())
	}
	for r := range a.Rounds {
		for i := range a.Rounds[r] {
			if *a.Rounds[r][i] != *b.Rounds[r][i] {
				t.Fatalf("round %d chain %d differs", r, i)
			}
		}
	}
}
