package policy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/cel-go/cel"
	celast "github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/interpreter"

	"github.com/iatp/iatp/detect"
	"github.com/iatp/iatp/manifest"
)

// celCostLimit bounds the work one rule may do on one request: the request
// body is the caller's, and a rule that iterates over it must not let a
// large body stall the sidecar (100,000 is ~0.1 s of CPU in the worst case
// measured; real rules cost a few hundred). Exceeding it is a run-time
// error, which blocks.
const celCostLimit = 100_000

// fields lists the keys of each CEL variable; a rule that selects any other
// field of these variables fails to compile instead of failing every request.
var fields = map[string][]string{
	"caller":  {"agent_id", "trust_level", "trust_score", "reputation", "attested", "authenticated"},
	"target":  {"agent_id", "trust_level", "trust_score", "scopes", "reversibility", "retention", "human_in_loop", "training_consent", "idempotency", "reputation"},
	"request": {"method", "path", "headers", "body"},
	"message": {"id", "trace_id", "source", "target", "type", "size", "body"},
}

// Message is a message between two agents on a typed pipe, as operator
// rules see it in the message variable.
type Message struct {
	// ID is the message's unique id.
	ID string
	// TraceID is the trace the message belongs to.
	TraceID string
	// Source and Target are the agent ids of the sender and the receiver.
	Source, Target string
	// Type is the runtime name of the message's Go type.
	Type string
	// Size is the length of the message's JSON encoding in bytes.
	Size int
}

type compiledRule struct {
	Rule
	decision Outcome
	program  cel.Program
}

func (r *compiledRule) reason() string {
	if r.Reason != "" {
		return r.Reason
	}
	return "rule '" + r.Name + "' matched"
}

func celEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("caller", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("target", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("sensitive", cel.ListType(cel.StringType)),
		cel.Variable("message", cel.MapType(cel.StringType, cel.DynType)),
	)
}

// compileRules compiles every rule, refusing the first bad one by name. It
// also reports whether any rule reads request.body (or request as a whole).
func compileRules(rules []Rule) ([]*compiledRule, bool, error) {
	if len(rules) == 0 {
		return nil, false, nil
	}
	env, err := celEnv()
	if err != nil {
		return nil, false, fmt.Errorf("policy: cel environment: %w", err)
	}
	var out []*compiledRule
	needsBody := false
	seen := map[string]bool{}
	for i, r := range rules {
		where := fmt.Sprintf("policy.rules[%d]", i)
		if r.Name == "" {
			return nil, false, fmt.Errorf("%s: name is required", where)
		}
		where = fmt.Sprintf("policy rule %q", r.Name)
		if seen[r.Name] {
			return nil, false, fmt.Errorf("%s: the name is used twice", where)
		}
		seen[r.Name] = true
		if slices.Contains(BuiltinRules, r.Name) {
			return nil, false, fmt.Errorf("%s: the name is a built-in rule's", where)
		}
		var decision Outcome
		switch r.Decision {
		case "block":
			decision = Block
		case "warn":
			decision = Warn
		case "allow":
			decision = Allow
		default:
			return nil, false, fmt.Errorf("%s: decision %q is not one of block, warn, allow", where, r.Decision)
		}
		if strings.TrimSpace(r.When) == "" {
			return nil, false, fmt.Errorf("%s: when is required (a CEL expression)", where)
		}
		ast, iss := env.Compile(r.When)
		if iss.Err() != nil {
			return nil, false, fmt.Errorf("%s does not compile: %w", where, iss.Err())
		}
		if !ast.OutputType().IsExactType(types.BoolType) {
			return nil, false, fmt.Errorf("%s: when must yield a bool, it yields %s", where, ast.OutputType())
		}
		body, err := checkFields(ast.NativeRep().Expr())
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", where, err)
		}
		needsBody = needsBody || body
		prg, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.InterruptCheckFrequency(100))
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, &compiledRule{Rule: r, decision: decision, program: prg})
	}
	return out, needsBody, nil
}

// checkFields refuses selections of unknown fields on the rule variables and
// reports whether the expression may read the request body (request.body or
// message.body).
func checkFields(expr celast.Expr) (readsBody bool, err error) {
	selected := map[int64]bool{} // ids of request and message idents used in a known selection
	celast.PostOrderVisit(expr, celast.NewExprVisitor(func(e celast.Expr) {
		if err != nil || e.Kind() != celast.SelectKind {
			return
		}
		sel := e.AsSelect()
		op := sel.Operand()
		if op.Kind() != celast.IdentKind {
			return
		}
		name := op.AsIdent()
		known, ok := fields[name]
		if !ok {
			return
		}
		if !slices.Contains(known, sel.FieldName()) {
			err = fmt.Errorf("%s has no field %q (it has %s)", name, sel.FieldName(), strings.Join(known, ", "))
			return
		}
		if name == "request" || name == "message" {
			selected[op.ID()] = true
			if sel.FieldName() == "body" {
				readsBody = true
			}
		}
	}))
	if err != nil {
		return false, err
	}
	// request or message used any other way (request["body"],
	// has(request.body), …) may read the body.
	celast.PostOrderVisit(expr, celast.NewExprVisitor(func(e celast.Expr) {
		if e.Kind() == celast.IdentKind && (e.AsIdent() == "request" || e.AsIdent() == "message") && !selected[e.ID()] {
			readsBody = true
		}
	}))
	return readsBody, nil
}

// activation resolves the rule variables lazily: the request (and its
// parsed body) is built only when a rule reads it.
type activation struct {
	in        *Input
	score     int
	level     manifest.TrustLevel
	caller    map[string]any
	target    map[string]any
	request   map[string]any
	requestOK bool
	message   map[string]any
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "caller":
		if a.caller == nil {
			level, score := CallerTrust(a.in.Caller)
			rep := 5.0
			if a.in.Caller.Reputation.Known {
				rep = a.in.Caller.Reputation.Score()
			}
			a.caller = map[string]any{
				"agent_id": a.in.Caller.AgentID, "trust_level": string(level), "trust_score": int64(score),
				"reputation": rep, "attested": a.in.Caller.Attested, "authenticated": a.in.Caller.Authenticated,
			}
		}
		return a.caller, true
	case "target":
		if a.target == nil {
			m := a.in.Target.Manifest
			scopes := m.Scopes
			if scopes == nil {
				scopes = []string{}
			}
			rep := 5.0
			if a.in.Target.Reputation.Known {
				rep = a.in.Target.Reputation.Score()
			}
			a.target = map[string]any{
				"agent_id": m.AgentID(), "trust_level": string(a.level), "trust_score": int64(a.score),
				"scopes": scopes, "reversibility": string(m.Reversibility.Level),
				"retention": string(m.Privacy.RetentionPolicy), "human_in_loop": m.Privacy.HumanInLoop,
				"training_consent": m.Privacy.TrainingConsent, "idempotency": m.Capabilities.Idempotency,
				"reputation": rep,
			}
		}
		return a.target, true
	case "request":
		if !a.requestOK {
			a.requestOK = true
			r := a.in.Request
			headers := map[string]string{}
			if r.Headers != nil {
				headers = r.Headers.HeaderMap()
			}
			a.request = map[string]any{"method": r.Method, "path": r.Path, "headers": headers, "body": celValue(r.Body)}
		}
		return a.request, true
	case "message":
		if a.message == nil {
			m, body := a.in.Message, any(nil)
			if m == nil {
				m = &Message{} // an HTTP request: every field empty
			} else {
				body = celValue(a.in.Request.Body)
			}
			a.message = map[string]any{
				"id": m.ID, "trace_id": m.TraceID, "source": m.Source, "target": m.Target,
				"type": m.Type, "size": int64(m.Size), "body": body,
			}
		}
		return a.message, true
	case "sensitive":
		names := a.in.Sensitive.Names()
		if names == nil {
			names = []string{}
		}
		return names, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

// eval runs one rule. Any run-time error (a missing key, a type error, the
// cost limit) is returned so that Decide blocks.
func (r *compiledRule) eval(ctx context.Context, in *Input, score int, level manifest.TrustLevel) (bool, error) {
	act := &activation{in: in, score: score, level: level}
	out, _, err := r.program.ContextEval(ctx, act)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, errors.New("did not yield a bool")
	}
	return b, nil
}

// celValue converts a parsed body for CEL in place: numbers, kept as their
// JSON text by the parser (detect.Number, or json.Number), become doubles (±Inf beyond the range of a
// double, so that 1e400 compares as a very large number instead of failing
// the rule); everything else is already a CEL value.
func celValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = celValue(e)
		}
	case []any:
		for i, e := range t {
			t[i] = celValue(e)
		}
	case detect.Number:
		return t.Float64() // out of range: ±Inf, which is what a rule should see
	case json.Number:
		f, _ := strconv.ParseFloat(string(t), 64)
		return f
	}
	return v
}
