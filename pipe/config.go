package pipe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/internal/wire"
	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/pipe/frame"
	"github.com/iatp/iatp/pipeline"
	"github.com/iatp/iatp/policy"
)

// Defaults of Config.
const (
	DefaultBuffer           = 64
	DefaultSendTimeout      = 5 * time.Second
	DefaultMaxMessageBytes  = 1 << 20
	DefaultMaxRecordPayload = 64 << 10
)

// Reporter is what a pipeline needs of the reputation store: report a
// stage's misbehaviour, the way a verifier slashes a remote agent, and
// tell what is held about an agent. The sidecar's reputation store or
// mesh node, wrapped, is one.
type Reporter interface {
	// Report records a report of misbehaviour about subject: reason is
	// hallucination, failure, timeout or error; severity is critical,
	// high, medium or low; details is a JSON object or nil.
	Report(ctx context.Context, subject, reason, severity, traceID string, details []byte) error
	// Reputation returns what is held about an agent.
	Reputation(agentID string) policy.Reputation
}

// Config configures a pipeline. Owner, Recorder and Engine are required;
// the zero value of every other field selects the default named beside it.
type Config struct {
	// Owner is the manifest of the agent that runs the pipeline: the
	// source of every value sent in, the target of every value that comes
	// out (required).
	Owner *manifest.Manifest
	// Engine is the policy engine every message passes (required, unless
	// WithoutPolicyUnsafe). policy.New(policy.Config{}) gives the
	// built-in rules.
	Engine *policy.Engine
	// WithoutPolicyUnsafe opens a pipeline without a policy engine:
	// messages are still parsed, scanned and recorded, but no rule can
	// refuse one, not even for an untrusted agent.
	WithoutPolicyUnsafe bool
	// Recorder is the flight recorder every message is recorded in before
	// it is delivered (required); a *recorder.Log is one.
	Recorder pipeline.Recorder
	// Reporter is the reputation store: stages whose agent it holds as
	// untrusted are refused, and verifiers report through it. Nil means
	// no reputation is known; Verifiers then need one.
	Reporter Reporter
	// Verifiers judge every stage's output; a flagged message is refused
	// and its stage reported.
	Verifiers []Verifier
	// AcceptWarnings delivers messages the policy warns about, recording
	// the warnings. By default a warning refuses the message: a pipe has
	// no human to confirm it.
	AcceptWarnings bool
	// Buffer is how many messages each stage holds before senders wait;
	// 0 means DefaultBuffer (64).
	Buffer int
	// SendTimeout bounds how long a message waits for room in its
	// target's buffer before it is refused; 0 means DefaultSendTimeout
	// (5 s).
	SendTimeout time.Duration
	// MaxMessageBytes bounds a message's JSON encoding; 0 means
	// DefaultMaxMessageBytes (1 MiB).
	MaxMessageBytes int
	// MaxJSONDepth bounds a message's nesting; 0 means the detector's
	// default (256).
	MaxJSONDepth int
	// MaxRecordPayload bounds the scrubbed copy of a message kept in its
	// record; 0 means DefaultMaxRecordPayload (64 KiB).
	MaxRecordPayload int
	// Clock is the time source of records; nil means time.Now.
	Clock func() time.Time
	// NewID makes message and trace ids; nil means random (version 4)
	// UUIDs from a ChaCha8 stream seeded by crypto/rand. Ids must be
	// 1–128 characters of [A-Za-z0-9._:-].
	NewID func() string
	// OnRecordError, if not nil, learns of records that could not be
	// written. A message whose record fails is not delivered either way.
	OnRecordError func(traceID string, err error)
}

// resolve checks cfg and fills in its defaults.
func (cfg Config) resolve() (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("pipe: config: "+format, args...)) }
	switch {
	case cfg.Owner == nil:
		bad("Owner is required: the manifest of the agent that runs the pipeline")
	case cfg.Owner.AgentID() == "":
		bad("Owner's manifest has no agent id")
	}
	if cfg.Recorder == nil {
		bad("Recorder is required: every message is recorded before it is delivered")
	}
	switch {
	case cfg.Engine == nil && !cfg.WithoutPolicyUnsafe:
		errs = append(errs, ErrNoPolicy)
	case cfg.Engine != nil && cfg.WithoutPolicyUnsafe:
		bad("WithoutPolicyUnsafe is set together with an Engine; choose one")
	}
	if len(cfg.Verifiers) > 0 && cfg.Reporter == nil {
		bad("Verifiers need a Reporter to report the stages they flag")
	}
	for i, v := range cfg.Verifiers {
		if v == nil || v.Name() == "" {
			bad("Verifiers[%d] is nil or has no name", i)
		}
	}
	for _, f := range []struct {
		name string
		v    *int
		def  int
		max  int
	}{
		{"Buffer", &cfg.Buffer, DefaultBuffer, 1 << 20},
		{"MaxMessageBytes", &cfg.MaxMessageBytes, DefaultMaxMessageBytes, frame.MaxMessageLen},
		{"MaxJSONDepth", &cfg.MaxJSONDepth, detect.DefaultMaxDepth, 1 << 16},
		{"MaxRecordPayload", &cfg.MaxRecordPayload, DefaultMaxRecordPayload, 16 << 20},
	} {
		switch {
		case *f.v < 0 || *f.v > f.max:
			bad("%s %d is outside 0–%d", f.name, *f.v, f.max)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	switch {
	case cfg.SendTimeout < 0:
		bad("SendTimeout %s is negative", cfg.SendTimeout)
	case cfg.SendTimeout == 0:
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.NewID != nil {
		if id := cfg.NewID(); !wire.ValidTraceID(id) {
			bad("NewID made %q, which is not 1–128 characters of [A-Za-z0-9._:-]", pipeline.Clip(id))
		}
	}
	return cfg, errors.Join(errs...)
}

// untrusted reports why the agent of m may not take part, or "".
func untrusted(m *manifest.Manifest, rep Reporter) string {
	if m.TrustLevel == manifest.Untrusted {
		return "its manifest claims trust level untrusted"
	}
	if rep != nil {
		if r := rep.Reputation(m.AgentID()); r.Known && r.Level == manifest.Untrusted {
			return "its reputation is " + r.String() + " (untrusted)"
		}
	}
	return ""
}
