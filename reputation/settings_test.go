package reputation

import (
	"testing"

	"strings"

	"gopkg.in/yaml.v3"
)

func TestSettingsFromYAML(t *testing.T) {
	var s Settings
	doc := `
verifiers: {fact-checker: "ed25519:AAAA"}
peers: [https://a.example:8081, https://b.example:8081]
nats: {url: "nats://127.0.0.1:4222"}
gain_cap: 1.5
loss_cap: 4
window: 30m
max_agents: 5000
`
	dec := yaml.NewDecoder(strings.NewReader(doc))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	var cfg NodeConfig
	s.Apply(&cfg)
	if cfg.GainCap != 150 || cfg.LossCap != 400 || cfg.Window.Minutes() != 30 || cfg.MaxAgents != 5000 ||
		len(s.Peers) != 2 || s.NATS.URL == "" || s.Verifiers["fact-checker"] == "" {
		t.Fatalf("%+v\n%+v", s, cfg)
	}
	s.LossCap = -1
	if s.Validate() == nil {
		t.Fatal("negative cap accepted")
	}
}
