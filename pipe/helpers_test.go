package pipe

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/iatp/iatp/manifest"
	"github.com/iatp/iatp/policy"
	"github.com/iatp/iatp/recorder"
	"github.com/iatp/iatp/reputation"
)

// Note and Draft are the message types of the tests.
type Note struct {
	Topic string `json:"topic"`
	Text  string `json:"text"`
}

type Draft struct {
	Title string `json:"title"`
	Body  string `json:"body"`
}

// agent returns a manifest that draws no warning: standard, idempotent,
// reversible, ephemeral, no human review, no training.
func agent(id string, mods ...func(*manifest.Manifest)) *manifest.Manifest {
	m := &manifest.Manifest{
		ProtocolVersion: "1.0",
		Identity:        manifest.Identity{AgentID: id},
		TrustLevel:      manifest.Standard,
		Capabilities:    manifest.Capabilities{Idempotency: true},
		Reversibility:   manifest.Reversibility{Level: manifest.ReversibilityFull},
		Privacy:         manifest.Privacy{RetentionPolicy: manifest.RetentionEphemeral},
	}
	for _, f := range mods {
		f(m)
	}
	return m
}

func retains(r manifest.Retention) func(*manifest.Manifest) {
	return func(m *manifest.Manifest) { m.Privacy.RetentionPolicy = r }
}

// memRecorder keeps records in memory; fail, when set, refuses records of
// the kind failKind (every kind when empty).
type memRecorder struct {
	mu       sync.Mutex
	recs     []recorder.Record
	fail     error
	failKind recorder.Kind
}

func (m *memRecorder) Append(_ context.Context, r *recorder.Record) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil && (m.failKind == "" || m.failKind == r.Kind) {
		return 0, m.fail
	}
	c := *r
	c.Payload, c.Details = slices.Clone(r.Payload), slices.Clone(r.Details)
	c.Reasons = slices.Clone(r.Reasons)
	m.recs = append(m.recs, c)
	return uint64(len(m.recs)), nil
}

func (m *memRecorder) records() []recorder.Record {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.recs)
}

// details decodes a record's details.
func details(t testing.TB, r recorder.Record) map[string]any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(r.Details, &d); err != nil {
		t.Fatalf("details of %s record: %v: %s", r.Kind, err, r.Details)
	}
	return d
}

// discard is a recorder that keeps nothing.
type discard struct{}

func (discard) Append(context.Context, *recorder.Record) (uint64, error) { return 0, nil }

// storeReporter adapts reputation.Store to Reporter.
type storeReporter struct{ s *reputation.Store }

func newStore(t testing.TB) storeReporter {
	t.Helper()
	s, err := reputation.NewStore(reputation.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return storeReporter{s}
}

func (r storeReporter) Report(ctx context.Context, subject, reason, severity, traceID string, details []byte) error {
	_, err := r.s.Record(ctx, reputation.Event{AgentID: subject, Type: reason, Severity: severity,
		TraceID: traceID, Details: details, DetectedBy: "pipe"})
	return err
}

func (r storeReporter) Reputation(agentID string) policy.Reputation {
	p, ok := r.s.Score(agentID)
	if !ok {
		return policy.Reputation{}
	}
	return policy.Reputation{Known: true, Hundredths: int64(p), Level: manifest.TrustLevel(reputation.Level(p))}
}

func engine(t testing.TB, rules ...policy.Rule) *policy.Engine {
	t.Helper()
	e, err := policy.New(policy.Config{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// config returns a valid configuration: owner "owner", the built-in
// rules, rec as the recorder.
func config(t testing.TB, rec interface {
	Append(context.Context, *recorder.Record) (uint64, error)
}) Config {
	return Config{Owner: agent("owner"), Engine: engine(t), Recorder: rec}
}

// researcher turns a topic into a note; writer turns a note into a draft.
var (
	researcher = NewStage(agent("researcher"), func(_ context.Context, topic string) (Note, error) {
		return Note{Topic: topic, Text: "notes on " + topic}, nil
	})
	writer = NewStage(agent("writer", retains(manifest.RetentionTemporary)), func(_ context.Context, n Note) (Draft, error) {
		return Draft{Title: n.Topic, Body: "draft: " + n.Text}, nil
	})
)

// collect reads every result until the run is over.
func collect[T any](t testing.TB, r *Run[string, T]) (vals []Result[T], errs []error) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case res, ok := <-r.Results():
			if !ok {
				return vals, errs
			}
			if res.Err != nil {
				errs = append(errs, res.Err)
			} else {
				vals = append(vals, res)
			}
		case <-timeout:
			t.Fatal("results not closed within 20s")
		}
	}
}

func asError(t testing.TB, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *pipe.Error", err, err)
	}
	return e
}
