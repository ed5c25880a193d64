package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
)

func meanDiceByMethod(t *testing.T, path string) map[string]float64 {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	sum, n := map[string]float64{}, map[string]float64{}
	for _, r := range rows[1:] {
		d, _ := strconv.ParseFloat(r[6], 64)
		sum[r[1]] += d
		n[r[1]]++
	}
	for k := range sum {
		sum[k] /= n[k]
	}
	return sum
}

// The whole pipeline on small phantoms (CPU, cpu-small config): trained Sli2Vol+ beats the
// copy baseline and the untrained GEIG affinity in mean Dice; segment writes a mask that
// overlays its input and keeps the annotation's ids.
func TestPipelineOnPhantoms(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	cfg := "../../configs/cpu-small.yaml"
	steps := [][]string{
		{"phantom", "--out", p("train"), "--cases", "3", "--seed", "1", "--size", "64,64,32"},
		{"phantom", "--out", p("test"), "--cases", "1", "--seed", "2", "--size", "64,64,32"},
		{"train", "--config", cfg, "--mode", "sli2vol", "--data", p("train"), "--out", p("s2v"), "--epochs", "2"},
		{"pseudo-label", "--config", cfg, "--model", p("s2v"), "--data", p("train"), "--out", p("pl")},
		{"train", "--config", cfg, "--mode", plus, "--data", p("train"), "--pseudo", p("pl"), "--out", p("s2vp"), "--epochs", "2"},
		{"evaluate", "--config", cfg, "--model", p("s2v"), "--model", p("s2vp"), "--data", p("test"), "--out", p("report"),
			"--results", p("docs/results.md"), "--results-title", "Phantoms"},
	}
	if err := os.MkdirAll(p("docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, args := range steps {
		if code, out, errOut := runCLI(t, args...); code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
	}
	m := meanDiceByMethod(t, p("report/results.csv"))
	t.Logf("mean Dice: %v", m)
	s2vp := m[plus]
	if !(s2vp > m["copy"]+0.1) || !(s2vp > m["geig-affinity (untrained)"]+0.1) {
		t.Fatalf("Sli2Vol+ %.3f does not beat copy %.3f and untrained affinity %.3f", s2vp, m["copy"], m["geig-affinity (untrained)"])
	}
	if code, _, _ := runCLI(t, "evaluate", "--config", cfg, "--data", p("test"), "--out", p("report")); code != 2 {
		t.Fatal("an existing report was overwritten without --force")
	}
	for _, f := range []string{"report.md", "drift.csv", "drift.png", "overlays/phantom_000.png"} {
		if _, err := os.Stat(p("report/" + f)); err != nil {
			t.Errorf("report lacks %s", f)
		}
	}

	checkResultsFile(t, dir)

	checkSegmentCommand(t, p("test"), p("s2vp"), dir)
	checkTwoAnnotatedSlices(t, p("test"), p("s2vp"), dir)
	checkSegmentCases(t, p("train"), p("s2vp"), dir)
}

// checkResultsFile: evaluate --results put each method's mean Dice from report.md's mean row
// into its section, with the drift plot beside it; a --results file evaluate did not write is
// refused before any work, and left as it was.
func checkResultsFile(t *testing.T, dir string) {
	p := func(s string) string { return filepath.Join(dir, s) }
	report, err := os.ReadFile(p("report/report.md"))
	if err != nil {
		t.Fatal(err)
	}
	results, err := os.ReadFile(p("docs/results.md"))
	if err != nil {
		t.Fatal(err)
	}
	var header, means []string
	for _, l := range strings.Split(string(report), "\n") {
		if strings.HasPrefix(l, "| structure |") {
			header = strings.Split(strings.Trim(l, "| "), " | ")[1:]
		}
		if strings.HasPrefix(l, "| **mean**") {
			means = strings.Split(strings.Trim(l, "| "), " | ")[1:]
		}
	}
	if len(header) != 4 || len(means) != len(header) {
		t.Fatalf("report.md: methods %q, means %q", header, means)
	}
	for i, m := range header {
		if cell := "| " + m + " | " + means[i] + " / "; !strings.Contains(string(results), cell) {
			t.Errorf("results.md lacks %q:\n%s", cell, results)
		}
	}
	if !strings.Contains(string(results), "## Phantoms\n") || !strings.Contains(string(results), "](results/phantoms-drift.png)") {
		t.Errorf("results.md has no Phantoms section with its figure:\n%s", results)
	}
	if _, err := os.Stat(p("docs/results/phantoms-drift.png")); err != nil {
		t.Error(err)
	}
	if err := os.WriteFile(p("notes.md"), []byte("mine\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, e := runCLI(t, "evaluate", "--config", "../../configs/cpu-small.yaml", "--data", p("test"), "--out", p("report2"), "--results", p("notes.md"))
	if b, _ := os.ReadFile(p("notes.md")); code != 2 || !strings.Contains(e, "notes.md is not a sli2vol results file") || string(b) != "mine\n" {
		t.Errorf("--results into a user's file: exit %d, %q, file now %q", code, e, b)
	}
	if _, err := os.Stat(p("report2")); err == nil {
		t.Error("the refused evaluation wrote its report folder")
	}
	code, _, e = runCLI(t, "evaluate", "--config", "../../configs/cpu-small.yaml", "--data", p("test"), "--out", p("report3"), "--results-title", "T")
	if code != 2 || !strings.Contains(e, "--results-title needs --results") {
		t.Errorf("--results-title alone: exit %d, %q", code, e)
	}
}

// checkSegmentCases: `segment --data --annotations --out` writes, for every case, what a
// single-volume `segment` writes for it, and refuses the whole folder before any work when
// an output exists.
func checkSegmentCases(t *testing.T, ds, model, dir string) {
	annDir, out := filepath.Join(dir, "anns"), filepath.Join(dir, "masks")
	os.MkdirAll(annDir, 0o755)
	os.MkdirAll(out, 0o755)
	ids := []string{"phantom_000", "phantom_001", "phantom_002"}
	for _, id := range ids {
		lab, err := data.LoadLabels(filepath.Join(ds, "labelsTr", id+".nii.gz"), data.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := data.NewSlicer(&lab.Geometry, -1)
		ann := make([]int32, len(lab.Data))
		data.SetSlice(s, ann, 14, data.Slice(s, lab.Data, 14))
		if err := data.WriteLabels(filepath.Join(annDir, id+".nii.gz"), ann, &lab.Geometry, data.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if code, o, e := runCLI(t, "segment", "--model", model, "--data", ds, "--annotations", annDir, "--out", out); code != 0 {
		t.Fatalf("segment --data: %s %s", o, e)
	}
	single := filepath.Join(dir, "single.nii.gz")
	img := filepath.Join(ds, "imagesTr", ids[1]+".nii.gz")
	if code, o, e := runCLI(t, "segment", "--model", model, "--image", img, "--annotation", filepath.Join(annDir, ids[1]+".nii.gz"), "--out", single); code != 0 {
		t.Fatalf("segment: %s %s", o, e)
	}
	a, err := data.LoadLabels(single, data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	b, err := data.LoadLabels(filepath.Join(out, ids[1]+".nii.gz"), data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Data, b.Data) || b.SameGrid(&a.Geometry, 1e-6) != nil {
		t.Fatal("segment --data wrote another mask than segment for the same case")
	}
	os.Remove(filepath.Join(out, ids[0]+".nii.gz"))
	code, _, e := runCLI(t, "segment", "--model", model, "--data", ds, "--annotations", annDir, "--out", out)
	if _, err := os.Stat(filepath.Join(out, ids[0]+".nii.gz")); code != 2 || !strings.Contains(e, "exists; not overwriting") || err == nil {
		t.Fatalf("existing outputs: exit %d, %q; the missing mask must not be written", code, e)
	}
}

// checkTwoAnnotatedSlices: an annotation file with two labelled slices (the truth on slices
// 10 and 22) segments at least as well, in mean Dice over the structures, as the better of
// the two single-slice runs.
func checkTwoAnnotatedSlices(t *testing.T, test, model, dir string) {
	img := filepath.Join(test, "imagesTr/phantom_000.nii.gz")
	lab, err := data.LoadLabels(filepath.Join(test, "labelsTr/phantom_000.nii.gz"), data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := data.NewSlicer(&lab.Geometry, -1)
	dice := func(name string, slices ...int) float64 {
		ann := make([]int32, len(lab.Data))
		for _, n := range slices {
			data.SetSlice(s, ann, n, data.Slice(s, lab.Data, n))
		}
		annPath, out := filepath.Join(dir, name+"-ann.nii.gz"), filepath.Join(dir, name+".nii.gz")
		if err := data.WriteLabels(annPath, ann, &lab.Geometry, data.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
		if code, o, e := runCLI(t, "segment", "--model", model, "--image", img, "--annotation", annPath, "--out", out); code != 0 {
			t.Fatalf("segment %v: %s %s", slices, o, e)
		}
		mask, err := data.LoadLabels(out, data.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		ids := data.IDsIn(lab.Data)
		sum := 0.0
		for _, id := range ids {
			sum += infer.Dice(mask.Data, lab.Data, id)
		}
		return sum / float64(len(ids))
	}
	a, b, both := dice("at10", 10), dice("at22", 22), dice("both", 10, 22)
	t.Logf("mean Dice: slice 10 %.3f, slice 22 %.3f, both %.3f", a, b, both)
	if both < max(a, b) {
		t.Fatalf("two annotated slices: mean Dice %.3f below the better single slice %.3f", both, max(a, b))
	}
}

// checkSegmentCommand annotates one slice of the test phantom (all its structures there),
// segments with model, and checks the output's grid and ids and that nothing a user gave is
// overwritten.
func checkSegmentCommand(t *testing.T, test, model, dir string) {
	img := filepath.Join(test, "imagesTr/phantom_000.nii.gz")
	lab, err := data.LoadLabels(filepath.Join(test, "labelsTr/phantom_000.nii.gz"), data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := data.NewSlicer(&lab.Geometry, -1)
	ann := make([]int32, len(lab.Data))
	data.SetSlice(s, ann, 16, data.Slice(s, lab.Data, 16))
	annPath := filepath.Join(dir, "annotation.nii.gz")
	if err := data.WriteLabels(annPath, ann, &lab.Geometry, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "mask.nii.gz")
	if code, o, e := runCLI(t, "segment", "--model", model, "--image", img, "--annotation", annPath, "--out", out); code != 0 {
		t.Fatalf("segment: %s %s", o, e)
	}
	mask, err := data.LoadLabels(out, data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if err := mask.SameGrid(&lab.Geometry, 1e-6); err != nil {
		t.Fatalf("mask does not overlay the image: %v", err)
	}
	ids := map[int32]bool{}
	for _, v := range mask.Data {
		ids[v] = true
	}
	want := map[int32]bool{0: true}
	for _, id := range data.IDsIn(data.Slice(s, lab.Data, 16)) {
		want[id] = true
	}
	for id := range ids {
		if !want[id] {
			t.Fatalf("mask has id %d not in the annotation %v", id, want)
		}
	}
	// Running again without --force does not overwrite; the input is never the output.
	if code, _, _ := runCLI(t, "segment", "--model", model, "--image", img, "--annotation", annPath, "--out", out); code != 2 {
		t.Fatal("existing output overwritten without --force")
	}
	if code, _, _ := runCLI(t, "segment", "--model", model, "--image", img, "--annotation", annPath, "--out", img, "--force"); code != 2 {
		t.Fatal("output over the input image accepted")
	}
	if code, _, _ := runCLI(t, "segment", "--model", model, "--image", img, "--annotation", annPath, "--out", annPath, "--force"); code != 2 {
		t.Fatal("output over the annotation accepted")
	}
}
