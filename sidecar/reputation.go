package sidecar

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/iatp/iatp/identity"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/reputation"
	"github.com/iatp/iatp/reputation/gossip"
	"github.com/iatp/iatp/reputation/natsmesh"
)

// ReputationConfig configures the sidecar's reputation node (PROTOCOL §10,
// docs/reputation.md): its mesh parameters and bounds, who may slash, and
// the transports that spread events.
type ReputationConfig struct {
	// Settings tunes the node (caps, windows, bounds); its Verifiers,
	// Peers and NATS fields are not read here: see below.
	Settings reputation.Settings
	// Verifiers may slash with a request signed by their key.
	Verifiers map[string]ed25519.PublicKey
	// Peers are the base URLs of the sidecars to gossip with over HTTP.
	Peers []string
	// NATSURL, if set, spreads events over NATS JetStream.
	NATSURL string
	// AntiEntropy is how often HTTP peers reconcile; 0 means the
	// transport's default, negative turns it off.
	AntiEntropy time.Duration
}

// reputationKeyName is the name of the key a sidecar without --key makes
// for its reputation events, in its data directory.
const reputationKeyName = "reputation"

// openReputation opens the reputation node in the data directory, its
// HTTP handler and its transports.
func (s *Sidecar) openReputation(ctx context.Context) error {
	cfg := s.cfg
	dir := cfg.DataDir
	if dir == "" {
		dir = filepath.Dir(cfg.Recorder.Dir)
	}
	key, err := s.reputationKey(dir)
	if err != nil {
		return err
	}
	nc := reputation.NodeConfig{Dir: dir, AgentID: cfg.Manifest.AgentID(), Key: key, Reporters: cfg.TrustedAgents,
		Clock: cfg.Clock, Logger: s.log}
	set := cfg.Reputation.Settings
	if err := set.Validate(); err != nil {
		return fmt.Errorf("sidecar: reputation: %w", err)
	}
	set.Apply(&nc)
	if s.node, err = reputation.Open(ctx, nc); err != nil {
		return fmt.Errorf("sidecar: reputation: %w", err)
	}
	s.repHandler, err = gossip.NewHandler(gossip.HandlerConfig{
		Node:           s.node,
		AuthorizeAdmin: func(r *http.Request) bool { return s.authorizeAdmin(r) == nil },
		Verifiers:      cfg.Reputation.Verifiers,
		PublicURL:      cfg.PublicURL,
		RecordSlash:    s.recordSlash,
		RecordImport:   s.recordImport,
		TraceID:        requestTraceID,
		Logger:         s.log,
	})
	if err != nil {
		return fmt.Errorf("sidecar: reputation: %w", err)
	}
	if len(cfg.Reputation.Peers) > 0 {
		if _, err := gossip.New(gossip.Config{Node: s.node, Key: key, Peers: cfg.Reputation.Peers,
			AntiEntropy: cfg.Reputation.AntiEntropy, Logger: s.log}); err != nil {
			return fmt.Errorf("sidecar: reputation peers: %w", err)
		}
	}
	if cfg.Reputation.NATSURL != "" {
		if _, err := natsmesh.New(natsmesh.Config{Node: s.node, URL: cfg.Reputation.NATSURL, Logger: s.log}); err != nil {
			return fmt.Errorf("sidecar: reputation over NATS: %w", err)
		}
	}
	return nil
}

// reputationKey is the key reputation events are signed with: the
// sidecar's own key, or one made once and kept in the data directory (a
// key that changes between runs would disown the node's own events).
func (s *Sidecar) reputationKey(dir string) (identity.PrivateKey, error) {
	if !s.cfg.Key.IsZero() {
		return s.cfg.Key, nil
	}
	path := filepath.Join(dir, reputationKeyName+".key")
	k, err := identity.ReadPrivateKeyFile(path)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return identity.PrivateKey{}, fmt.Errorf("sidecar: reputation key %s: %w", path, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return identity.PrivateKey{}, fmt.Errorf("sidecar: %w", err)
	}
	if k, err = identity.GenerateKey(nil); err != nil {
		return identity.PrivateKey{}, err
	}
	if _, _, err := identity.WriteKeyPair(dir, reputationKeyName, k); err != nil {
		return identity.PrivateKey{}, fmt.Errorf("sidecar: reputation key: %w", err)
	}
	s.log.Info("made a key for this sidecar's reputation events (give the sidecar --key to use the agent's)", "key", path)
	return k, nil
}

// Reputation returns the sidecar's reputation node.
func (s *Sidecar) Reputation() *reputation.Node { return s.node }

// reputationOf returns what the mesh holds about an agent.
func (s *Sidecar) reputationOf(agentID string) policy.Reputation {
	p, ok := s.node.Score(agentID)
	if !ok {
		return policy.Reputation{}
	}
	return policy.Reputation{Known: true, Hundredths: int64(p), Level: reputation.TrustLevel(p)}
}

// observe counts how a call to subject went: for the mesh when subject is
// another agent (the egress reports what it saw), locally when it is this
// sidecar's own agent (which no report of its own may raise).
func (s *Sidecar) observe(x *pipeline.Exchange, subject string, status int, r *pipeline.Refusal) {
	o := reputation.OutcomeSuccess
	switch {
	case r == nil && status < 500:
	case r != nil && r.Reason == pipeline.Canceled:
		return
	case r != nil && r.Reason == pipeline.UpstreamTimeout:
		o = reputation.OutcomeTimeout
	default:
		o = reputation.OutcomeError
	}
	_ = x
	s.node.Observe(subject, o)
}
