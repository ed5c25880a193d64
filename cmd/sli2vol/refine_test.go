package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/runs"
)

// meanPLDice is the mean Dice of every phantom structure of every case between a label
// folder (MSD layout) and the phantoms' truth.
func meanPLDice(t *testing.T, truthDir, dir string) float64 {
	ds, err := data.OpenDataset(truthDir)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	var n int
	for _, c := range ds.Split("train") {
		truth, err := data.LoadLabels(c.Label, data.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		pl, err := data.LoadLabels(filepath.Join(dir, "labelsTr", c.ID+".nii.gz"), data.DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if err := pl.SameGrid(&truth.Geometry, 1e-6); err != nil {
			t.Fatalf("%s does not overlay its image: %v", c.ID, err)
		}
		for _, s := range data.PhantomStructures {
			sum += infer.Dice(pl.Data, truth.Data, s.ID)
			n++
		}
	}
	return sum / float64(n)
}

// The paper's premise on phantoms: UNETR++ trained on Sli2Vol's pseudo-labels and
// re-predicting the training volumes gives pseudo-labels closer to the truth. Run through
// `pipeline`, which must reuse the steps already done (Sli2Vol, pseudo-labels), refine,
// train Sli2Vol+ and evaluate; then the FS-SS baseline and the model-estimate option are
// scored by evaluate.
func TestPipelineRefinesPseudoLabels(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	cfg := "../../configs/cpu-small.yaml"
	steps := [][]string{
		{"phantom", "--out", p("train"), "--cases", "3", "--seed", "1", "--size", "64,64,32"},
		{"phantom", "--out", p("test"), "--cases", "1", "--seed", "2", "--size", "64,64,32"},
		{"train", "--config", cfg, "--mode", "sli2vol", "--data", p("train"), "--out", p("work/sli2vol")},
		{"pseudo-label", "--config", cfg, "--model", p("work/sli2vol"), "--data", p("train"), "--out", p("work/pseudo")},
		{"pipeline", "--config", cfg, "--data", p("train"), "--test", p("test"), "--out", p("work")},
	}
	for _, args := range steps {
		code, out, errOut := runCLI(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
		if args[0] == "pipeline" {
			t.Logf("pipeline:\n%s", out)
		}
	}
	raw, refined := meanPLDice(t, p("train"), p("work/pseudo")), meanPLDice(t, p("train"), p("work/refined"))
	t.Logf("pseudo-labels vs truth, mean Dice: raw %.3f, refined %.3f", raw, refined)
	if !(refined > raw) {
		t.Errorf("refined pseudo-labels (%.3f) are not closer to the truth than raw ones (%.3f)", refined, raw)
	}
	m := meanDiceByMethod(t, p("work/report/results.csv"))
	if _, ok := m[plus]; !ok {
		t.Fatalf("the pipeline's report lacks sli2vol+: %v", m)
	}

	// FS-SS on the test volumes' annotated slices, and Sli2Vol+ with the refinement network's
	// prediction as its test-time estimate, beside the paper's setting.
	if code, o, e := runCLI(t, "train-fsss", "--config", cfg, "--data", p("test"), "--out", p("fsss"), "--epochs", "4"); code != 0 {
		t.Fatalf("train-fsss: %s %s", o, e)
	}
	if code, o, e := runCLI(t, "evaluate", "--config", cfg, "--model", p("work/sli2vol+"), "--model", p("work/sli2vol+"), "--fsss", p("fsss"),
		"--data", p("test"), "--out", p("report2"), "--baselines=false"); code != 0 {
		t.Fatalf("evaluate with FS-SS: %s %s", o, e)
	}
	if code, o, e := runCLI(t, "evaluate", "--config", cfg, "--model", p("work/sli2vol"), "--model", p("work/sli2vol+"), "--estimate", "model",
		"--estimate-model", p("work/refined/unetr"), "--data", p("test"), "--out", p("report3"), "--baselines=false"); code != 0 {
		t.Fatalf("evaluate with a model estimate: %s %s", o, e)
	}
	// The report names the runs it scored by commit and data hash (their run.json).
	rep, _ := os.ReadFile(p("report2/report.md"))
	for _, run := range []string{p("work/sli2vol+"), p("fsss")} {
		prov, err := runs.ReadProvenance(run)
		if err != nil || !strings.Contains(string(rep), "| "+run+" | "+prov.Software.Sli2vol+" | ") || !strings.Contains(string(rep), prov.DataHash) {
			t.Fatalf("report2/report.md does not name %s with its data hash (%v):\n%s", run, err, rep)
		}
	}
	m2, m3 := meanDiceByMethod(t, p("report2/results.csv")), meanDiceByMethod(t, p("report3/results.csv"))
	t.Logf("mean Dice: pipeline %v; FS-SS report %v; estimate model %v", m, m2, m3)
	// Two runs of one mode in folders of one name get distinct columns.
	if len(m2) != 3 || m2[plus] != m2[plus+" (2)"] {
		t.Fatalf("want columns sli2vol+, sli2vol+ (2) (equal) and fs-ss: %v", m2)
	}
	if _, ok := m2["fs-ss"]; !ok {
		t.Fatalf("no fs-ss rows: %v", m2)
	}
	// Sli2Vol has no PL input: under --estimate model it propagates exactly as before.
	if m3["sli2vol"] != m["sli2vol"] {
		t.Errorf("Sli2Vol under --estimate model: %.4f, without: %.4f", m3["sli2vol"], m["sli2vol"])
	}
	if code, _, e := runCLI(t, "evaluate", "--config", cfg, "--model", p("work/sli2vol+"), "--estimate", "model",
		"--data", p("test"), "--out", p("report4")); code != 2 {
		t.Fatalf("--estimate model without --estimate-model: exit %d %s", code, e)
	}
}
