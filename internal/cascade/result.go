package cascade

import (
	"slices"
	"strings"
	"time"

	"github.com/iatp/iatp/policy"
)

// Result is what a run measured.
type Result struct {
	Config RunConfig `json:"config"`
	// Layers is the number of agents in each layer.
	Layers map[string]int `json:"layers"`
	// BadAgents are the agents that hallucinate.
	BadAgents []string `json:"bad_agents"`
	// Chains is the number of user requests; PoisonedChains of them carry
	// poison to their executor when nothing stops them (the denominator
	// of every poisoned rate), CleanChains do not.
	Chains         int `json:"chains"`
	PoisonedChains int `json:"poisoned_chains"`
	CleanChains    int `json:"clean_chains"`
	// PoisonedPerRound is the cumulative number of poisoned chains after
	// each round.
	PoisonedPerRound []int `json:"poisoned_per_round"`
	// HonestAgents is the number of agents that are not bad.
	HonestAgents int         `json:"honest_agents"`
	Arms         []ArmResult `json:"arms"`
	// Seconds is the wall time of the whole run.
	Seconds float64 `json:"seconds"`
}

// RunConfig is the configuration a result was measured with: the fields of
// Config of the same names.
type RunConfig struct {
	Agents           int     `json:"agents"`
	Fanout           int     `json:"fanout"`
	BadShare         float64 `json:"bad_share"`
	Hallucination    float64 `json:"hallucination"`
	DestructiveShare float64 `json:"destructive_share"`
	Recall           float64 `json:"recall"`
	FalsePositive    float64 `json:"false_positive"`
	Rounds           int     `json:"rounds"`
	Seed             uint64  `json:"seed"`
	Severity         string  `json:"severity"`
	Transport        string  `json:"transport"`
	Rule             string  `json:"rule"`
	SummaryEvery     int     `json:"summary_every"`
	Concurrency      int     `json:"concurrency"`
}

// ArmResult is what one arm measured. Counts do not depend on timing
// (the same seed gives the same counts); Latency, Isolation times and
// Timing do.
type ArmResult struct {
	Name      string `json:"name"`
	Transport string `json:"transport,omitempty"`

	// PoisonedActions is the number of poisoned requests an executor acted
	// on; PoisonedRate is its share of Result.PoisonedChains.
	PoisonedActions int   `json:"poisoned_actions"`
	PoisonedRate    Float `json:"poisoned_rate"`
	// PoisonedByOrigin counts them by the role of the agent that
	// hallucinated and, for poison injected before the last hop, by its
	// kind: "entry/destructive", "summarise/fabricated", "plan" …
	PoisonedByOrigin map[string]int `json:"poisoned_by_origin"`
	// LegitActions is the number of clean requests an executor acted on;
	// LegitRate is its share of Result.CleanChains.
	LegitActions int   `json:"legit_actions"`
	LegitRate    Float `json:"legit_rate"`
	// CleanLostToHonest and CleanLostToBad count the clean requests that
	// did not reach their action because a request on their way was
	// refused for the reputation of an honest agent (a wrongful cut-off)
	// or of a bad one (the price of isolating it: its clean outputs are
	// refused too).
	CleanLostToHonest int `json:"clean_lost_to_honest"`
	CleanLostToBad    int `json:"clean_lost_to_bad"`

	// HonestCutOff lists the honest agents that had a request refused
	// because of their reputation (the operator rule or untrusted_caller
	// on their calls, untrusted_target on calls to them); HonestCutOffRate
	// is their share of the honest agents.
	HonestCutOff     []string `json:"honest_cut_off"`
	HonestCutOffRate Float    `json:"honest_cut_off_rate"`
	// HonestCutOffAtEnd is the number of honest agents whose destructive
	// requests at least one sidecar would refuse once the rounds are over.
	HonestCutOffAtEnd int `json:"honest_cut_off_at_end"`
	// BadCutOffAtEnd and BadIsolatedAtEnd are the bad agents every sidecar
	// refuses destructive requests from, and every request to or from,
	// once the rounds are over.
	BadCutOffAtEnd   int `json:"bad_cut_off_at_end"`
	BadIsolatedAtEnd int `json:"bad_isolated_at_end"`

	// Refusals counts the requests refused, by the rule that refused them;
	// RefusedOfHonest those refused for an honest agent's reputation.
	Refusals        map[string]int `json:"refusals"`
	RefusedOfHonest int            `json:"refused_of_honest"`
	// Errors counts answers that were neither the agent's nor a refusal by
	// policy (they should not happen).
	Errors int `json:"errors"`
	// Slashes is the number of verifier reports accepted; SlashesOfHonest
	// those about honest agents (false positives); SlashErrors those
	// refused.
	Slashes         int `json:"slashes"`
	SlashesOfHonest int `json:"slashes_of_honest"`
	SlashErrors     int `json:"slash_errors"`

	// Isolation follows each bad agent (sidecar arms).
	Isolation []Isolation `json:"isolation,omitempty"`
	// CutOffSeconds and IsolatedSeconds sum up, over the bad agents that
	// got there, the time from their first poisoned output until every
	// sidecar refused their destructive requests, or held them untrusted;
	// PropagationSeconds the time from the first sidecar to the last.
	CutOffSeconds      Summary `json:"cut_off_seconds"`
	IsolatedSeconds    Summary `json:"isolated_seconds"`
	PropagationSeconds Summary `json:"propagation_seconds"`

	// HopOverheadMs sums up, per call between agents that reached its
	// agent, the time the caller waited less the time the callee's
	// handler took: the cost of the hop (the sidecars' work and the
	// network, or the network alone in the control arm).
	HopOverheadMs Summary `json:"hop_overhead_ms"`
	// RequestMs sums up, per user request that reached its action, the
	// time the user waited: four agents and three hops.
	RequestMs Summary `json:"request_ms"`

	// Cumulative is the number of poisoned actions after each round.
	Cumulative []int `json:"cumulative"`
	// Unsettled counts the rounds after which the sidecars did not all
	// hold every reputation event within Config.SettleTimeout: when it is
	// not 0, counts may differ from run to run.
	Unsettled int    `json:"unsettled"`
	Timing    Timing `json:"timing"`
}

// Isolation is how one bad agent was stopped in an arm. Times are from
// its first poisoned output; null when it never got there.
type Isolation struct {
	Agent string `json:"agent"`
	Role  string `json:"role"`
	// PoisonedOutputs it sent; PoisonedActions they caused.
	PoisonedOutputs int `json:"poisoned_outputs"`
	PoisonedActions int `json:"poisoned_actions"`
	// CutOffSeconds: until every sidecar refused its destructive requests.
	CutOffSeconds Float `json:"cut_off_seconds"`
	// IsolatedSeconds: until every sidecar held it untrusted.
	IsolatedSeconds Float `json:"isolated_seconds"`
	// CutOffPropagationSeconds and IsolatedPropagationSeconds: from the
	// first sidecar that did to the last.
	CutOffPropagationSeconds   Float `json:"cut_off_propagation_seconds"`
	IsolatedPropagationSeconds Float `json:"isolated_propagation_seconds"`
}

// Timing is where an arm's wall time went.
type Timing struct {
	StartSeconds  float64 `json:"start_seconds"`
	RoundsSeconds float64 `json:"rounds_seconds"`
	StopSeconds   float64 `json:"stop_seconds"`
}

func newResult(cfg Config, pl *Plan) *Result {
	t := pl.Topology
	res := &Result{
		Config: RunConfig{Agents: cfg.Agents, Fanout: cfg.Fanout, BadShare: cfg.BadShare,
			Hallucination: cfg.Params.Hallucination, DestructiveShare: cfg.Params.DestructiveShare,
			Recall: cfg.Params.Recall, FalsePositive: cfg.Params.FalsePositive, Rounds: cfg.Rounds, Seed: cfg.Seed,
			Severity: cfg.Severity, Transport: cfg.Transport, Rule: cfg.Rule, SummaryEvery: cfg.SummaryEvery,
			Concurrency: cfg.Concurrency},
		Layers:         map[string]int{},
		BadAgents:      []string{},
		Chains:         pl.Chains(),
		PoisonedChains: pl.PoisonedChains(),
	}
	res.CleanChains = res.Chains - res.PoisonedChains
	n := 0
	for _, round := range pl.Rounds {
		for _, c := range round {
			if pl.Poisoned(c, Hops) {
				n++
			}
		}
		res.PoisonedPerRound = append(res.PoisonedPerRound, n)
	}
	for role := range numRoles {
		res.Layers[role.String()] = len(t.Layers[role])
	}
	for _, a := range t.Agents {
		if a.Bad {
			res.BadAgents = append(res.BadAgents, a.ID)
		}
	}
	res.HonestAgents = len(t.Agents) - len(res.BadAgents)
	return res
}

// originKey names where a poisoned chain's poison came from.
func originKey(pl *Plan, c *Chain) string {
	o := pl.Origin(c, Hops)
	role := pl.Topology.Agents[c.Path[o]].Role.String()
	if o == Hops-1 {
		return role // to an executor: always destructive
	}
	if c.Out[o].Kind < pl.Params.DestructiveShare {
		return role + "/destructive"
	}
	return role + "/fabricated"
}

// measure fills res from the arm's ledger and the watcher's tracks.
func (a *arm) measure(res *ArmResult, w *watcher, views *finalViews) {
	pl := a.r.plan
	t := pl.Topology
	led := a.led
	res.PoisonedByOrigin = map[string]int{}
	res.Refusals = map[string]int{}
	leaks := map[int]int{}
	for _, act := range led.actions {
		if !act.poisoned {
			res.LegitActions++
			continue
		}
		res.PoisonedActions++
		res.PoisonedByOrigin[originKey(pl, act.ref.Chain)]++
		leaks[act.ref.Chain.Path[pl.Origin(act.ref.Chain, Hops)]]++
	}
	totalPoisoned, clean := pl.PoisonedChains(), pl.Chains()-pl.PoisonedChains()
	res.PoisonedRate = Float(Rate(res.PoisonedActions, totalPoisoned))
	res.LegitRate = Float(Rate(res.LegitActions, clean))

	cut := map[int]bool{}
	emitted := map[int]int{}
	var overhead, requests []time.Duration
	for _, round := range pl.Rounds {
		for _, c := range round {
			clean := !pl.Poisoned(c, Hops)
			for h := range Hops + 1 {
				id := c.RequestID(h)
				if h < Hops && pl.Hallucinated(c, h) {
					if _, ok := led.handled[id]; ok {
						emitted[c.Path[h]]++
					}
				}
				cl, sent := led.calls[id]
				if !sent {
					continue
				}
				switch {
				case cl.status == 200:
					if took, ok := led.handled[id]; ok && h > 0 {
						overhead = append(overhead, cl.took-took)
					}
					if _, acted := led.handled[c.RequestID(Hops)]; acted && h == 0 {
						requests = append(requests, cl.took)
					}
				case cl.status == 403 && cl.blockedBy != "":
					res.Refusals[cl.blockedBy]++
					blamed := -1
					switch cl.blockedBy {
					case RuleName, policy.RuleUntrustedCaller:
						if h > 0 {
							blamed = c.Path[h-1]
						}
					case policy.RuleUntrustedTarget:
						blamed = c.Path[h]
					}
					switch {
					case blamed < 0:
					case t.Agents[blamed].Bad:
						if clean {
							res.CleanLostToBad++
						}
					default:
						cut[blamed] = true
						res.RefusedOfHonest++
						if clean {
							res.CleanLostToHonest++
						}
					}
				default:
					res.Errors++
				}
			}
		}
	}
	res.HonestCutOff = []string{}
	for i := range t.Agents {
		if cut[i] {
			res.HonestCutOff = append(res.HonestCutOff, t.Agents[i].ID)
		}
	}
	res.HonestCutOffRate = Float(Rate(len(res.HonestCutOff), len(t.Agents)-t.BadCount()))
	res.HopOverheadMs = Summarise(millis(overhead), "ms")
	res.RequestMs = Summarise(millis(requests), "ms")
	if w == nil {
		return
	}
	nodes := len(w.nodes)
	var cutT, isoT, prop []float64
	for i, ag := range t.Agents {
		if !ag.Bad {
			if views.cut[i] > 0 {
				res.HonestCutOffAtEnd++
			}
			continue
		}
		if views.cut[i] == nodes {
			res.BadCutOffAtEnd++
		}
		if views.untrusted[i] == nodes {
			res.BadIsolatedAtEnd++
		}
		tr := w.tracks[i]
		iso := Isolation{Agent: ag.ID, Role: ag.Role.String(), PoisonedOutputs: emitted[i], PoisonedActions: leaks[i],
			CutOffSeconds: nan, IsolatedSeconds: nan, CutOffPropagationSeconds: nan, IsolatedPropagationSeconds: nan}
		if first, ok := led.firstBad[i]; ok {
			since := func(t time.Time) Float {
				if t.IsZero() {
					return nan
				}
				return Float(max(0, t.Sub(first).Seconds()))
			}
			iso.CutOffSeconds, iso.IsolatedSeconds = since(tr.allCut), since(tr.allUntrusted)
			if !tr.allCut.IsZero() {
				cutT = append(cutT, float64(iso.CutOffSeconds))
			}
			if !tr.allUntrusted.IsZero() {
				isoT = append(isoT, float64(iso.IsolatedSeconds))
			}
		}
		spread := func(first, all time.Time) Float {
			if all.IsZero() {
				return nan
			}
			return Float(all.Sub(first).Seconds())
		}
		iso.CutOffPropagationSeconds = spread(tr.firstCut, tr.allCut)
		iso.IsolatedPropagationSeconds = spread(tr.firstUntrusted, tr.allUntrusted)
		for _, p := range []Float{iso.CutOffPropagationSeconds, iso.IsolatedPropagationSeconds} {
			if !isNaN(p) {
				prop = append(prop, float64(p))
			}
		}
		res.Isolation = append(res.Isolation, iso)
	}
	slices.SortFunc(res.Isolation, func(x, y Isolation) int { return strings.Compare(x.Agent, y.Agent) })
	res.CutOffSeconds = Summarise(cutT, "s")
	res.IsolatedSeconds = Summarise(isoT, "s")
	res.PropagationSeconds = Summarise(prop, "s")
}
