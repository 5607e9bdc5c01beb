package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/iatp/iatp/internal/wire"
)

// MaxSize is the largest manifest Parse accepts, in bytes.
const MaxSize = 1 << 20

// DefaultProtocolVersion is the protocol version of a legacy manifest.
const DefaultProtocolVersion = "1.0"

// ErrNotManifest is wrapped by every error about input that is not a
// manifest at all: empty, too large, not JSON or YAML, or not an object.
var ErrNotManifest = errors.New("not a manifest")

// Parse decodes a manifest written as JSON or YAML in either shape and
// validates its fields. It returns an error wrapping ErrNotManifest for input
// that is not a manifest document, or a *ValidationError listing every
// error. High-risk findings and warnings (see Assess) do not stop Parse: a
// sidecar still protects, and warns about, an agent whose manifest is
// high-risk (Manifest.Warnings).
func Parse(data []byte) (*Manifest, error) {
	m, errs, err := read(data)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, &ValidationError{Problems: errs}
	}
	return m, nil
}

// ParseFile reads and parses the manifest at path (at most MaxSize bytes).
func ParseFile(path string) (*Manifest, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// ReadFile reads a manifest file, refusing files over MaxSize.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := wire.ReadAll(f, MaxSize)
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrNotManifest, MaxSize)
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}

// read decodes data and returns the manifest with its field errors.
func read(data []byte) (*Manifest, []Problem, error) {
	root, err := decodeDocument(data)
	if err != nil {
		return nil, nil, err
	}
	d := &reader{}
	m := d.manifest(root)
	return m, append(d.errs, m.validate()...), nil
}

// decodeDocument turns JSON or YAML into a generic object.
func decodeDocument(data []byte) (map[string]any, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrNotManifest, MaxSize)
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%w: the document is empty", ErrNotManifest)
	}
	var v any
	if trimmed[0] == '{' || trimmed[0] == '[' || trimmed[0] == '"' {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("%w: invalid JSON: %v", ErrNotManifest, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, fmt.Errorf("%w: invalid JSON: unexpected data after the top-level value", ErrNotManifest)
		}
	} else {
		if err := yaml.Unmarshal(trimmed, &v); err != nil {
			return nil, fmt.Errorf("%w: neither JSON nor valid YAML: %v", ErrNotManifest, err)
		}
	}
	obj, ok := asObject(v)
	if !ok {
		return nil, fmt.Errorf("%w: the top level must be an object with agent fields, got %s", ErrNotManifest, typeName(v))
	}
	return obj, nil
}

// asObject accepts JSON objects and YAML mappings with string keys.
func asObject(v any) (map[string]any, bool) {
	switch o := v.(type) {
	case map[string]any:
		return o, true
	case map[any]any:
		out := make(map[string]any, len(o))
		for k, val := range o {
			ks, ok := k.(string)
			if !ok {
				return nil, false
			}
			out[ks] = val
		}
		return out, true
	}
	return nil, false
}

// typeName names a decoded value's JSON type for error messages.
func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number, int, int64, uint64, float64:
		return "a number"
	case []any:
		return "an array"
	case map[string]any, map[any]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// reader walks a decoded document, collecting type errors with their paths.
type reader struct {
	errs []Problem
}

func (d *reader) fail(path, format string, args ...any) {
	d.errs = append(d.errs, Problem{Severity: SeverityError, Field: path, Message: fmt.Sprintf(format, args...)})
}

func join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// object returns the object at obj[key], or nil when absent or null.
func (d *reader) object(obj map[string]any, parent, key string) map[string]any {
	v, ok := obj[key]
	if !ok || v == nil {
		return nil
	}
	o, ok := asObject(v)
	if !ok {
		d.fail(join(parent, key), "must be an object, got %s", typeName(v))
		return nil
	}
	return o
}

// str returns the string at obj[key]; present is false when absent or null.
func (d *reader) str(obj map[string]any, parent, key string) (s string, present bool) {
	v, ok := obj[key]
	if !ok || v == nil {
		return "", false
	}
	s, ok = v.(string)
	if !ok {
		d.fail(join(parent, key), "must be a string, got %s", typeName(v))
		return "", false
	}
	return s, true
}

func (d *reader) boolean(obj map[string]any, parent, key string) (b bool, present bool) {
	v, ok := obj[key]
	if !ok || v == nil {
		return false, false
	}
	b, ok = v.(bool)
	if !ok {
		d.fail(join(parent, key), "must be true or false, got %s", typeName(v))
		return false, false
	}
	return b, true
}

// number returns the float value of obj[key].
func (d *reader) number(obj map[string]any, parent, key string) (f float64, present bool) {
	v, ok := obj[key]
	if !ok || v == nil {
		return 0, false
	}
	var err error
	switch n := v.(type) {
	case json.Number:
		f, err = n.Float64()
	case int:
		f = float64(n)
	case int64:
		f = float64(n)
	case uint64:
		f = float64(n)
	case float64:
		f = n
	default:
		d.fail(join(parent, key), "must be a number, got %s", typeName(v))
		return 0, false
	}
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		d.fail(join(parent, key), "must be a finite number")
		return 0, false
	}
	return f, true
}

// integer returns the whole-number value of obj[key].
func (d *reader) integer(obj map[string]any, parent, key string) (n int64, present bool) {
	f, ok := d.number(obj, parent, key)
	if !ok {
		return 0, false
	}
	if f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		d.fail(join(parent, key), "must be a whole number, got %v", f)
		return 0, false
	}
	return int64(f), true
}

func (d *reader) strings(obj map[string]any, parent, key string) []string {
	v, ok := obj[key]
	if !ok || v == nil {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		d.fail(join(parent, key), "must be a list of strings, got %s", typeName(v))
		return nil
	}
	var out []string
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			d.fail(fmt.Sprintf("%s[%d]", join(parent, key), i), "must be a string, got %s", typeName(item))
			continue
		}
		out = append(out, s)
	}
	return out
}

// raw re-encodes obj[key] as JSON, for members kept verbatim.
func (d *reader) raw(obj map[string]any, key string, want string) json.RawMessage {
	v, ok := obj[key]
	if !ok || v == nil {
		return nil
	}
	switch want {
	case "object":
		if _, ok := asObject(v); !ok {
			d.fail(key, "must be an object, got %s", typeName(v))
			return nil
		}
	case "array":
		if _, ok := v.([]any); !ok {
			d.fail(key, "must be a list, got %s", typeName(v))
			return nil
		}
	}
	b, err := json.Marshal(normalizeYAML(v))
	if err != nil {
		d.fail(key, "cannot be encoded as JSON: %v", err)
		return nil
	}
	return b
}

// normalizeYAML converts YAML's map[any]any into JSON-encodable maps.
func normalizeYAML(v any) any {
	switch o := v.(type) {
	case map[any]any:
		out := make(map[string]any, len(o))
		for k, val := range o {
			out[fmt.Sprint(k)] = normalizeYAML(val)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(o))
		for k, val := range o {
			out[k] = normalizeYAML(val)
		}
		return out
	case []any:
		out := make([]any, len(o))
		for i, val := range o {
			out[i] = normalizeYAML(val)
		}
		return out
	}
	return v
}

// pick merges a spec-shape value and its legacy-shape twin. When both are
// present they must agree: a served document carries both, and a reader of
// one shape must see the same agent as a reader of the other.
func pick[T comparable](d *reader, spec T, specOK bool, specPath string, legacy T, legacyOK bool, legacyPath string) (T, bool) {
	switch {
	case specOK && legacyOK:
		if spec != legacy {
			d.fail(legacyPath, "%v differs from %s %v; a document carrying both shapes must say the same in both", legacy, specPath, spec)
		}
		return spec, true
	case specOK:
		return spec, true
	case legacyOK:
		return legacy, true
	}
	var zero T
	return zero, false
}

// manifest reads both shapes from a decoded document into one model.
func (d *reader) manifest(root map[string]any) *Manifest {
	m := &Manifest{}
	identity := d.object(root, "", "identity")
	specShape := identity != nil

	pv, pvOK := d.str(root, "", "protocol_version")
	switch {
	case pvOK:
		m.ProtocolVersion = pv
	case specShape:
		d.fail("protocol_version", "required (use %q)", DefaultProtocolVersion)
	default:
		m.ProtocolVersion = DefaultProtocolVersion
	}

	specID, specIDOK := "", false
	if identity != nil {
		specID, specIDOK = d.str(identity, "identity", "agent_id")
		m.Identity.VerificationKey, _ = d.str(identity, "identity", "verification_key")
		m.Identity.Owner, _ = d.str(identity, "identity", "owner")
		m.Identity.Contact, _ = d.str(identity, "identity", "contact")
	}
	legacyID, legacyIDOK := d.str(root, "", "agent_id")
	m.Identity.AgentID, _ = pick(d, specID, specIDOK, "identity.agent_id", legacyID, legacyIDOK, "agent_id")
	m.AgentVersion, _ = d.str(root, "", "agent_version")

	tl, tlOK := d.str(root, "", "trust_level")
	switch {
	case tlOK:
		m.TrustLevel = TrustLevel(tl)
	case specShape:
		d.fail("trust_level", "required (one of %s)", list(TrustLevels))
	default:
		m.TrustLevel = Standard // the Python package's default
	}
	m.Scopes = d.strings(root, "", "scopes")

	caps := d.object(root, "", "capabilities")
	rev := d.object(root, "", "reversibility")
	priv := d.object(root, "", "privacy")
	legacyPriv := d.object(root, "", "privacy_contract")
	if caps == nil {
		caps = map[string]any{}
	}
	m.Capabilities.Idempotency, _ = d.boolean(caps, "capabilities", "idempotency")
	if n, ok := d.integer(caps, "capabilities", "concurrency_limit"); ok {
		m.Capabilities.ConcurrencyLimit = clampInt(n)
	}
	if n, ok := d.integer(caps, "capabilities", "rate_limit"); ok {
		m.Capabilities.RateLimit = clampInt(n)
	}
	m.Capabilities.SLAAvailability, _ = d.number(caps, "capabilities", "sla_availability")
	specSLA, specSLAOK := d.integer(caps, "capabilities", "sla_latency_ms")
	legacySLA, slaText, legacySLAOK := d.duration(caps, "capabilities", "sla_latency", 1)
	m.Capabilities.SLALatencyMs, _ = pick(d, specSLA, specSLAOK, "capabilities.sla_latency_ms", legacySLA, legacySLAOK, "capabilities.sla_latency")
	if legacySLAOK && legacySLA == m.Capabilities.SLALatencyMs {
		m.written.slaLatency = nonCanonical(slaText, legacySLA)
	}

	// Reversibility: spec object, or the legacy string inside capabilities.
	var specLevel, legacyLevel string
	var specLevelOK, legacyLevelOK bool
	var specUndo, legacyUndo int64
	var specUndoOK, legacyUndoOK bool
	var undoText string
	if rev != nil {
		specLevel, specLevelOK = d.str(rev, "reversibility", "level")
		specUndo, specUndoOK = d.integer(rev, "reversibility", "undo_window_seconds")
		m.Reversibility.CompensationMethod, _ = d.str(rev, "reversibility", "compensation_method")
		m.Reversibility.CompensationSLAMs, _ = d.integer(rev, "reversibility", "compensation_sla_ms")
		m.Reversibility.CompensationEndpoint, _ = d.str(rev, "reversibility", "compensation_endpoint")
	}
	legacyLevel, legacyLevelOK = d.str(caps, "capabilities", "reversibility")
	legacyUndo, undoText, legacyUndoOK = d.duration(caps, "capabilities", "undo_window", 1000)
	level, ok := pick(d, specLevel, specLevelOK, "reversibility.level", legacyLevel, legacyLevelOK, "capabilities.reversibility")
	if ok {
		m.Reversibility.Level = ReversibilityLevel(level)
	} else {
		m.Reversibility.Level = ReversibilityNone
	}
	m.Reversibility.UndoWindowSeconds, _ = pick(d, specUndo, specUndoOK, "reversibility.undo_window_seconds", legacyUndo, legacyUndoOK, "capabilities.undo_window")
	if legacyUndoOK && legacyUndo == m.Reversibility.UndoWindowSeconds {
		m.written.undoWindow = nonCanonical(undoText, legacyUndo*1000)
	}

	// Privacy: spec object and/or legacy privacy_contract.
	if priv == nil {
		priv = map[string]any{}
	}
	if legacyPriv == nil {
		legacyPriv = map[string]any{}
	}
	sr, srOK := d.str(priv, "privacy", "retention_policy")
	lr, lrOK := d.str(legacyPriv, "privacy_contract", "retention")
	ret, retOK := pick(d, sr, srOK, "privacy.retention_policy", lr, lrOK, "privacy_contract.retention")
	switch {
	case retOK:
		m.Privacy.RetentionPolicy = Retention(ret)
	case specShape:
		m.Privacy.RetentionPolicy = RetentionPermanent
		m.notes = append(m.notes, Problem{Severity: SeverityWarning, Field: "privacy.retention_policy", Message: "not stated; taken to be permanent (state it to be scored and checked as what it is)"})
	default:
		d.fail("privacy_contract.retention", "required (one of %s)", list(Retentions))
	}
	sl, slOK := d.str(priv, "privacy", "storage_location")
	ll, llOK := d.str(legacyPriv, "privacy_contract", "storage_location")
	m.Privacy.StorageLocation, _ = pick(d, sl, slOK, "privacy.storage_location", ll, llOK, "privacy_contract.storage_location")
	sh, shOK := d.boolean(priv, "privacy", "human_in_loop")
	lh, lhOK := d.boolean(legacyPriv, "privacy_contract", "human_review")
	m.Privacy.HumanInLoop, _ = pick(d, sh, shOK, "privacy.human_in_loop", lh, lhOK, "privacy_contract.human_review")
	m.Privacy.TrainingConsent, _ = d.boolean(priv, "privacy", "training_consent")
	for _, f := range []struct {
		key string
		dst **bool
	}{{"encryption_at_rest", &m.Privacy.EncryptionAtRest}, {"encryption_in_transit", &m.Privacy.EncryptionInTransit}} {
		sv, svOK := d.boolean(priv, "privacy", f.key)
		lv, lvOK := d.boolean(legacyPriv, "privacy_contract", f.key)
		if v, ok := pick(d, sv, svOK, "privacy."+f.key, lv, lvOK, "privacy_contract."+f.key); ok {
			*f.dst = &v
		}
	}

	m.Attestation = d.raw(root, "attestation", "object")
	m.Signatures = d.raw(root, "signatures", "array")
	return m
}

// duration reads a legacy duration string ("24h", "7d", "90m", "30s",
// "2000ms") as a count of unit milliseconds (1 for milliseconds, 1000 for
// seconds), and returns the string as written, without surrounding space.
func (d *reader) duration(obj map[string]any, parent, key string, unitMs int64) (int64, string, bool) {
	s, ok := d.str(obj, parent, key)
	if !ok {
		return 0, "", false
	}
	ms, err := ParseDuration(s)
	if err != nil {
		d.fail(join(parent, key), "%v", err)
		return 0, "", false
	}
	if ms%unitMs != 0 {
		d.fail(join(parent, key), "%q is not a whole number of seconds", s)
		return 0, "", false
	}
	return ms / unitMs, strings.TrimSpace(s), true
}

// maxDurationMs bounds legacy durations (100 years) so arithmetic never overflows.
const maxDurationMs = 100 * 366 * 24 * 3600 * 1000

// ParseDuration parses a legacy duration string — a whole number followed by
// ms, s, m, h or d, such as "2000ms", "5s", "90m", "24h" or "7d" — into
// milliseconds.
func ParseDuration(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 || i > 15 {
		return 0, fmt.Errorf("%q is not a duration (a whole number followed by ms, s, m, h or d, e.g. \"24h\")", s)
	}
	var n int64
	for _, c := range t[:i] {
		n = n*10 + int64(c-'0')
	}
	var unit int64
	switch t[i:] {
	case "ms":
		unit = 1
	case "s":
		unit = 1000
	case "m":
		unit = 60 * 1000
	case "h":
		unit = 3600 * 1000
	case "d":
		unit = 24 * 3600 * 1000
	default:
		return 0, fmt.Errorf("%q has unit %q; use ms, s, m, h or d (e.g. \"24h\")", s, t[i:])
	}
	if n > maxDurationMs/unit {
		return 0, fmt.Errorf("%q is longer than 100 years", s)
	}
	return n * unit, nil
}

// FormatDuration renders milliseconds in the legacy form, using the largest
// unit that divides it exactly ("24h", "90m", "2000ms").
func FormatDuration(ms int64) string {
	for _, u := range []struct {
		ms   int64
		name string
	}{{24 * 3600 * 1000, "d"}, {3600 * 1000, "h"}, {60 * 1000, "m"}, {1000, "s"}} {
		if ms != 0 && ms%u.ms == 0 {
			return fmt.Sprintf("%d%s", ms/u.ms, u.name)
		}
	}
	return fmt.Sprintf("%dms", ms)
}

func clampInt(n int64) int {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	if n < math.MinInt32 {
		return math.MinInt32
	}
	return int(n)
}

// list renders allowed values for error messages: "a, b, c".
func list[T ~string](values []T) string {
	parts := make([]string, len(values))
	for i, v := range values {
		parts[i] = string(v)
	}
	return strings.Join(parts, ", ")
}
