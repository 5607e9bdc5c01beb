package cascade

import (
	"fmt"
	"math/rand/v2"
)

// Hops is the number of calls in a chain: entry → summarise → plan →
// execute.
const Hops = int(numRoles) - 1

// Output is what the agent at one position of a chain sends to the next.
// It holds the random draws behind its fate rather than the fate itself,
// so that runs with different parameters on one seed share their draws
// (a larger hallucination probability poisons a superset of outputs, a
// better verifier flags a superset of poisoned ones).
type Output struct {
	// Hallucinate is compared with Params.Hallucination when the sender
	// is bad.
	Hallucinate float64
	// Kind is compared with Params.DestructiveShare: a poisoned output to
	// a summariser or planner names a destructive task when it is below,
	// and is a fabricated instruction of the expected task otherwise.
	Kind float64
	// Action is the destructive task a poisoned output names.
	Action string
	// Verdict is compared with the verifier's recall (for a hallucinated
	// output) or its false-positive rate (for any other).
	Verdict float64
}

// Chain is one user request and the calls it causes: Path[0] is the entry
// agent the user asks, Path[Hops] the executor that acts. Out[h] is what
// Path[h] sends to Path[h+1], as request h+1.
type Chain struct {
	// Round and Index place the chain in the plan: Index is its entry
	// agent's position in the entry layer.
	Round, Index int
	// Path holds the indexes of the agents, entry first.
	Path [Hops + 1]int
	// Out holds what each agent of Path but the executor sends on.
	Out [Hops]Output
}

// TraceID is the chain's trace id, carried by every call of the chain.
func (c *Chain) TraceID() string { return fmt.Sprintf("cascade-r%03d-c%03d", c.Round, c.Index) }

// RequestID is the id of request h: 0 is the user's request to Path[0],
// h the call from Path[h-1] to Path[h].
func (c *Chain) RequestID(h int) string {
	return fmt.Sprintf("r%03d-c%03d-h%d", c.Round, c.Index, h)
}

// Plan is the traffic of a run: Rounds rounds, each with one chain per
// entry agent. Every arm replays the same plan.
type Plan struct {
	// Topology is the mesh the plan runs on.
	Topology *Topology
	// Params turn the draws into outcomes.
	Params Params
	// Rounds holds each round's chains, in entry-layer order.
	Rounds [][]*Chain
	byID   map[string]RequestRef
}

// RequestRef names one request of a plan.
type RequestRef struct {
	// Chain is the request's chain.
	Chain *Chain
	// Hop is its position: 0 for the user's request, Hops for the call
	// to the executor.
	Hop int
}

// Params are the probabilities that turn a plan's draws into outcomes.
type Params struct {
	// Hallucination is the probability that a bad agent's output is
	// poisoned.
	Hallucination float64
	// DestructiveShare is the share of poisoned outputs to a summariser or
	// planner that name a destructive task (the rest are fabricated
	// instructions of the expected task). Poisoned outputs to executors
	// are always destructive.
	DestructiveShare float64
	// Recall is the probability that the verifier flags a poisoned output.
	Recall float64
	// FalsePositive is the probability that it flags any other output.
	FalsePositive float64
}

// NewPlan draws rounds of chains from rng: in each round, every entry agent
// receives one request, and each agent on its way calls one of its Next
// agents, chosen uniformly.
func NewPlan(t *Topology, rounds int, p Params, rng *rand.Rand) *Plan {
	pl := &Plan{Topology: t, Params: p, byID: map[string]RequestRef{}}
	for r := range rounds {
		var round []*Chain
		for i, entry := range t.Layers[RoleEntry] {
			c := &Chain{Round: r, Index: i}
			c.Path[0] = entry
			for h := range Hops {
				next := t.Agents[c.Path[h]].Next
				c.Path[h+1] = next[rng.IntN(len(next))]
				c.Out[h] = Output{Hallucinate: rng.Float64(), Kind: rng.Float64(),
					Action: Actions[rng.IntN(len(Actions))], Verdict: rng.Float64()}
			}
			for h := range Hops + 1 {
				pl.byID[c.RequestID(h)] = RequestRef{Chain: c, Hop: h}
			}
			round = append(round, c)
		}
		pl.Rounds = append(pl.Rounds, round)
	}
	return pl
}

// Lookup finds a request by id.
func (pl *Plan) Lookup(id string) (RequestRef, bool) {
	ref, ok := pl.byID[id]
	return ref, ok
}

// Hallucinated reports whether Path[h]'s output is poisoned: its sender is
// bad and drew a hallucination.
func (pl *Plan) Hallucinated(c *Chain, h int) bool {
	return pl.Topology.Agents[c.Path[h]].Bad && c.Out[h].Hallucinate < pl.Params.Hallucination
}

// Poisoned reports whether request h carries poison: an agent before it on
// the chain hallucinated. The agents after a hallucination act on it in
// good faith and pass it on.
func (pl *Plan) Poisoned(c *Chain, h int) bool {
	return pl.Origin(c, h) >= 0
}

// Origin returns the position of the first hallucination before request h,
// or −1.
func (pl *Plan) Origin(c *Chain, h int) int {
	for j := range min(h, Hops) {
		if pl.Hallucinated(c, j) {
			return j
		}
	}
	return -1
}

// Task returns the task request h names: "intake" for the user's request,
// the executor's action for the last one, "summarise" or "plan" in
// between — unless an earlier agent's poisoned output named a destructive
// task, which the agents after it pass on.
func (pl *Plan) Task(c *Chain, h int) string {
	switch h {
	case 0:
		return "intake"
	case Hops:
		return pl.Topology.Agents[c.Path[h]].Action
	}
	for j := range h {
		if pl.Hallucinated(c, j) && c.Out[j].Kind < pl.Params.DestructiveShare {
			return c.Out[j].Action
		}
	}
	return pl.Topology.Agents[c.Path[h]].Role.String()
}

// Flagged reports whether the verifier flags Path[h]'s output: a
// hallucinated output with probability Recall, any other (an honest one,
// or one that faithfully passes on poison it received) with probability
// FalsePositive.
func (pl *Plan) Flagged(c *Chain, h int) bool {
	if pl.Hallucinated(c, h) {
		return c.Out[h].Verdict < pl.Params.Recall
	}
	return c.Out[h].Verdict < pl.Params.FalsePositive
}

// PoisonedChains counts the chains that carry poison to their executor
// when nothing stops them.
func (pl *Plan) PoisonedChains() int {
	n := 0
	for _, round := range pl.Rounds {
		for _, c := range round {
			if pl.Poisoned(c, Hops) {
				n++
			}
		}
	}
	return n
}

// Chains returns the number of chains.
func (pl *Plan) Chains() int {
	n := 0
	for _, round := range pl.Rounds {
		n += len(round)
	}
	return n
}
