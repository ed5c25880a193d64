package runs

import (
	"fmt"
	"os"
	"reflect"
	"sort"

	yaml "go.yaml.in/yaml/v3"
)

// Diff lists what differs between runs a and b: config keys, software and runtime, input
// files (by role and path: a different hash, or read by one run only), then the final
// metrics side by side. It needs both runs' run.json and config.yaml.
func Diff(a, b string) ([]string, error) {
	pa, err := ReadProvenance(a)
	if err != nil {
		return nil, err
	}
	pb, err := ReadProvenance(b)
	if err != nil {
		return nil, err
	}
	ca, err := flatConfig(a)
	if err != nil {
		return nil, err
	}
	cb, err := flatConfig(b)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range unionKeys(ca, cb) {
		if ca[k] != cb[k] {
			out = append(out, fmt.Sprintf("config %s: %s | %s", k, orMissing(ca[k]), orMissing(cb[k])))
		}
	}
	out = append(out, structDiff("software", pa.Software, pb.Software)...)
	out = append(out, structDiff("runtime", pa.Runtime, pb.Runtime)...)
	out = append(out, inputDiff(pa.Inputs, pb.Inputs)...)
	return append(out, finalMetrics(a, b)...), nil
}

// flatConfig is dir's config.yaml as dotted keys → values.
func flatConfig(dir string) (map[string]string, error) {
	raw, err := os.ReadFile(Path(dir, ConfigFile))
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", dir, err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", Path(dir, ConfigFile), err)
	}
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if sub, ok := v.(map[string]any); ok {
			for k, x := range sub {
				if prefix != "" {
					k = prefix + "." + k
				}
				walk(k, x)
			}
			return
		}
		out[prefix] = fmt.Sprint(v)
	}
	walk("", m)
	return out, nil
}

func unionKeys(a, b map[string]string) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func orMissing(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// structDiff lists the fields of two structs of one type that differ.
func structDiff(what string, a, b any) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		x, y := fmt.Sprint(va.Field(i).Interface()), fmt.Sprint(vb.Field(i).Interface())
		if x != y {
			out = append(out, fmt.Sprintf("%s %s: %s | %s", what, va.Type().Field(i).Tag.Get("json"), x, y))
		}
	}
	return out
}

// inputDiff lists inputs read by one run only, or with different contents.
func inputDiff(a, b []Input) []string {
	key := func(in Input) string { return in.Role + " " + in.Path }
	ma, mb := map[string]Input{}, map[string]Input{}
	for _, in := range a {
		ma[key(in)] = in
	}
	for _, in := range b {
		mb[key(in)] = in
	}
	var out []string
	for _, in := range a {
		o, ok := mb[key(in)]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("input %s %s: read by the first run only", in.Role, in.Path))
		case o.SHA256 != in.SHA256 || o.Size != in.Size:
			out = append(out, fmt.Sprintf("input %s %s: sha256 %.12s… (%d bytes) | %.12s… (%d bytes)", in.Role, in.Path, in.SHA256, in.Size, o.SHA256, o.Size))
		}
	}
	for _, in := range b {
		if _, ok := ma[key(in)]; !ok {
			out = append(out, fmt.Sprintf("input %s %s: read by the second run only", in.Role, in.Path))
		}
	}
	return out
}

// finalMetrics puts the runs' step counts and last losses side by side.
func finalMetrics(a, b string) []string {
	la, _ := Losses(Path(a, MetricsFile))
	lb, _ := Losses(Path(b, MetricsFile))
	last := func(l []float64) string {
		if len(l) == 0 {
			return "no steps"
		}
		return fmt.Sprintf("%d steps, last loss %.6g", len(l), l[len(l)-1])
	}
	return []string{fmt.Sprintf("metrics: %s | %s", last(la), last(lb))}
}
