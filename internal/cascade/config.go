package cascade

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/iatp/iatp/reputation"
)

// Arm names.
const (
	// ArmControl: agents call each other directly; nothing is checked.
	ArmControl = "control"
	// ArmIATP: every agent behind a sidecar, reputation events spread
	// over the mesh transport.
	ArmIATP = "iatp"
	// ArmNoPropagation: sidecars as in ArmIATP, but each knows only the
	// slashes reported to it.
	ArmNoPropagation = "iatp-no-propagation"
)

// Arms lists every arm, in the order they run.
var Arms = []string{ArmControl, ArmIATP, ArmNoPropagation}

// Transports of reputation events in ArmIATP.
const (
	TransportNATS = "nats" // one embedded NATS JetStream server per run
	TransportHTTP = "http" // HTTP gossip between peers
)

// DefaultRule is the operator rule every ingress applies: a destructive
// task needs a caller scoring at least 7.
const DefaultRule = `has(request.body.task) && request.body.task in ["write", "pay", "delete"] && caller.trust_score < 7`

// RuleName is the name of the operator rule, as "blocked_by" shows it.
const RuleName = "destructive-needs-trust"

// ErrInvalidConfig is returned by Run for a configuration it refuses.
var ErrInvalidConfig = errors.New("cascade: invalid configuration")

// Defaults of Config.
const (
	DefaultAgents           = 50
	DefaultFanout           = 3
	DefaultBadShare         = 0.10
	DefaultHallucination    = 0.5
	DefaultDestructiveShare = 0.5
	DefaultRecall           = 0.7
	DefaultFalsePositive    = 0.05
	DefaultRounds           = 40
	DefaultSeed             = 1
	DefaultSeverity         = "high"
	DefaultTransport        = TransportNATS
	DefaultConcurrency      = 1
	DefaultGossipPeers      = 4
	DefaultSettleTimeout    = 10 * time.Second
)

// Config is one run of the experiment. Zero values mean the defaults
// above, except for the probabilities, the seed and SummaryEvery, whose
// zero is meaningful: use NewConfig for a configuration with every
// default.
type Config struct {
	// Agents is the size of the mesh.
	Agents int
	// Fanout is how many agents of the next layer each agent may call.
	Fanout int
	// BadShare is the share F of agents that hallucinate.
	BadShare float64
	// Params are the hallucination probability H, the share of poisoned
	// outputs that name a destructive task, the verifier's recall R and
	// false-positive rate P.
	Params Params
	// Rounds of traffic: in each, every entry agent gets one request.
	Rounds int
	// Seed drives the topology, the bad agents, the traffic and the
	// verifier's errors.
	Seed uint64
	// Severity of the verifier's slashes: critical, high, medium or low.
	Severity string
	// Transport spreads reputation events in ArmIATP: TransportNATS or
	// TransportHTTP.
	Transport string
	// GossipPeers is the number of peers of each sidecar with
	// TransportHTTP.
	GossipPeers int
	// Rule is the CEL condition of the operator rule every ingress
	// applies (blocking when it holds); "" means DefaultRule.
	Rule string
	// SummaryEvery makes every sidecar turn the outcomes its egress saw
	// into summary events (PROTOCOL §10) after every SummaryEvery rounds;
	// 0 never does within a run (the sidecar's own interval, one minute
	// by default, is set beyond the run).
	SummaryEvery int
	// Concurrency bounds the chains in flight within a round. Counts do
	// not depend on it; latencies do (on two cores, chains in flight
	// queue behind each other).
	Concurrency int
	// Arms to run, in the order of Arms; nil means all.
	Arms []string
	// Dir holds the sidecars' data directories; "" means a temporary
	// directory, removed at the end.
	Dir string
	// SettleTimeout bounds the wait, after each round, for every sidecar
	// to hold every reputation event; a round that waited longer is
	// counted in ArmResult.Unsettled.
	SettleTimeout time.Duration
	// Progress, if not nil, receives a line per arm and phase.
	Progress io.Writer
}

// NewConfig returns the default configuration.
func NewConfig() Config {
	return Config{
		Agents: DefaultAgents, Fanout: DefaultFanout, BadShare: DefaultBadShare,
		Params: Params{Hallucination: DefaultHallucination, DestructiveShare: DefaultDestructiveShare,
			Recall: DefaultRecall, FalsePositive: DefaultFalsePositive},
		Rounds: DefaultRounds, Seed: DefaultSeed, Severity: DefaultSeverity, Transport: DefaultTransport,
		GossipPeers: DefaultGossipPeers, Rule: DefaultRule, Concurrency: DefaultConcurrency,
		SettleTimeout: DefaultSettleTimeout,
	}
}

// withDefaults checks cfg and fills in the defaults of zero values.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	intDefault := func(v *int, d int, name string) {
		switch {
		case *v == 0:
			*v = d
		case *v < 0:
			bad("%s %d is negative", name, *v)
		}
	}
	intDefault(&cfg.Agents, DefaultAgents, "agents")
	intDefault(&cfg.Fanout, DefaultFanout, "fan-out")
	intDefault(&cfg.Rounds, DefaultRounds, "rounds")
	intDefault(&cfg.GossipPeers, DefaultGossipPeers, "gossip peers")
	intDefault(&cfg.Concurrency, DefaultConcurrency, "concurrency")
	if cfg.Agents > 0 && cfg.Agents < MinAgents {
		bad("agents %d: a mesh needs at least %d, one per layer", cfg.Agents, MinAgents)
	}
	if cfg.SummaryEvery < 0 {
		bad("summary-every %d is negative", cfg.SummaryEvery)
	}
	for _, p := range []struct {
		name string
		v    float64
	}{
		{"bad share (F)", cfg.BadShare}, {"hallucination (H)", cfg.Params.Hallucination},
		{"destructive share", cfg.Params.DestructiveShare}, {"recall (R)", cfg.Params.Recall},
		{"false-positive rate (P)", cfg.Params.FalsePositive},
	} {
		if math.IsNaN(p.v) || p.v < 0 || p.v > 1 {
			bad("%s %v is not a probability between 0 and 1", p.name, p.v)
		}
	}
	if cfg.Severity == "" {
		cfg.Severity = DefaultSeverity
	}
	if !slices.Contains([]string{"critical", "high", "medium", "low"}, cfg.Severity) {
		bad("severity %q is not one of critical, high, medium, low", cfg.Severity)
	} else if _, _, err := reputation.Delta("hallucination", cfg.Severity); err != nil {
		bad("severity %q: %v", cfg.Severity, err)
	}
	if cfg.Transport == "" {
		cfg.Transport = DefaultTransport
	}
	if cfg.Transport != TransportNATS && cfg.Transport != TransportHTTP {
		bad("transport %q is not %s or %s", cfg.Transport, TransportNATS, TransportHTTP)
	}
	if cfg.Rule == "" {
		cfg.Rule = DefaultRule
	}
	if len(cfg.Arms) == 0 {
		cfg.Arms = Arms
	}
	var arms []string
	for _, a := range Arms {
		if slices.Contains(cfg.Arms, a) {
			arms = append(arms, a)
		}
	}
	for _, a := range cfg.Arms {
		if !slices.Contains(Arms, a) {
			bad("arm %q is not one of %v", a, Arms)
		}
	}
	cfg.Arms = arms
	if cfg.SettleTimeout == 0 {
		cfg.SettleTimeout = DefaultSettleTimeout
	}
	if cfg.SettleTimeout < 0 {
		bad("settle timeout %s is negative", cfg.SettleTimeout)
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return cfg, nil
}
