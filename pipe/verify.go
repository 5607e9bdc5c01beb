package pipe

import (
	"context"
)

// Message is a message as a Verifier sees it.
type Message struct {
	Meta
	// Body is the message's JSON encoding, as every check saw it.
	Body []byte
	// Value is the message's Go value.
	Value any
}

// Flag is a verifier's finding about a message: the message is refused
// and its source reported.
type Flag struct {
	// Reason is the report's reason: hallucination (when empty), failure,
	// timeout or error.
	Reason string
	// Severity is critical, high, medium (when empty) or low.
	Severity string
	// Why says what is wrong, in words; it is scrubbed before it is
	// recorded or reported.
	Why string
}

// Verifier judges the output of stages, the way a verifier (a
// hallucination checker, an injection filter) judges a remote agent. It
// sees every message a stage sends. A Verifier must be safe for
// concurrent use.
type Verifier interface {
	// Name names the verifier in errors, records and reports.
	Name() string
	// Verify returns a Flag for a message it finds wrong, nil for one it
	// lets through, or an error when it cannot tell — which refuses the
	// message too.
	Verify(ctx context.Context, m *Message) (*Flag, error)
}

// VerifierFunc makes a Verifier of a function.
func VerifierFunc(name string, fn func(ctx context.Context, m *Message) (*Flag, error)) Verifier {
	return verifierFunc{name, fn}
}

type verifierFunc struct {
	name string
	fn   func(ctx context.Context, m *Message) (*Flag, error)
}

// Name returns the verifier's name.
func (v verifierFunc) Name() string { return v.name }

// Verify calls the function.
func (v verifierFunc) Verify(ctx context.Context, m *Message) (*Flag, error) {
	return v.fn(ctx, m)
}

// Typed makes a Verifier that judges the messages whose value is a T and
// lets every other through.
func Typed[T any](name string, fn func(ctx context.Context, m *Message, v T) (*Flag, error)) Verifier {
	return VerifierFunc(name, func(ctx context.Context, m *Message) (*Flag, error) {
		v, ok := m.Value.(T)
		if !ok {
			return nil, nil
		}
		return fn(ctx, m, v)
	})
}
