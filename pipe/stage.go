package pipe

import (
	"context"
	"errors"
	"fmt"

	"github.com/iatp/iatp/manifest"
)

// Stage is one agent of a pipeline: a function from In to Out that runs
// under the agent's manifest. The zero Stage is refused by Open.
type Stage[In, Out any] struct {
	agent   *manifest.Manifest
	fn      func(context.Context, In) (Out, error)
	workers int
	remote  *Sender
}

// NewStage returns the stage of the agent whose manifest is agent,
// running fn on each message it receives. fn gets the pipeline's context
// and must return when it is done; a value fn receives may be shared with
// other stages (a fan-out gives every branch the same value), so fn must
// not modify it.
func NewStage[In, Out any](agent *manifest.Manifest, fn func(ctx context.Context, in In) (Out, error)) Stage[In, Out] {
	return Stage[In, Out]{agent: agent, fn: fn, workers: 1}
}

// WithWorkers returns the stage running n copies of its function at once
// (1 by default). More workers raise throughput, and let the recorder
// write several records with one system call; the order of messages is
// then no longer kept.
func (s Stage[In, Out]) WithWorkers(n int) Stage[In, Out] {
	s.workers = n
	return s
}

// Manifest returns the stage's manifest.
func (s Stage[In, Out]) Manifest() *manifest.Manifest { return s.agent }

// Agent returns the stage's agent id.
func (s Stage[In, Out]) Agent() string {
	if s.agent == nil {
		return ""
	}
	return s.agent.AgentID()
}

// check reports what makes the stage unusable.
func (s Stage[In, Out]) check() error {
	switch {
	case s.agent == nil:
		return errors.New("pipe: a stage without a manifest (use NewStage)")
	case s.agent.AgentID() == "":
		return errors.New("pipe: a stage whose manifest has no agent id")
	case s.remote != nil:
		if r := s.remote.Receiver(); r != s.agent.AgentID() {
			return fmt.Errorf("pipe: remote stage %q: the connection reaches %q", s.agent.AgentID(), r)
		}
		return nil
	case s.fn == nil:
		return fmt.Errorf("pipe: stage %q has no function", s.agent.AgentID())
	case s.workers < 1:
		return fmt.Errorf("pipe: stage %q has %d workers, at least 1 needed", s.agent.AgentID(), s.workers)
	}
	return nil
}
