package infer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/sli2vol/sli2vol/internal/atomicfile"
)

// Variant is a way of running one propagation model in an evaluation: with test-time
// adaptation, with Sli2Vol's verification, both, or neither (plain).
type Variant struct{ Adapted, Verified bool }

// Suffix is the variant's part of a method's name: "sli2vol+" + " (adapted)".
func (v Variant) Suffix() string {
	switch {
	case v.Adapted && v.Verified:
		return " (adapted, verified)"
	case v.Adapted:
		return " (adapted)"
	case v.Verified:
		return " (verified)"
	}
	return ""
}

// variantTitles head the results table's columns, indexed by Variant.column.
var variantTitles = []string{"plain", "adapted", "verified", "adapted + verified"}

func (v Variant) column() int {
	c := 0
	if v.Adapted {
		c++
	}
	if v.Verified {
		c += 2
	}
	return c
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
func (ev *Evaluation) ResultsSection(title string, methods []Method, figure, about string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", title)
	b.WriteString("Mean Dice ×100 over structures / mean HD95 (mm; – where no prediction had a surface) / seconds per case:\n\n")
	type at struct {
		model string
		col   int
	}
	var models []string
	cols := make([]bool, len(variantTitles))
	cell := map[at]string{}
	secs := ev.secondsPerCase()
	for _, m := range methods {
		model := m.Model
		if model == "" {
			model = m.Name
		}
		if !slices.Contains(models, model) {
			models = append(models, model)
		}
		col := m.Variant.column()
		cols[col] = true
		cell[at{model, col}] = fmt.Sprintf("**%s** / %s / %.1f", num(ev.structureMean(m.Name)), num(ev.meanHD95(m.Name)), secs[m.Name])
	}
	b.WriteString("| model |")
	for i, t := range variantTitles {
		if cols[i] {
			b.WriteString(" " + t + " |")
		}
	}
	b.WriteString("\n|---|" + strings.Repeat("---|", countTrue(cols)) + "\n")
	for _, model := range models {
		b.WriteString("| " + model + " |")
		for i := range variantTitles {
			if cols[i] {
				v, ok := cell[at{model, i}]
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
		b.WriteString("| " + m.Name + " |")
		for _, d := range driftBins {
			var sum, n float64
			for dist, a := range ev.drift[m.Name] {
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

// num is v to one decimal, or – for NaN (a mean over nothing).
func num(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.1f", v)
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

// secondsPerCase is each method's mean over cases of its time per case (times.csv's mean),
// summed in the rows' order.
func (ev *Evaluation) secondsPerCase() map[string]float64 {
	sum, cases := map[string]float64{}, map[string]map[string]bool{}
	for _, r := range ev.Rows {
		if cases[r.Method] == nil {
			cases[r.Method] = map[string]bool{}
		}
		cases[r.Method][r.Case] = true
		sum[r.Method] += r.Seconds
	}
	out := map[string]float64{}
	for m, s := range sum {
		out[m] = s / float64(len(cases[m]))
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
// also the name of its figure. A long title is cut at a word and keeps its whole in a hash, so
// titles that differ only late in the text name different sections.
func ResultsKey(title string) string {
	key := strings.Trim(nonWord.ReplaceAllString(strings.ToLower(title), "-"), "-")
	if len(key) <= maxKey {
		return key
	}
	cut := key[:maxKey-9]
	if i := strings.LastIndexByte(cut, '-'); i > 0 {
		cut = cut[:i]
	}
	sum := sha256.Sum256([]byte(title))
	return cut + "-" + hex.EncodeToString(sum[:4])
}

// maxKey bounds a section key, hash included: a figure's file name stays short.
const maxKey = 64

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// MergeResults puts section under key into the results file at path: in place of the section
// with that key, or at the end. A missing file is created (with a top-level heading); a file
// that is not a results file (no header) is refused, so no user's document is overwritten.
func MergeResults(path, key, section string) error {
	text, err := readResults(path)
	if err != nil {
		return err
	}
	if text, err = mergeSection(path, text, key, section); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, []byte(text))
}

// mergeSection is text with section under key, replacing that key's section or appended.
func mergeSection(path, text, key, section string) (string, error) {
	begin, end := fmt.Sprintf(beginMarker, key), fmt.Sprintf(endMarker, key)
	block := "\n" + begin + strings.TrimRight(section, "\n") + "\n" + end
	i := strings.Index(text, begin)
	if i < 0 {
		return strings.TrimRight(text, "\n") + "\n" + block, nil
	}
	j := strings.Index(text[i:], end)
	if j < 0 {
		return "", fmt.Errorf("results: %s: section %s has no end marker; not writing into it", path, key)
	}
	return strings.TrimRight(text[:i], "\n") + "\n" + block + text[i+j+len(end):], nil
}

// CheckResultsFile fails unless a section titled title can be written to path: the title
// names a key, and path is a results file whose section of that key (if any) is whole, or is
// absent in a folder that exists. evaluate calls it before the work, so a wrong --results
// costs nothing.
func CheckResultsFile(path, title string) error {
	key := ResultsKey(title)
	if key == "" {
		return fmt.Errorf("results: the title %q has no letters or digits to name its section", title)
	}
	text, err := readResults(path)
	if err != nil {
		return err
	}
	if _, err := mergeSection(path, text, key, ""); err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return fmt.Errorf("results: %s: its folder %s is not a folder that exists", path, filepath.Dir(path))
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
// title, its drift plot beside it in results/KEY-drift.png, and returns the key. The plot
// shows the plain models and the baselines (all variants would be a dozen lines); the table
// has every method. Everything is checked before the plot is written.
func (ev *Evaluation) WriteResults(path, title string, methods []Method, about string) (string, error) {
	if err := CheckResultsFile(path, title); err != nil {
		return "", err
	}
	key := ResultsKey(title)
	var plain []string
	for _, m := range methods {
		if m.Variant == (Variant{}) {
			plain = append(plain, m.Name)
		}
	}
	figDir := filepath.Join(filepath.Dir(path), "results")
	if err := os.MkdirAll(figDir, 0o755); err != nil {
		return "", fmt.Errorf("results: %w", err)
	}
	fig := key + "-drift.png"
	if err := ev.DriftPNG(filepath.Join(figDir, fig), plain); err != nil {
		return "", fmt.Errorf("results: drift plot: %w", err)
	}
	return key, MergeResults(path, key, ev.ResultsSection(title, methods, "results/"+fig, about))
}
