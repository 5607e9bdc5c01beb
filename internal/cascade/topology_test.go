package cascade

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, streamTopology)) }

func TestLayerSizes(t *testing.T) {
	tests := []struct {
		n    int
		want [numRoles]int
	}{
		{4, [numRoles]int{1, 1, 1, 1}},
		{9, [numRoles]int{2, 2, 2, 3}},
		{10, [numRoles]int{2, 2, 3, 3}},
		{50, [numRoles]int{10, 12, 13, 15}},
		{200, [numRoles]int{40, 50, 50, 60}},
	}
	for _, tt := range tests {
		got := layerSizes(tt.n)
		if got != tt.want {
			t.Errorf("layerSizes(%d) = %v, want %v", tt.n, got, tt.want)
		}
		sum := 0
		for _, s := range got {
			sum += s
		}
		if sum != tt.n {
			t.Errorf("layerSizes(%d) sums to %d", tt.n, sum)
		}
	}
}

func TestNewTopology(t *testing.T) {
	for _, n := range []int{4, 9, 17, 50, 120} {
		for _, fanout := range []int{1, 3, 8} {
			topo, err := NewTopology(n, fanout, 0.1, seeded(uint64(n*fanout)))
			if err != nil {
				t.Fatal(err)
			}
			if len(topo.Agents) != n {
				t.Fatalf("n=%d: %d agents", n, len(topo.Agents))
			}
			callers := make([]int, n)
			ids := map[string]bool{}
			for i, a := range topo.Agents {
				if ids[a.ID] {
					t.Errorf("n=%d: id %s twice", n, a.ID)
				}
				ids[a.ID] = true
				if !slices.Contains(topo.Layers[a.Role], i) {
					t.Errorf("n=%d: %s is not in layer %s", n, a.ID, a.Role)
				}
				if a.Role == RoleExecute {
					if len(a.Next) != 0 || !slices.Contains(Actions, a.Action) || !strings.HasPrefix(a.ID, a.Action+"-") {
						t.Errorf("n=%d: executor %+v", n, a)
					}
					if a.Bad {
						t.Errorf("n=%d: executor %s is bad", n, a.ID)
					}
					continue
				}
				next := topo.Layers[a.Role+1]
				if want := min(fanout, len(next)); len(a.Next) < want {
					t.Errorf("n=%d fanout=%d: %s calls %d agents, want at least %d", n, fanout, a.ID, len(a.Next), want)
				}
				if !slices.IsSorted(a.Next) || len(slices.Compact(slices.Clone(a.Next))) != len(a.Next) {
					t.Errorf("n=%d: %s's Next %v is not sorted and distinct", n, a.ID, a.Next)
				}
				for _, j := range a.Next {
					if topo.Agents[j].Role != a.Role+1 {
						t.Errorf("n=%d: %s calls %s, not of the next layer", n, a.ID, topo.Agents[j].ID)
					}
					callers[j]++
				}
			}
			for i, a := range topo.Agents {
				if a.Role != RoleEntry && callers[i] == 0 {
					t.Errorf("n=%d fanout=%d: nobody calls %s", n, fanout, a.ID)
				}
				if topo.Index(a.ID) != i {
					t.Errorf("Index(%s) = %d, want %d", a.ID, topo.Index(a.ID), i)
				}
			}
			if want := min(n-len(topo.Layers[RoleExecute]), int(0.1*float64(n)+0.5)); topo.BadCount() != want {
				t.Errorf("n=%d: %d bad agents, want %d", n, topo.BadCount(), want)
			}
		}
	}
}

func TestTopologyDeterministicAndNested(t *testing.T) {
	a, _ := NewTopology(50, 3, 0.1, seeded(7))
	b, _ := NewTopology(50, 3, 0.1, seeded(7))
	c, _ := NewTopology(50, 3, 0.3, seeded(7))
	d, _ := NewTopology(50, 3, 0.1, seeded(8))
	same, differs := true, false
	for i := range a.Agents {
		if a.Agents[i].ID != b.Agents[i].ID || !slices.Equal(a.Agents[i].Next, b.Agents[i].Next) || a.Agents[i].Bad != b.Agents[i].Bad {
			same = false
		}
		if !slices.Equal(a.Agents[i].Next, c.Agents[i].Next) {
			t.Errorf("a larger bad share changed the edges of %s", a.Agents[i].ID)
		}
		if a.Agents[i].Bad && !c.Agents[i].Bad {
			t.Errorf("%s is bad at F = 0.1 but not at F = 0.3", a.Agents[i].ID)
		}
		if !slices.Equal(a.Agents[i].Next, d.Agents[i].Next) {
			differs = true
		}
	}
	if !same {
		t.Error("the same seed drew two different meshes")
	}
	if !differs {
		t.Error("two seeds drew the same edges")
	}
	if a.BadCount() != 5 || c.BadCount() != 15 {
		t.Errorf("bad agents %d and %d, want 5 and 15", a.BadCount(), c.BadCount())
	}
	all, _ := NewTopology(10, 3, 1, seeded(1))
	if all.BadCount() != 10-len(all.Layers[RoleExecute]) {
		t.Errorf("F = 1: %d bad agents, want every non-executor", all.BadCount())
	}
}

func TestNewTopologyRefuses(t *testing.T) {
	tests := []struct {
		n, fanout int
		bad       float64
		want      string
	}{
		{3, 3, 0.1, "3 agents: a mesh needs at least 4"},
		{10, 0, 0.1, "fan-out 0"},
		{10, 3, -0.1, "share of bad agents -0.1"},
		{10, 3, 1.5, "share of bad agents 1.5"},
	}
	for _, tt := range tests {
		_, err := NewTopology(tt.n, tt.fanout, tt.bad, seeded(1))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewTopology(%d, %d, %v) = %v, want an error with %q", tt.n, tt.fanout, tt.bad, err, tt.want)
		}
	}
}
