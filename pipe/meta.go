package pipe

import (
	"reflect"
)

// Meta is what every message carries besides its value.
type Meta struct {
	// ID is the message's own id: random, never derived from the time.
	ID string
	// TraceID is the trace of the value the pipeline was sent, carried by
	// every message that comes of it.
	TraceID string
	// Source and Target are the agent ids of the sender and the receiver.
	Source, Target string
	// Type is the runtime name of the message's Go type (see TypeName).
	Type string
	// Size is the length of the message's JSON encoding, in bytes.
	Size int
}

// Result is one output of a running pipeline: a value that reached the
// owner, or the error that stopped a message on its way.
type Result[T any] struct {
	// Value is the value; the zero value when Err is set.
	Value T
	// Meta describes the message that carried Value to the owner, or the
	// message that stopped.
	Meta Meta
	// Err is why the message stopped: an *Error.
	Err error
}

// Typer is implemented by a message type that names itself: the name
// both ends of a socket agree on, whatever their packages are called.
type Typer interface {
	MessageType() string
}

var typerType = reflect.TypeFor[Typer]()

// TypeName returns the name messages of type T carry: the type's own
// name when it implements Typer, else its import path and name
// ("github.com/acme/agents.Note"), with * and [] for pointers and slices.
func TypeName[T any]() string {
	return typeName(reflect.TypeFor[T]())
}

func typeName(t reflect.Type) string {
	if t.Implements(typerType) {
		v := reflect.New(t).Elem()
		if t.Kind() == reflect.Pointer {
			v = reflect.New(t.Elem())
		}
		return v.Interface().(Typer).MessageType()
	}
	switch {
	case t.Name() != "" && t.PkgPath() != "":
		return t.PkgPath() + "." + t.Name()
	case t.Kind() == reflect.Pointer:
		return "*" + typeName(t.Elem())
	case t.Kind() == reflect.Slice:
		return "[]" + typeName(t.Elem())
	}
	return t.String()
}
