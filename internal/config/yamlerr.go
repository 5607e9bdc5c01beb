package config

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// The messages of gopkg.in/yaml.v3 that explainTypeErrors and
// explainSyntaxError rewrite.
var (
	reUnknownField = regexp.MustCompile(`^line (\d+): field (\S+) not found in type (\S+)$`)
	reTypeMismatch = regexp.MustCompile("^line (\\d+): cannot unmarshal !!\\w+ `(.*)` into (\\S+)$")
	reLine         = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
)

// explainTypeErrors turns yaml.v3's unmarshal errors into one error per
// problem, each naming the file and line, what is wrong and how to fix it.
func explainTypeErrors(name string, te *yaml.TypeError) error {
	errs := make([]error, 0, len(te.Errors))
	for _, msg := range te.Errors {
		if m := reUnknownField.FindStringSubmatch(msg); m != nil {
			line, key, typ := m[1], m[2], m[3]
			hint := "docs/configuration.md lists every key"
			if near := nearest(key, keysOf[typ]); near != "" {
				hint = "did you mean " + near + "?"
			}
			errs = append(errs, fmt.Errorf("%s:%s: unknown key %s (%s)", name, line, key, hint))
			continue
		}
		if m := reTypeMismatch.FindStringSubmatch(msg); m != nil {
			line, value, typ := m[1], m[2], m[3]
			errs = append(errs, fmt.Errorf("%s:%s: %q is not %s", name, line, value, typeWant(typ)))
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %s", name, msg))
	}
	return errors.Join(errs...)
}

// typeWant describes what a value of Go type typ is written as in YAML.
func typeWant(typ string) string {
	switch typ {
	case "time.Duration":
		return "a duration: write a number with a unit, such as 500ms, 30s, 10m or 720h (days are not a unit)"
	case "bool":
		return "a boolean: write true or false"
	case "int", "int64":
		return "a whole number (sizes are in bytes, without a suffix)"
	case "string":
		return "a string"
	}
	if strings.HasPrefix(typ, "map[") || strings.HasPrefix(typ, "config.") || strings.HasPrefix(typ, "policy.") {
		return "a mapping of keys (key: value, indented below it)"
	}
	if strings.HasPrefix(typ, "[]") {
		return "a list (- item, one per line, or [a, b])"
	}
	return "a " + typ
}

// explainSyntaxError names the file and line of a YAML syntax error and,
// for the common ones, the likely cause.
func explainSyntaxError(name string, err error) error {
	m := reLine.FindStringSubmatch(err.Error())
	if m == nil {
		return fmt.Errorf("%s: YAML syntax error: %w", name, err)
	}
	hint := ""
	switch {
	case strings.Contains(m[2], "cannot start any token"), strings.Contains(m[2], "tab character"):
		hint = " (YAML indents with spaces, not tabs)"
	case strings.Contains(m[2], "mapping values are not allowed"), strings.Contains(m[2], "could not find expected ':'"):
		hint = " (check the indentation, and quote values that hold \": \")"
	}
	return fmt.Errorf("%s:%s: YAML syntax error: %s%s", name, m[1], m[2], hint)
}

// keysOf maps the Go type names that yaml.v3 prints ("config.File") to the
// YAML keys of that type, for suggesting the key an unknown one misspells.
var keysOf = func() map[string][]string {
	out := map[string][]string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || out[t.String()] != nil {
			return
		}
		keys := []string{}
		out[t.String()] = keys
		for i := range t.NumField() {
			f := t.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if key == "" || key == "-" || !f.IsExported() {
				continue
			}
			keys = append(keys, key)
			walk(f.Type)
		}
		out[t.String()] = keys
	}
	walk(reflect.TypeFor[File]())
	return out
}()

// nearest returns the candidate closest to key in edit distance, if it is
// close enough to be a plausible typo of it, else a candidate that key
// begins (public for public_url), else "".
func nearest(key string, candidates []string) string {
	best, bestDist := "", len(key)/3+2
	for _, c := range candidates {
		if d := editDistance(key, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" && len(key) >= 3 {
		for _, c := range candidates {
			if strings.HasPrefix(c, key) {
				return c
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
