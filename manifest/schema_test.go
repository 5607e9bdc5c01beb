package manifest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("manifest.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("manifest.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSchemaMatchesTypes keeps the JSON Schema and the Go types in step:
// every JSON field of Manifest (recursively) is a schema property and every
// schema property is a Go field, and the enumerations agree.
func TestSchemaMatchesTypes(t *testing.T) {
	var schema map[string]any
	if err := json.Unmarshal(Schema, &schema); err != nil {
		t.Fatal(err)
	}
	compareProps(t, "", reflect.TypeFor[Manifest](), schema)

	props := schema["properties"].(map[string]any)
	enum := func(path ...string) []string {
		node := props
		for _, p := range path[:len(path)-1] {
			node = node[p].(map[string]any)["properties"].(map[string]any)
		}
		var out []string
		for _, v := range node[path[len(path)-1]].(map[string]any)["enum"].([]any) {
			out = append(out, v.(string))
		}
		return out
	}
	for _, tt := range []struct {
		path []string
		want []string
	}{
		{[]string{"trust_level"}, strings.Split(list(TrustLevels), ", ")},
		{[]string{"reversibility", "level"}, strings.Split(list(ReversibilityLevels), ", ")},
		{[]string{"privacy", "retention_policy"}, strings.Split(list(Retentions), ", ")},
	} {
		if got := enum(tt.path...); !slices.Equal(got, tt.want) {
			t.Errorf("schema enum %v = %v, Go has %v", tt.path, got, tt.want)
		}
	}
}

func compareProps(t *testing.T, path string, typ reflect.Type, schema map[string]any) {
	t.Helper()
	props, _ := schema["properties"].(map[string]any)
	goFields := map[string]reflect.Type{}
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		goFields[name] = f.Type
	}
	for name, ft := range goFields {
		sub, ok := props[name].(map[string]any)
		if !ok {
			t.Errorf("Go field %s%s has no schema property", path, name)
			continue
		}
		if ft.Kind() == reflect.Struct {
			compareProps(t, path+name+".", ft, sub)
		}
	}
	for name := range props {
		if _, ok := goFields[name]; !ok {
			t.Errorf("schema property %s%s has no Go field", path, name)
		}
	}
}

// TestExamplesMatchSchema validates the spec encoding and the served document
// of every example manifest against the schema.
func TestExamplesMatchSchema(t *testing.T) {
	s := compileSchema(t)
	for _, ex := range examples {
		t.Run(ex.file, func(t *testing.T) {
			m, err := Parse(exampleData(t, ex.file))
			if err != nil {
				t.Fatal(err)
			}
			spec, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			served, err := m.Document()
			if err != nil {
				t.Fatal(err)
			}
			for name, doc := range map[string][]byte{"spec encoding": spec, "served document": served} {
				v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Validate(v); err != nil {
					t.Errorf("%s does not match the schema: %v\n%s", name, err, doc)
				}
			}
		})
	}
}

// TestSchemaRejects checks the schema refuses what Parse refuses, so it is a
// usable pre-check for manifest authors.
func TestSchemaRejects(t *testing.T) {
	s := compileSchema(t)
	for _, doc := range []string{
		strings.Replace(validSpec, `"standard"`, `"gold"`, 1),
		strings.Replace(validSpec, `0.5`, `2`, 1),
		strings.Replace(validSpec, `"agent_id":"a"`, `"agent_id":"a b"`, 1),
		strings.Replace(validSpec, `"idempotency":true`, `"idempotency":"yes"`, 1),
		`{"identity":{"agent_id":"a"},"trust_level":"standard"}`,
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("Parse accepted %s", doc)
		}
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(v); err == nil {
			t.Errorf("schema accepted %s", doc)
		}
	}
}
