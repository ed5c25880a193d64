// Package schemacheck validates a JSON document against the subset of JSON Schema that the
// repository's own schemas use (type, required, properties, additionalProperties,
// items, enum, pattern, minimum), so tests need no Python package to check what sli2vol writes.
package schemacheck

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
)

// Validate checks doc against schema (both JSON); the error names the first offending path.
func Validate(schema, doc []byte) error {
	var s, d any
	if err := json.Unmarshal(schema, &s); err != nil {
		return fmt.Errorf("schema: %w", err)
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return fmt.Errorf("document: %w", err)
	}
	sm, ok := s.(map[string]any)
	if !ok {
		return fmt.Errorf("schema: not an object")
	}
	return check(sm, d, "$")
}

func typeOf(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case float64:
		if x == float64(int64(x)) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	default:
		return "object"
	}
}

func typeOK(want any, got string) bool {
	var types []string
	switch w := want.(type) {
	case string:
		types = []string{w}
	case []any:
		for _, t := range w {
			types = append(types, fmt.Sprint(t))
		}
	default:
		return true
	}
	return slices.Contains(types, got) || (got == "integer" && slices.Contains(types, "number"))
}

func check(s map[string]any, v any, at string) error {
	if t, ok := s["type"]; ok && !typeOK(t, typeOf(v)) {
		return fmt.Errorf("%s: %s, want %v", at, typeOf(v), t)
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s: %v is not one of %v", at, v, enum)
	}
	if p, ok := s["pattern"].(string); ok {
		if str, isStr := v.(string); isStr && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", at, str, p)
		}
	}
	if m, ok := s["minimum"].(float64); ok {
		if x, isNum := v.(float64); isNum && x < m {
			return fmt.Errorf("%s: %v below %v", at, x, m)
		}
	}
	switch x := v.(type) {
	case map[string]any:
		return checkObject(s, x, at)
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, e := range x {
				if err := check(items, e, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func checkObject(s map[string]any, x map[string]any, at string) error {
	for _, r := range asStrings(s["required"]) {
		if _, ok := x[r]; !ok {
			return fmt.Errorf("%s: %q is required", at, r)
		}
	}
	props, _ := s["properties"].(map[string]any)
	keys := make([]string, 0, len(x))
	for k := range x {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		sub, known := props[k].(map[string]any)
		if !known {
			switch extra := s["additionalProperties"].(type) {
			case bool:
				if !extra {
					return fmt.Errorf("%s: unexpected %q", at, k)
				}
				continue
			case map[string]any:
				sub = extra
			default:
				continue
			}
		}
		if err := check(sub, x[k], at+"."+k); err != nil {
			return err
		}
	}
	return nil
}

func asStrings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}
