package cascade

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// smallConfig is a mesh of 10 agents, two of them bad, for 12 rounds: on
// seed 6 the ordering control > without propagation > iatp holds.
func smallConfig() Config {
	cfg := NewConfig()
	cfg.Agents, cfg.Rounds, cfg.BadShare, cfg.Seed = 10, 12, 0.2, 6
	return cfg
}

func runSmall(t *testing.T, cfg Config) *Result {
	t.Helper()
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestRunEndToEnd(t *testing.T) {
	res := runSmall(t, smallConfig())
	if len(res.Arms) != 3 || res.Arms[0].Name != ArmControl || res.Arms[1].Name != ArmIATP || res.Arms[2].Name != ArmNoPropagation {
		t.Fatalf("arms %+v", res.Arms)
	}
	if res.Chains != 12*2 || res.PoisonedChains == 0 || res.PoisonedChains+res.CleanChains != res.Chains ||
		len(res.BadAgents) != 2 || res.HonestAgents != 8 || len(res.PoisonedPerRound) != 12 ||
		res.PoisonedPerRound[11] != res.PoisonedChains {
		t.Fatalf("result %+v", res)
	}
	control, iatp, noProp := res.Arms[0], res.Arms[1], res.Arms[2]
	// Nothing stops anything without sidecars.
	if control.PoisonedActions != res.PoisonedChains || control.LegitActions != res.CleanChains ||
		len(control.Refusals) != 0 || control.Slashes != 0 || len(control.Isolation) != 0 {
		t.Errorf("control: %+v", control)
	}
	if !(control.PoisonedActions > noProp.PoisonedActions && noProp.PoisonedActions >= iatp.PoisonedActions) {
		t.Errorf("poisoned actions: control %d, without propagation %d, iatp %d; want control > without ≥ iatp",
			control.PoisonedActions, noProp.PoisonedActions, iatp.PoisonedActions)
	}
	for _, a := range res.Arms {
		if a.Errors != 0 || a.SlashErrors != 0 || a.Unsettled != 0 {
			t.Errorf("%s: %d errors, %d refused slashes, %d unsettled rounds", a.Name, a.Errors, a.SlashErrors, a.Unsettled)
		}
		if len(a.Cumulative) != 12 || a.Cumulative[11] != a.PoisonedActions || !slices.IsSorted(a.Cumulative) {
			t.Errorf("%s: cumulative %v, %d poisoned actions", a.Name, a.Cumulative, a.PoisonedActions)
		}
		if a.HopOverheadMs.N == 0 || a.RequestMs.N == 0 {
			t.Errorf("%s: no hop measured", a.Name)
		}
		sum := 0
		for _, n := range a.PoisonedByOrigin {
			sum += n
		}
		if sum != a.PoisonedActions {
			t.Errorf("%s: by origin %v does not add up to %d", a.Name, a.PoisonedByOrigin, a.PoisonedActions)
		}
	}
	for _, a := range []ArmResult{iatp, noProp} {
		if a.Slashes == 0 || len(a.Refusals) == 0 || len(a.Isolation) != 2 {
			t.Errorf("%s: %d slashes, refusals %v, isolation %+v", a.Name, a.Slashes, a.Refusals, a.Isolation)
		}
	}
	// With propagation every sidecar learns; without, none learns all.
	if iatp.CutOffSeconds.N == 0 || noProp.CutOffSeconds.N != 0 || noProp.BadCutOffAtEnd != 0 {
		t.Errorf("cut-off everywhere: iatp %+v, without propagation %+v (%d at the end)", iatp.CutOffSeconds, noProp.CutOffSeconds, noProp.BadCutOffAtEnd)
	}

	var md, png bytes.Buffer
	if err := res.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| | control (no sidecars) | iatp | iatp without propagation |", "poisoned requests that reached an irreversible action", "added latency per hop"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, md.String())
		}
	}
	if err := res.WritePlot(&png); err != nil || !bytes.HasPrefix(png.Bytes(), []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("plot: %v, %d bytes", err, png.Len())
	}
	if _, err := json.Marshal(res); err != nil {
		t.Errorf("JSON: %v", err)
	}
}

// counts is the part of an arm's result that must not depend on timing.
func counts(a ArmResult) ArmResult {
	a.Isolation, a.CutOffSeconds, a.IsolatedSeconds, a.PropagationSeconds = nil, Summary{}, Summary{}, Summary{}
	a.HopOverheadMs, a.RequestMs, a.Timing = Summary{}, Summary{}, Timing{}
	return a
}

// TestRunDeterministic runs one seed twice, one at a time and four
// requests at once: the counts must be the same.
func TestRunDeterministic(t *testing.T) {
	cfg := smallConfig()
	cfg.Seed = 8
	cfg.Arms = []string{ArmIATP, ArmNoPropagation}
	a := runSmall(t, cfg)
	cfg.Concurrency = 4
	b := runSmall(t, cfg)
	for i := range a.Arms {
		x, y := counts(a.Arms[i]), counts(b.Arms[i])
		xj, _ := json.Marshal(x)
		yj, _ := json.Marshal(y)
		if !bytes.Equal(xj, yj) {
			t.Errorf("%s: two runs of one seed differ:\n%s\n%s", a.Arms[i].Name, xj, yj)
		}
	}
	for i := range a.Arms[0].Isolation {
		x, y := a.Arms[0].Isolation[i], b.Arms[0].Isolation[i]
		if x.Agent != y.Agent || x.PoisonedOutputs != y.PoisonedOutputs || x.PoisonedActions != y.PoisonedActions {
			t.Errorf("isolation of %s differs: %+v, %+v", x.Agent, x, y)
		}
	}
}

func TestConfigRefused(t *testing.T) {
	tests := []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Agents = 3 }, "agents 3: a mesh needs at least 4"},
		{func(c *Config) { c.Params.Recall = 1.5 }, "recall (R) 1.5 is not a probability"},
		{func(c *Config) { c.BadShare = -0.1 }, "bad share (F) -0.1"},
		{func(c *Config) { c.Severity = "huge" }, `severity "huge"`},
		{func(c *Config) { c.Transport = "carrier-pigeon" }, `transport "carrier-pigeon"`},
		{func(c *Config) { c.Arms = []string{"placebo"} }, `arm "placebo"`},
		{func(c *Config) { c.Rounds = -1 }, "rounds -1 is negative"},
		{func(c *Config) { c.Rule = "caller.trust_scor < 7" }, `caller has no field "trust_scor"`},
	}
	for _, tt := range tests {
		cfg := smallConfig()
		tt.edit(&cfg)
		_, err := Run(context.Background(), cfg)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Run = %v, want an error with %q", err, tt.want)
		}
	}
}

// TestRunVariants runs the paths the default configuration does not take:
// HTTP gossip, summaries, and a mesh with nobody to stop — where every
// request must reach its action, which also proves that the sidecars
// authenticate every agent as attested (an unauthenticated caller would
// score 2 and be refused every destructive task).
func TestRunVariants(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		check func(t *testing.T, res *Result)
	}{
		{"http gossip", func(c *Config) { c.Transport = TransportHTTP; c.Arms = []string{ArmIATP} }, func(t *testing.T, res *Result) {
			if a := res.Arms[0]; a.Transport != TransportHTTP || a.Slashes == 0 || a.CutOffSeconds.N == 0 {
				t.Errorf("arm %+v", a)
			}
		}},
		{"summaries", func(c *Config) { c.SummaryEvery = 1; c.Arms = []string{ArmIATP} }, func(t *testing.T, res *Result) {
			if a := res.Arms[0]; a.Slashes == 0 {
				t.Errorf("arm %+v", a)
			}
		}},
		{"nobody to stop", func(c *Config) { c.BadShare, c.Params.FalsePositive = 0, 0 }, func(t *testing.T, res *Result) {
			if res.PoisonedChains != 0 {
				t.Fatalf("%d poisoned chains without bad agents", res.PoisonedChains)
			}
			for _, a := range res.Arms {
				if a.LegitActions != res.Chains || len(a.Refusals) != 0 || a.Slashes != 0 || !isNaN(a.PoisonedRate) {
					t.Errorf("%s: %d of %d requests acted on, refusals %v, %d slashes, poisoned rate %v",
						a.Name, a.LegitActions, res.Chains, a.Refusals, a.Slashes, a.PoisonedRate)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := smallConfig()
			cfg.Rounds = 6
			tt.edit(&cfg)
			res := runSmall(t, cfg)
			for _, a := range res.Arms {
				if a.Errors != 0 || a.SlashErrors != 0 || a.Unsettled != 0 {
					t.Errorf("%s: %d errors, %d refused slashes, %d unsettled rounds", a.Name, a.Errors, a.SlashErrors, a.Unsettled)
				}
			}
			tt.check(t, res)
		})
	}
}
