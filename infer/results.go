package infer

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// VariantSuffix names a way of running one propagation model in an evaluation: appended to the
// model's name ("sli2vol+ (adapted)"), and read back by the results table to put each variant
// in a column of its own.
func VariantSuffix(adapted, verified bool) string {
	switch {
	case adapted && verified:
		return " (adapted, verified)"
	case adapted:
		return " (adapted)"
	case verified:
		return " (verified)"
	}
	return ""
}

// variantColumns are the results table's columns, in order: the suffixes VariantSuffix gives.
var variantColumns = []struct{ suffix, title string }{
	{"", "plain"}, {" (adapted)", "adapted"}, {" (verified)", "verified"}, {" (adapted, verified)", "adapted + verified"},
}

// splitVariant is a method name's model and variant column.
func splitVariant(method string) (model string, col int) {
	for i := len(variantColumns) - 1; i > 0; i-- {
		if m, ok := strings.CutSuffix(method, variantColumns[i].suffix); ok {
			return m, i
		}
	}
	return method, 0
}

// driftBins group distances from the annotated slice for the results table's drift curve.
var driftBins = []struct {
	lo, hi int
	title  string
}{{0, 0, "0"}, {1, 5, "1–5"}, {6, 10, "6–10"}, {11, 20, "11–20"}, {21, 40, "21–40"}, {41, math.MaxInt, "> 40"}}

// ResultsSection is this evaluation as one section of a results file: per model (rows) and
// variant (columns) the mean Dice over structures, the mean HD95 and the seconds per case, as
// report.md and times.csv give them; the error drift binned by distance from the annotated
// slice; the drift plot (figure, a path relative to the results file; "" for none); and
// about, the settings and sources the caller records.
func (ev *Evaluation) ResultsSection(title string, methods []string, figure, about string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", title)
	b.WriteString("Mean Dice ×100 over structures / mean HD95 (mm) / seconds per case:\n\n")
	var models []string
	cols := make([]bool, len(variantColumns))
	cell := map[string]string{}
	secs := ev.secondsPerCase()
	for _, m := range methods {
		model, col := splitVariant(m)
		if !slices.Contains(models, model) {
			models = append(models, model)
		}
		cols[col] = true
		cell[fmt.Sprint(model, col)] = fmt.Sprintf("**%.1f** / %.1f / %.1f", ev.structureMean(m), ev.meanHD95(m), secs[m])
	}
	b.WriteString("| model |")
	for i, c := range variantColumns {
		if cols[i] {
			b.WriteString(" " + c.title + " |")
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", countTrue(cols)) + "\n")
	for _, model := range models {
		b.WriteString("| " + model + " |")
		for i := range variantColumns {
			if cols[i] {
				v, ok := cell[fmt.Sprint(model, i)]
				if !ok {
					v = "–"
				}
				b.WriteString(" " + v + " |")
			}
		}
		b.WriteString("\n")
	}
	b.WriteString("\nError drift: mean slice Dice ×100 by distance from the annotated slice (slices):\n\n| method |")
	for _, d := range driftBins {
		b.WriteString(" " + d.title + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", len(driftBins)) + "\n")
	for _, m := range methods {
		b.WriteString("| " + m + " |")
		for _, d := range driftBins {
			var sum, n float64
			for dist, a := range ev.drift[m] {
				if dist >= d.lo && dist <= d.hi {
					sum, n = sum+a[0], n+a[1]
				}
			}
			if n == 0 {
				b.WriteString(" – |")
			} else {
				fmt.Fprintf(&b, " %.1f |", 100*sum/n)
			}
		}
		b.WriteString("\n")
	}
	if figure != "" {
		fmt.Fprintf(&b, "\n![error drift](%s)\n", figure)
	}
	if about != "" {
		b.WriteString("\n" + strings.TrimSpace(about) + "\n")
	}
	return b.String()
}

func countTrue(v []bool) int {
	n := 0
	for _, x := range v {
		if x {
			n++
		}
	}
	return n
}

// structureMean is a method's mean over structures of its mean Dice over cases (×100): the
// bold mean row of Table.
func (ev *Evaluation) structureMean(method string) float64 {
	per := map[string][]float64{}
	var names []string
	for _, r := range ev.Rows {
		if r.Method == method {
			if _, ok := per[r.Name]; !ok {
				names = append(names, r.Name)
			}
			per[r.Name] = append(per[r.Name], 100*r.Dice)
		}
	}
	means := make([]float64, 0, len(names))
	for _, n := range names {
		m, _ := meanStd(per[n])
		means = append(means, m)
	}
	m, _ := meanStd(means)
	return m
}

// secondsPerCase is each method's mean over cases of its time per case (times.csv's mean).
func (ev *Evaluation) secondsPerCase() map[string]float64 {
	perCase := map[string]map[string]float64{}
	for _, r := range ev.Rows {
		if perCase[r.Method] == nil {
			perCase[r.Method] = map[string]float64{}
		}
		perCase[r.Method][r.Case] += r.Seconds
	}
	out := map[string]float64{}
	for m, cs := range perCase {
		var s float64
		for _, v := range cs {
			s += v
		}
		out[m] = s / float64(len(cs))
	}
	return out
}

// The results file is sli2vol's own: a header naming it so, then sections, each between a
// begin and an end marker carrying its key. MergeResults replaces one section and leaves the
// others byte for byte, so each evaluation updates its own part of one table.
const (
	resultsHeader = "<!-- Written by `sli2vol evaluate --results`: each section is replaced by the evaluation\n" +
		"     that made it. Edits here are lost; the recipe is bench/results.sh (make results). -->\n"
	beginMarker = "<!-- results section: %s -->\n"
	endMarker   = "<!-- end of results section: %s -->\n"
)

// ResultsKey is the key of a section titled title: its words, lower case, joined by dashes;
// also the name of its figure.
func ResultsKey(title string) string {
	key := strings.Trim(nonWord.ReplaceAllString(strings.ToLower(title), "-"), "-")
	if len(key) > 80 {
		key = strings.TrimRight(key[:80], "-")
	}
	return key
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// MergeResults puts section under key into the results file at path: in place of the section
// with that key, or at the end. A missing file is created (with a top-level heading); a file
// that is not a results file (no header) is refused, so no user's document is overwritten.
func MergeResults(path, key, section string) error {
	text, err := readResults(path)
	if err != nil {
		return err
	}
	begin, end := fmt.Sprintf(beginMarker, key), fmt.Sprintf(endMarker, key)
	block := "\n" + begin + strings.TrimRight(section, "\n") + "\n" + end
	if i := strings.Index(text, begin); i >= 0 {
		j := strings.Index(text[i:], end)
		if j < 0 {
			return fmt.Errorf("results: %s: section %q has no end marker", path, key)
		}
		text = strings.TrimRight(text[:i], "\n") + "\n" + block + text[i+j+len(end):]
	} else {
		text = strings.TrimRight(text, "\n") + "\n" + block
	}
	return atomicfile.WriteFile(path, []byte(text))
}

// CheckResultsFile fails unless path can become a results file: it is one already, or it is
// absent in a folder that exists. evaluate calls it before the work, so a wrong --results
// costs nothing.
func CheckResultsFile(path string) error {
	if _, err := readResults(path); err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("results: %s: the folder %s does not exist", path, filepath.Dir(path))
	}
	return nil
}

// readResults is the results file's text, or a new file's beginning when it is absent.
func readResults(path string) (string, error) {
	old, err := os.ReadFile(path)
	switch {
	case os.IsNotExist(err):
		return "# sli2vol results\n\n" + resultsHeader, nil
	case err != nil:
		return "", fmt.Errorf("results: %w", err)
	case !strings.Contains(string(old), resultsHeader):
		return "", fmt.Errorf("results: %s is not a sli2vol results file (it lacks the header evaluate writes); not writing into it", path)
	}
	return string(old), nil
}

// WriteResults merges this evaluation into the results file at path as the section titled
// title, its drift plot beside it in results/KEY-drift.png. The plot shows the plain models
// and the baselines (all variants would be a dozen lines); the table has every method.
func (ev *Evaluation) WriteResults(path, title string, methods []string, about string) error {
	key := ResultsKey(title)
	if key == "" {
		return fmt.Errorf("results: the title %q has no letters or digits to name its section", title)
	}
	if err := CheckResultsFile(path); err != nil {
		return err
	}
	var plain []string
	for _, m := range methods {
		if _, col := splitVariant(m); col == 0 {
			plain = append(plain, m)
		}
	}
	figDir := filepath.Join(filepath.Dir(path), "results")
	if err := os.MkdirAll(figDir, 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	fig := key + "-drift.png"
	if err := ev.DriftPNG(filepath.Join(figDir, fig), plain); err != nil {
		return fmt.Errorf("results: drift plot: %w", err)
	}
	return MergeResults(path, key, ev.ResultsSection(title, methods, "results/"+fig, about))
}
