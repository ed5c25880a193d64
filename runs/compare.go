package runs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/sli2vol/sli2vol/torchx"
)

// Outputs compared between a run and its reproduction: the training logs and weights of
// every run folder inside, evaluation tables, and label volumes.
func comparable(name string) bool {
	return name == MetricsFile || name == ModelFile || name == "results.csv" || strings.HasSuffix(name, ".nii.gz")
}

// CompareOutputs compares the outputs under dir a with those under b, file by file (by
// relative path): a line per file, "identical" or where and by how much they differ.
// same is false when anything differs or is missing.
func CompareOutputs(a, b string) (lines []string, same bool, err error) {
	same = true
	err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !comparable(d.Name()) {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		verdict, ok, err := compareFile(p, filepath.Join(b, rel))
		if err != nil {
			return err
		}
		same = same && ok
		lines = append(lines, rel+": "+verdict)
		return nil
	})
	sort.Strings(lines)
	return lines, same, err
}

func compareFile(a, b string) (string, bool, error) {
	if _, err := os.Stat(b); err != nil {
		return "missing from the reproduction", false, nil
	}
	switch filepath.Base(a) {
	case MetricsFile:
		return CompareMetrics(a, b)
	case ModelFile:
		return CompareWeights(a, b)
	}
	x, err := os.ReadFile(a)
	if err != nil {
		return "", false, err
	}
	y, err := os.ReadFile(b)
	if err != nil {
		return "", false, err
	}
	if bytes.Equal(x, y) {
		return "identical", true, nil
	}
	return "differs", false, nil
}

// Losses reads the per-step losses of a metrics.jsonl in step order. A step logged twice (a
// run resumed from a checkpoint older than its last logged step) counts as last logged.
func Losses(path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	byStep := map[int]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m struct {
			Step int      `json:"step"`
			Loss *float64 `json:"loss"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Loss != nil {
			byStep[m.Step] = *m.Loss
		}
	}
	steps := make([]int, 0, len(byStep))
	for s := range byStep {
		steps = append(steps, s)
	}
	sort.Ints(steps)
	out := make([]float64, len(steps))
	for i, s := range steps {
		out[i] = byStep[s]
	}
	return out, sc.Err()
}

// CompareMetrics compares two runs' losses step by step.
func CompareMetrics(a, b string) (string, bool, error) {
	x, err := Losses(a)
	if err != nil {
		return "", false, err
	}
	y, err := Losses(b)
	if err != nil {
		return "", false, err
	}
	for i := range min(len(x), len(y)) {
		if x[i] != y[i] {
			return fmt.Sprintf("losses first differ at step %d: %.9g vs %.9g (|Δ| %.3g)", i+1, x[i], y[i], math.Abs(x[i]-y[i])), false, nil
		}
	}
	if len(x) != len(y) {
		return fmt.Sprintf("%d steps vs %d (the common ones identical)", len(x), len(y)), false, nil
	}
	return fmt.Sprintf("identical (%d steps)", len(x)), true, nil
}

// CompareWeights compares two state dicts tensor by tensor.
func CompareWeights(a, b string) (string, bool, error) {
	x, err := torchx.LoadStateDict(a)
	if err != nil {
		return "", false, err
	}
	y, err := torchx.LoadStateDict(b)
	if err != nil {
		return "", false, err
	}
	names := make([]string, 0, len(x))
	for k := range x {
		names = append(names, k)
	}
	sort.Strings(names)
	worst, where, differ := 0.0, "", 0
	for _, k := range names {
		t, ok := y[k]
		if !ok || !slices.Equal(torchx.Shape(x[k]), torchx.Shape(t)) {
			return fmt.Sprintf("tensor %s missing or shaped differently", k), false, nil
		}
		u, v := torchx.Float64s(x[k]), torchx.Float64s(t)
		changed := false
		for i := range u {
			if d := math.Abs(u[i] - v[i]); d > 0 || math.IsNaN(d) {
				changed = true
				if d > worst || math.IsNaN(d) {
					worst, where = d, k
				}
			}
		}
		if changed {
			differ++
		}
	}
	if len(y) != len(x) {
		return fmt.Sprintf("%d tensors vs %d", len(x), len(y)), false, nil
	}
	if differ == 0 {
		return fmt.Sprintf("identical (%d tensors)", len(x)), true, nil
	}
	return fmt.Sprintf("%d of %d tensors differ, most %s by |Δ| %.3g", differ, len(x), where, worst), false, nil
}
