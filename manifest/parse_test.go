package manifest

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// validSpec is a valid spec-shaped manifest that rows of the tables below change one thing in.
const validSpec = `{"protocol_version":"1.0","identity":{"agent_id":"a"},"trust_level":"standard",
"capabilities":{"idempotency":true,"sla_availability":0.5},"reversibility":{"level":"full"},
"privacy":{"retention_policy":"ephemeral"}}`

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // every problem, in order
	}{
		{"missing agent id", `{"protocol_version":"1.0","identity":{},"trust_level":"standard","privacy":{"retention_policy":"ephemeral"}}`,
			[]string{"identity.agent_id: required: the agent's unique id"}},
		{"bad trust level", strings.Replace(validSpec, `"standard"`, `"gold"`, 1),
			[]string{`trust_level: "gold" is not one of verified_partner, trusted, standard, unknown, untrusted`}},
		{"bad reversibility", strings.Replace(validSpec, `"full"`, `"some"`, 1),
			[]string{`reversibility.level: "some" is not one of full, partial, none`}},
		{"bad retention", strings.Replace(validSpec, `"ephemeral"`, `"weekly"`, 1),
			[]string{`privacy.retention_policy: "weekly" is not one of ephemeral, temporary, permanent, forever`}},
		{"availability above 1", strings.Replace(validSpec, `0.5`, `99.9`, 1),
			[]string{"capabilities.sla_availability: must be between 0 and 1 (0.999 means 99.9%), got 99.9"}},
		{"negative rate limit", strings.Replace(validSpec, `"idempotency":true`, `"idempotency":true,"rate_limit":-1`, 1),
			[]string{"capabilities.rate_limit: must not be negative, got -1"}},
		{"wrong type bool", strings.Replace(validSpec, `"idempotency":true`, `"idempotency":"yes"`, 1),
			[]string{"capabilities.idempotency: must be true or false, got a string"}},
		{"wrong type number", strings.Replace(validSpec, `"idempotency":true`, `"idempotency":true,"rate_limit":"100"`, 1),
			[]string{"capabilities.rate_limit: must be a number, got a string"}},
		{"fractional integer", strings.Replace(validSpec, `"idempotency":true`, `"idempotency":true,"rate_limit":1.5`, 1),
			[]string{"capabilities.rate_limit: must be a whole number, got 1.5"}},
		{"wrong type object", strings.Replace(validSpec, `"reversibility":{"level":"full"}`, `"reversibility":"full"`, 1),
			[]string{"reversibility: must be an object, got a string"}},
		{"scopes not a list", strings.Replace(validSpec, `"trust_level":"standard"`, `"trust_level":"standard","scopes":"repo:read"`, 1),
			[]string{"scopes: must be a list of strings, got a string"}},
		{"scope not a string", strings.Replace(validSpec, `"trust_level":"standard"`, `"trust_level":"standard","scopes":["a",3]`, 1),
			[]string{"scopes[1]: must be a string, got a number"}},
		{"agent id with slash", strings.Replace(validSpec, `"agent_id":"a"`, `"agent_id":"a/b"`, 1),
			[]string{`identity.agent_id: "a/b" must be 1–128 characters of letters, digits and . _ : @ -`}},
		{"bad verification key", strings.Replace(validSpec, `"agent_id":"a"`, `"agent_id":"a","verification_key":"ed25519:AAAA"`, 1),
			[]string{"identity.verification_key: holds 3 bytes; an Ed25519 public key has 32"}},
		{"unsupported protocol", strings.Replace(validSpec, `"1.0"`, `"2.0"`, 1),
			[]string{`protocol_version: "2.0" is not supported; this build speaks 1.x`}},
		{"spec shape needs protocol and trust level", `{"identity":{"agent_id":"a"},"privacy":{"retention_policy":"ephemeral"}}`,
			[]string{`protocol_version: required (use "1.0")`, "trust_level: required (one of verified_partner, trusted, standard, unknown, untrusted)"}},
		{"legacy needs retention", `{"agent_id":"a","privacy_contract":{}}`,
			[]string{"privacy_contract.retention: required (one of ephemeral, temporary, permanent, forever)"}},
		{"legacy bad duration", `{"agent_id":"a","capabilities":{"undo_window":"1 week"},"privacy_contract":{"retention":"ephemeral"}}`,
			[]string{`capabilities.undo_window: "1 week" has unit " week"; use ms, s, m, h or d (e.g. "24h")`}},
		{"legacy undo window in ms", `{"agent_id":"a","capabilities":{"undo_window":"1500ms"},"privacy_contract":{"retention":"ephemeral"}}`,
			[]string{`capabilities.undo_window: "1500ms" is not a whole number of seconds`}},
		{"shapes disagree on agent id", `{"agent_id":"b","protocol_version":"1.0","identity":{"agent_id":"a"},"trust_level":"standard","privacy":{"retention_policy":"ephemeral"}}`,
			[]string{"agent_id: b differs from identity.agent_id a; a document carrying both shapes must say the same in both"}},
		{"shapes disagree on retention", strings.Replace(validSpec, `"privacy":`, `"privacy_contract":{"retention":"permanent"},"privacy":`, 1),
			[]string{"privacy_contract.retention: permanent differs from privacy.retention_policy ephemeral; a document carrying both shapes must say the same in both"}},
		{"many problems at once", `{"protocol_version":"1.0","identity":{"agent_id":""},"trust_level":"gold","capabilities":{"idempotency":1,"sla_availability":2},"reversibility":{"level":"x"},"privacy":{"retention_policy":"ephemeral"}}`,
			[]string{
				"capabilities.idempotency: must be true or false, got a number",
				"identity.agent_id: required: the agent's unique id",
				`trust_level: "gold" is not one of verified_partner, trusted, standard, unknown, untrusted`,
				"capabilities.sla_availability: must be between 0 and 1 (0.999 means 99.9%), got 2",
				`reversibility.level: "x" is not one of full, partial, none`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse error = %v, want *ValidationError", err)
			}
			var got []string
			for _, p := range ve.Problems {
				if p.Severity != SeverityError {
					t.Errorf("%v: severity %q, want error", p, p.Severity)
				}
				got = append(got, p.text())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if _, err := Parse([]byte(validSpec)); err != nil {
		t.Fatalf("baseline must be valid: %v", err)
	}
}

func TestParseNotManifest(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"empty", "", "the document is empty"},
		{"blank", " \n\t", "the document is empty"},
		{"array", `[{"agent_id":"a"}]`, "the top level must be an object with agent fields, got an array"},
		{"string", `"agent"`, "the top level must be an object with agent fields, got a string"},
		{"number yaml", `42`, "the top level must be an object with agent fields, got a number"},
		{"broken json", `{"agent_id": `, "invalid JSON"},
		{"trailing json", `{"agent_id":"a"} {}`, "unexpected data after the top-level value"},
		{"not yaml", "agent_id: [unclosed", "neither JSON nor valid YAML"},
		{"yaml scalar", "just some words", "got a string"},
		{"too large", `{"agent_id":"` + strings.Repeat("a", MaxSize) + `"}`, "larger than 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			if !errors.Is(err, ErrNotManifest) {
				t.Fatalf("Parse error = %v, want ErrNotManifest", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"24h", 86_400_000, false},
		{"7d", 604_800_000, false},
		{"90m", 5_400_000, false},
		{"30s", 30_000, false},
		{"2000ms", 2000, false},
		{"5s", 5000, false},
		{"0s", 0, false},
		{"", 0, true},
		{"h", 0, true},
		{"5", 0, true},
		{"-5s", 0, true},
		{"1.5h", 0, true},
		{"5w", 0, true},
		{"99999999999999d", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseDuration(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
	for _, ms := range []int64{1, 999, 1000, 60_000, 5_400_000, 86_400_000, 90_061_000} {
		back, err := ParseDuration(FormatDuration(ms))
		if err != nil || back != ms {
			t.Errorf("ParseDuration(FormatDuration(%d)) = %d, %v", ms, back, err)
		}
	}
}

func TestLegacyMapping(t *testing.T) {
	m, err := Parse([]byte(`{"agent_id":"bank","agent_version":"1.2.0","trust_level":"verified_partner",
	"capabilities":{"reversibility":"full","idempotency":true,"rate_limit":100,"sla_latency":"2000ms","undo_window":"24h"},
	"privacy_contract":{"retention":"ephemeral","human_review":true,"storage_location":"us-east"},"scopes":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Manifest{
		ProtocolVersion: "1.0",
		Identity:        Identity{AgentID: "bank"},
		AgentVersion:    "1.2.0",
		TrustLevel:      VerifiedPartner,
		Capabilities:    Capabilities{Idempotency: true, RateLimit: 100, SLALatencyMs: 2000},
		Reversibility:   Reversibility{Level: ReversibilityFull, UndoWindowSeconds: 86400},
		Privacy:         Privacy{RetentionPolicy: RetentionEphemeral, HumanInLoop: true, StorageLocation: "us-east"},
		written:         writtenDurations{undoWindow: "24h", slaLatency: "2000ms"}, // served as written
	}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
}

func TestSpecRetentionDefaultsToPermanent(t *testing.T) {
	m, rep, err := Assess([]byte(`{"protocol_version":"1.0","identity":{"agent_id":"a"},"trust_level":"standard"}`))
	if err != nil || rep.Verdict() != VerdictValid {
		t.Fatalf("Assess: %v %+v", err, rep)
	}
	if m.Privacy.RetentionPolicy != RetentionPermanent {
		t.Errorf("retention = %q, want permanent", m.Privacy.RetentionPolicy)
	}
	if len(rep.Warnings) == 0 || rep.Warnings[0].Field != "privacy.retention_policy" {
		t.Errorf("warnings = %v, want one about the missing retention first", rep.Warnings)
	}
}

func TestFindings(t *testing.T) {
	tests := []struct {
		name         string
		doc          string
		wantHighRisk []string
		wantWarns    []string
	}{
		{"untrusted without reversibility is high-risk",
			`{"agent_id":"a","trust_level":"untrusted","capabilities":{"reversibility":"none"},"privacy_contract":{"retention":"ephemeral"}}`,
			[]string{"high-risk: trust_level: an untrusted agent without reversibility cannot be used safely: nothing it does can be undone (declare reversibility or do not publish it)"}, nil},
		{"untrusted with reversibility is fine",
			`{"agent_id":"a","trust_level":"untrusted","capabilities":{"reversibility":"full"},"privacy_contract":{"retention":"ephemeral"}}`, nil, nil},
		{"permanent retention on a standard agent warns",
			`{"agent_id":"a","trust_level":"standard","capabilities":{"reversibility":"full"},"privacy_contract":{"retention":"permanent"}}`,
			nil, []string{"warning: privacy.retention_policy: permanent retention with trust level standard: callers' data is kept indefinitely"}},
		{"forever retention on a trusted agent warns",
			`{"agent_id":"a","trust_level":"trusted","capabilities":{"reversibility":"full"},"privacy_contract":{"retention":"forever"}}`,
			nil, []string{"warning: privacy.retention_policy: forever retention with trust level trusted: callers' data is kept indefinitely"}},
		{"permanent retention on an unknown agent does not warn",
			`{"agent_id":"a","trust_level":"unknown","capabilities":{"reversibility":"full"},"privacy_contract":{"retention":"permanent"}}`, nil, nil},
		{"human review on a verified partner warns",
			`{"agent_id":"a","trust_level":"verified_partner","capabilities":{"reversibility":"full"},"privacy_contract":{"retention":"ephemeral","human_review":true}}`,
			nil, []string{"warning: privacy.human_in_loop: a verified partner whose humans review callers' data"}},
		{"training consent: a Python peer scores one point higher",
			`{"protocol_version":"1.0","identity":{"agent_id":"a"},"trust_level":"standard","privacy":{"retention_policy":"temporary","training_consent":true}}`,
			nil, []string{"warning: privacy.training_consent: a peer running the Python package scores this agent 6, not 5: its model has no training_consent field (PROTOCOL §2)"}},
		{"training consent hidden by the clamp is not reported",
			`{"protocol_version":"1.0","identity":{"agent_id":"a"},"trust_level":"verified_partner","capabilities":{"idempotency":true},"reversibility":{"level":"full"},"privacy":{"retention_policy":"ephemeral","training_consent":true}}`,
			nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, f, err := Assess([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if len(f.Errors) != 0 {
				t.Errorf("errors = %v, want none", f.Errors)
			}
			if got := strs(f.HighRisk); !reflect.DeepEqual(got, tt.wantHighRisk) {
				t.Errorf("high-risk = %q, want %q", got, tt.wantHighRisk)
			}
			if got := strs(f.Warnings); !reflect.DeepEqual(got, tt.wantWarns) {
				t.Errorf("warnings = %q, want %q", got, tt.wantWarns)
			}
			wantVerdict := VerdictValid
			if len(tt.wantHighRisk) > 0 {
				wantVerdict = VerdictHighRisk
			}
			if got := f.Verdict(); got != wantVerdict {
				t.Errorf("verdict = %q, want %q", got, wantVerdict)
			}
			// High-risk findings never stop Parse: a sidecar still protects
			// the agent, and logs what Warnings returns — the same findings.
			parsed, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := append(append([]string(nil), tt.wantHighRisk...), tt.wantWarns...)
			if got := strs(parsed.Warnings()); !reflect.DeepEqual(got, want) {
				t.Errorf("Warnings() = %q, want %q", got, want)
			}
			if got := m.Findings(); !reflect.DeepEqual(got, f) {
				t.Errorf("Findings() = %+v, want what Assess said: %+v", got, f)
			}
		})
	}
}

func TestFindingsOfInvalidManifest(t *testing.T) {
	_, f, err := Assess([]byte(`{"agent_id":"a","trust_level":"gold","capabilities":{"reversibility":"none"},"privacy_contract":{"retention":"ephemeral"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Verdict() != VerdictInvalid || f.FieldsValid() {
		t.Errorf("verdict %q, fields valid %v; want invalid, false", f.Verdict(), f.FieldsValid())
	}
	want := []string{`error: trust_level: "gold" is not one of verified_partner, trusted, standard, unknown, untrusted`}
	if got := strs(f.All()); !reflect.DeepEqual(got, want) {
		t.Errorf("All() = %q, want %q", got, want)
	}
}

func strs(ps []Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.String())
	}
	return out
}

// examples are the manifests shipped in examples/manifests with their scores.
var examples = []struct {
	file    string
	score   int
	verdict Verdict
}{
	{"secure_bank.json", 10, VerdictValid},
	{"untrusted_honeypot.json", 0, VerdictHighRisk},
	{"standard_agent.json", 8, VerdictValid},
	{"reviewer_agent.json", 7, VerdictValid},
	{"coder_agent.json", 10, VerdictValid},
	{"booking_agent.json", 10, VerdictValid},
	{"research_agent.yaml", 5, VerdictValid},
}

func exampleData(t testing.TB, file string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "examples", "manifests", file))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestExamples(t *testing.T) {
	for _, ex := range examples {
		t.Run(ex.file, func(t *testing.T) {
			m, f, err := Assess(exampleData(t, ex.file))
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Verdict(); got != ex.verdict {
				t.Errorf("verdict = %q, want %q (findings %v)", got, ex.verdict, f.All())
			}
			if got := m.TrustScore(); got != ex.score {
				t.Errorf("TrustScore() = %d, want %d", got, ex.score)
			}
		})
	}
}

// TestDocumentRoundTrip checks parse(served(m)) == m for both shapes, and
// that the served document is stable (golden files).
func TestDocumentRoundTrip(t *testing.T) {
	for _, ex := range examples {
		t.Run(ex.file, func(t *testing.T) {
			m, err := Parse(exampleData(t, ex.file))
			if err != nil {
				t.Fatal(err)
			}
			doc, err := m.Document()
			if err != nil {
				t.Fatal(err)
			}
			back, err := Parse(doc)
			if err != nil {
				t.Fatalf("Parse(Document()): %v\n%s", err, doc)
			}
			m.notes, back.notes = nil, nil
			if !reflect.DeepEqual(back, m) {
				t.Errorf("round trip changed the manifest:\n got  %+v\nwant %+v", back, m)
			}
			golden(t, filepath.Join("testdata", "served", strings.TrimSuffix(ex.file, filepath.Ext(ex.file))+".json"), doc)
		})
	}
}

// TestDocumentCarriesBothShapes checks the legacy keys a reader of the
// Python package's shape needs are present and agree with the spec keys.
func TestDocumentCarriesBothShapes(t *testing.T) {
	m, err := Parse(exampleData(t, "booking_agent.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := m.Document()
	for _, want := range []string{
		`"agent_id":"booking-agent"`,
		`"privacy_contract":{"retention":"ephemeral","storage_location":"us-west-2","human_review":false`,
		`"reversibility":"partial"`,
		`"undo_window":"1h"`, // from undo_window_seconds 3600
		`"sla_latency":"2s"`, // from sla_latency_ms 2000
		`"identity":{"agent_id":"booking-agent"`,
	} {
		if !bytes.Contains(doc, []byte(want)) {
			t.Errorf("served document lacks %s:\n%s", want, doc)
		}
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update if the change is intended):\n got %s\nwant %s", path, got, want)
	}
}

// TestDocumentKeepsWrittenDurations checks that the legacy duration keys of
// the served document say what the operator wrote, while the spec keys
// carry the numbers.
func TestDocumentKeepsWrittenDurations(t *testing.T) {
	legacy := func(undo, sla string) string {
		return `{"agent_id":"a","capabilities":{"reversibility":"full","undo_window":"` + undo + `","sla_latency":"` + sla + `"},"privacy_contract":{"retention":"ephemeral"}}`
	}
	tests := []struct {
		name   string
		doc    string
		change func(*Manifest)
		want   []string
	}{
		{"hours and milliseconds stay", legacy("24h", "2000ms"), nil,
			[]string{`"undo_window":"24h"`, `"sla_latency":"2000ms"`, `"undo_window_seconds":86400`, `"sla_latency_ms":2000`}},
		{"days and seconds stay", legacy("1d", "2s"), nil,
			[]string{`"undo_window":"1d"`, `"sla_latency":"2s"`, `"undo_window_seconds":86400`, `"sla_latency_ms":2000`}},
		{"surrounding space is dropped", legacy(" 90m ", "5000ms"), nil,
			[]string{`"undo_window":"90m"`, `"sla_latency":"5000ms"`}},
		{"spec numbers take the largest exact unit",
			`{"protocol_version":"1.0","identity":{"agent_id":"a"},"trust_level":"standard","capabilities":{"sla_latency_ms":1500},"reversibility":{"level":"full","undo_window_seconds":7200},"privacy":{"retention_policy":"ephemeral"}}`, nil,
			[]string{`"undo_window":"2h"`, `"sla_latency":"1500ms"`}},
		{"a value changed since parsing is not served as the old text", legacy("24h", "2000ms"),
			func(m *Manifest) { m.Reversibility.UndoWindowSeconds, m.Capabilities.SLALatencyMs = 3600, 500 },
			[]string{`"undo_window":"1h"`, `"sla_latency":"500ms"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			if tt.change != nil {
				tt.change(m)
			}
			doc, err := m.Document()
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range tt.want {
				if !bytes.Contains(doc, []byte(want)) {
					t.Errorf("served document lacks %s:\n%s", want, doc)
				}
			}
			back, err := Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			if again, _ := back.Document(); !bytes.Equal(again, doc) {
				t.Errorf("serving the document read back changed it:\n got %s\nwant %s", again, doc)
			}
		})
	}
}
