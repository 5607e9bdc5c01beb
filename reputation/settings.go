package reputation

import (
	"errors"
	"fmt"
	"time"
)

// Settings is the reputation: section of the sidecar's YAML configuration
// (docs/reputation.md lists every key). Zero values mean the defaults of
// NodeConfig; the config package resolves Verifiers like
// identity.trusted_agents (a key inline or the path of a key file).
type Settings struct {
	// Verifiers may slash with a request signed by their key: agent id →
	// key.
	Verifiers map[string]string `yaml:"verifiers"`
	// Peers are the base URLs of the sidecars to gossip with over HTTP
	// (also --peer, repeatable).
	Peers []string `yaml:"peers"`
	// NATS is the NATS transport (also --nats-url).
	NATS NATSSettings `yaml:"nats"`
	// AntiEntropyInterval is how often HTTP peers reconcile.
	AntiEntropyInterval time.Duration `yaml:"anti_entropy_interval"`

	Window            time.Duration `yaml:"window"`
	GainCap           Points        `yaml:"gain_cap"`
	LossCap           Points        `yaml:"loss_cap"`
	SummaryInterval   time.Duration `yaml:"summary_interval"`
	MaxEventAge       time.Duration `yaml:"max_event_age"`
	MaxClockSkew      time.Duration `yaml:"max_clock_skew"`
	MaxAgents         int           `yaml:"max_agents"`
	MaxColdAgents     int           `yaml:"max_cold_agents"`
	MaxEventsPerAgent int           `yaml:"max_events_per_agent"`
	MaxEvents         int           `yaml:"max_events"`
	MaxEventsPerCell  int           `yaml:"max_events_per_cell"`
	MaxObserved       int           `yaml:"max_observed"`
}

// NATSSettings is reputation.nats.
type NATSSettings struct {
	// URL of the server(s); empty turns the transport off.
	URL string `yaml:"url"`
	// Subject and Stream override the defaults of package natsmesh.
	Subject string `yaml:"subject"`
	Stream  string `yaml:"stream"`
}

// Validate refuses negative limits and caps.
func (s *Settings) Validate() error {
	var errs []error
	for name, v := range map[string]time.Duration{"window": s.Window, "summary_interval": s.SummaryInterval,
		"max_event_age": s.MaxEventAge, "max_clock_skew": s.MaxClockSkew, "anti_entropy_interval": s.AntiEntropyInterval} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("reputation.%s: %s is negative", name, v))
		}
	}
	for name, v := range map[string]int{"max_agents": s.MaxAgents, "max_cold_agents": s.MaxColdAgents,
		"max_events_per_agent": s.MaxEventsPerAgent, "max_events": s.MaxEvents,
		"max_events_per_cell": s.MaxEventsPerCell, "max_observed": s.MaxObserved} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("reputation.%s: %d is negative", name, v))
		}
	}
	if s.GainCap < 0 || s.LossCap < 0 {
		errs = append(errs, errors.New("reputation.gain_cap and loss_cap are positive amounts (loss_cap: 4 means at most −4.00)"))
	}
	if s.Window%time.Second != 0 {
		errs = append(errs, fmt.Errorf("reputation.window: %s is not a whole number of seconds", s.Window))
	}
	return errors.Join(errs...)
}

// Apply copies the limits into cfg (Dir, AgentID, Key, keys, clock and
// logger are the caller's).
func (s *Settings) Apply(cfg *NodeConfig) {
	cfg.Window, cfg.GainCap, cfg.LossCap = s.Window, s.GainCap, s.LossCap
	cfg.SummaryInterval, cfg.MaxEventAge, cfg.MaxClockSkew = s.SummaryInterval, s.MaxEventAge, s.MaxClockSkew
	cfg.MaxAgents, cfg.MaxColdAgents, cfg.MaxEventsPerAgent = s.MaxAgents, s.MaxColdAgents, s.MaxEventsPerAgent
	cfg.MaxEvents, cfg.MaxEventsPerCell, cfg.MaxObserved = s.MaxEvents, s.MaxEventsPerCell, s.MaxObserved
}

// UnmarshalText reads a decimal number of points ("1", "4.0", "0.25"), so
// that YAML settings like gain_cap: 1.0 decode into Points.
func (p *Points) UnmarshalText(b []byte) error {
	v, err := ParsePoints(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}
