package cascade

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// Role is an agent's layer in the mesh.
type Role int

// The layers, in the order requests flow through them.
const (
	RoleEntry     Role = iota // takes a user's request
	RoleSummarise             // summarises what the entry agent gathered
	RolePlan                  // turns a summary into an instruction
	RoleExecute               // performs the instruction: write, pay or delete
	numRoles
)

var roleNames = [numRoles]string{"entry", "summarise", "plan", "execute"}

// String returns the role's name.
func (r Role) String() string {
	if r < 0 || r >= numRoles {
		return fmt.Sprintf("role(%d)", int(r))
	}
	return roleNames[r]
}

// Actions are the irreversible actions executors perform; a request that
// names one is destructive.
var Actions = []string{"write", "pay", "delete"}

// Agent is one agent of the mesh.
type Agent struct {
	// ID is the agent id, such as "plan-07" or "pay-03".
	ID string
	// Role is the agent's layer.
	Role Role
	// Action is the action an executor performs; "" for other roles.
	Action string
	// Next are the indexes of the agents this one may call, ascending;
	// empty for executors.
	Next []int
	// Bad agents hallucinate (Params.Hallucination).
	Bad bool
}

// Topology is a layered mesh: every agent of one layer calls agents of the
// next, and every agent past the first layer has at least one caller.
type Topology struct {
	// Agents are the agents, layer by layer.
	Agents []Agent
	// Layers holds the indexes of each role's agents.
	Layers [numRoles][]int
}

// Layer sizes as shares of the mesh; the middle layers share the rest.
const (
	entryShare   = 0.2
	executeShare = 0.3
	// MinAgents is the smallest mesh: one agent per layer.
	MinAgents = int(numRoles)
)

// layerSizes splits n agents into the four layers.
func layerSizes(n int) [numRoles]int {
	entry := max(1, int(math.Round(entryShare*float64(n))))
	exec := max(1, int(math.Round(executeShare*float64(n))))
	middle := n - entry - exec
	summarise := max(1, middle/2)
	return [numRoles]int{entry, summarise, middle - summarise, exec}
}

// NewTopology draws a mesh of n agents from rng: the layers' sizes are
// fixed shares of n (20 % entry, 30 % executors, the middle split between
// summarisers and planners), every agent but executors gets fanout
// distinct agents of the next layer (fewer when the layer is smaller), an
// agent nobody calls gets one random caller, and executors get a random
// action. The bad agents are the first round(badShare·n) of a random order
// of the agents that are not executors (capped at their number), so that a
// larger share on the same seed adds bad agents without changing the
// others.
func NewTopology(n, fanout int, badShare float64, rng *rand.Rand) (*Topology, error) {
	if n < MinAgents {
		return nil, fmt.Errorf("cascade: %d agents: a mesh needs at least %d, one per layer", n, MinAgents)
	}
	if fanout < 1 {
		return nil, fmt.Errorf("cascade: fan-out %d: every agent needs at least one agent to call", fanout)
	}
	if badShare < 0 || badShare > 1 || math.IsNaN(badShare) {
		return nil, fmt.Errorf("cascade: share of bad agents %v is not between 0 and 1", badShare)
	}
	sizes := layerSizes(n)
	if sizes[RolePlan] < 1 {
		return nil, errors.New("cascade: no room for a planning layer")
	}
	t := &Topology{Agents: make([]Agent, 0, n)}
	for role := range numRoles {
		for i := range sizes[role] {
			a := Agent{Role: role, ID: fmt.Sprintf("%s-%02d", role, i+1)}
			if role == RoleExecute {
				a.Action = Actions[rng.IntN(len(Actions))]
				a.ID = fmt.Sprintf("%s-%02d", a.Action, i+1)
			}
			t.Layers[role] = append(t.Layers[role], len(t.Agents))
			t.Agents = append(t.Agents, a)
		}
	}
	for role := RoleEntry; role < RoleExecute; role++ {
		from, to := t.Layers[role], t.Layers[role+1]
		called := make([]bool, len(to))
		for _, a := range from {
			k := min(fanout, len(to))
			for _, j := range rng.Perm(len(to))[:k] {
				t.Agents[a].Next = append(t.Agents[a].Next, to[j])
				called[j] = true
			}
		}
		for j, ok := range called {
			if !ok {
				a := from[rng.IntN(len(from))]
				t.Agents[a].Next = append(t.Agents[a].Next, to[j])
			}
		}
		for _, a := range from {
			slices.Sort(t.Agents[a].Next)
		}
	}
	var callers []int
	for role := RoleEntry; role < RoleExecute; role++ {
		callers = append(callers, t.Layers[role]...)
	}
	bad := min(len(callers), int(math.Round(badShare*float64(n))))
	for _, j := range rng.Perm(len(callers))[:bad] {
		t.Agents[callers[j]].Bad = true
	}
	return t, nil
}

// Index returns the index of the agent with id, or −1.
func (t *Topology) Index(id string) int {
	for i := range t.Agents {
		if t.Agents[i].ID == id {
			return i
		}
	}
	return -1
}

// BadCount returns the number of bad agents.
func (t *Topology) BadCount() int {
	n := 0
	for i := range t.Agents {
		if t.Agents[i].Bad {
			n++
		}
	}
	return n
}
