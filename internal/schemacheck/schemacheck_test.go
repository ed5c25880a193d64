package schemacheck

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	schema := `{"type": "object", "required": ["a", "b"], "additionalProperties": false, "properties": {
		"a": {"type": "integer", "minimum": 1},
		"b": {"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]*$"}},
		"c": {"type": ["string", "null"], "enum": ["x", null]},
		"m": {"type": "object", "additionalProperties": {"type": "integer"}}}}`
	for _, tc := range []struct{ doc, err string }{
		{`{"a": 2, "b": ["ab", ""], "c": null, "m": {"k": 3}}`, ""},
		{`{"a": 2}`, `$: "b" is required`},
		{`{"a": 0, "b": []}`, "$.a: 0 below 1"},
		{`{"a": 1.5, "b": []}`, "$.a: number, want integer"},
		{`{"a": 1, "b": ["xyz"]}`, `$.b[0]: "xyz" does not match`},
		{`{"a": 1, "b": [], "c": "y"}`, "$.c: y is not one of"},
		{`{"a": 1, "b": [], "z": 1}`, `$: unexpected "z"`},
		{`{"a": 1, "b": [], "m": {"k": "v"}}`, "$.m.k: string, want integer"},
	} {
		err := Validate([]byte(schema), []byte(tc.doc))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.doc, err, tc.err)
		}
	}
}
