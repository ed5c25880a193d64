package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/dist"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
)

func newEvaluateCmd() *cobra.Command {
	var runs, fsss []string
	var dataDir, out string
	var variants []string
	var results resultsTarget
	var baselines, force bool
	cmd := &cobra.Command{
		Use:   "evaluate --model RUN [--model RUN2 ...] --data DIR --out REPORT",
		Short: "Benchmark trained models and baselines on labelled volumes (Dice, HD95, error drift)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if launched, err := launchIfAsked(cmd); launched {
				return err
			}
			vs, err := parseVariants(variants)
			if err != nil {
				return err
			}
			return runEvaluate(cmd, nil, evalInputs{runs: runs, fsss: fsss, variants: vs, results: results}, dataDir, out, baselines, force)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&runs, "model", nil, "trained run folder (repeatable)")
	f.StringArrayVar(&fsss, "fsss", nil, "FS-SS baseline run folder (sli2vol train-fsss; repeatable)")
	f.StringVar(&dataDir, "data", "", "labelled dataset to evaluate on")
	f.StringVar(&out, "out", "", "report folder (report.md, results.csv, drift.csv)")
	f.StringSliceVar(&variants, "variants", nil, "score each run several ways, a column each: plain, adapted (needs --adapt-steps), verified, adapted+verified (default: as configured)")
	f.StringVar(&results.path, "results", "", "also merge a summary into this results file (e.g. docs/results.md) as one section, replacing the section of the same title; its drift plot goes to results/KEY-drift.png beside it")
	f.StringVar(&results.title, "results-title", "", "the section's title (default: the report's title)")
	f.BoolVar(&baselines, "baselines", true, "include the copy and untrained GEIG-affinity baselines")
	f.BoolVar(&force, "force", false, "overwrite an existing report")
	addInferFlags(cmd)
	addLaunchFlags(cmd)
	return cmd
}

// evalInputs are what an evaluation scores: propagation runs (each in its variants), FS-SS runs;
// and where a summary of it goes besides the report.
type evalInputs struct {
	runs, fsss []string
	variants   []infer.Variant // nil: each run as configured
	results    resultsTarget
}

// resultsTarget is a section of a results file (evaluate --results): none when path is "".
type resultsTarget struct{ path, title string }

func (r resultsTarget) titleOr(def string) string {
	if r.title != "" {
		return r.title
	}
	return def
}

// check refuses, before any work, a results target that could not be written: a title
// without --results, a file evaluate did not write, a title that names no section.
func (r resultsTarget) check(def string) error {
	if r.path == "" {
		if r.title != "" {
			return fmt.Errorf("evaluate: --results-title needs --results FILE")
		}
		return nil
	}
	if err := infer.CheckResultsFile(r.path, r.titleOr(def)); err != nil {
		return fmt.Errorf("evaluate: %w", err)
	}
	return nil
}

// runEvaluate scores the runs (propagation models), FS-SS runs and baselines on dataDir. g is
// the pipeline's process group; nil joins the launch's own, if any.
func runEvaluate(cmd *cobra.Command, g *dist.Group, in evalInputs, dataDir, out string, baselines, force bool) error {
	runDirs, fsss := in.runs, in.fsss
	if dataDir == "" || out == "" {
		return fmt.Errorf("evaluate: --data and --out are required")
	}
	if _, err := os.Stat(filepath.Join(out, "report.md")); err == nil && !force {
		return fmt.Errorf("evaluate: %s already holds a report; not overwriting it (use --force)", out)
	}
	ds, err := data.OpenDataset(dataDir)
	if err != nil {
		return err
	}
	title := "sli2vol evaluation on " + ds.Name
	if err := in.results.check(title); err != nil {
		return err
	}
	ms := methodSet{seen: map[string]bool{}}
	if err := ms.addRuns(cmd, runDirs, in.variants); err != nil {
		return err
	}
	if ms.base.Cfg.Infer.Spacing.FromTraining() && !(ms.base.TrainingScale > 0) {
		return fmt.Errorf("evaluate: --spacing %s needs a --model run (its scale.json is the scale)", ms.base.Cfg.Infer.Spacing)
	}
	if err := ms.addFSSS(fsss); err != nil {
		return err
	}
	if baselines || len(ms.methods) == 0 {
		ms.addBaselines()
	}
	if g == nil {
		if g, err = joinGroup(ms.base.Cfg, ms.base.Device); err != nil {
			return err
		}
		defer g.Close()
	}
	ev, err := infer.Evaluate(ds, ms.base, ms.methods, ms.base.Cfg.Seed, ranksOf(g))
	if err != nil {
		return err
	}
	if !isRank0(g) {
		return ev.WriteOverlays(out) // rank 0 writes the report
	}
	names := make([]string, len(ms.methods))
	for i, m := range ms.methods {
		names[i] = m.Name
	}
	prov := newProvenance("evaluate", ms.base.Cfg.Seed, ms.base.Device, g)
	addCases(prov, ds, "train", true)
	addCases(prov, ds, "test", true)
	for _, r := range append(append([]string(nil), runDirs...), fsss...) {
		addModel(prov, r)
	}
	startHashing(prov)
	ev.Sources = scoredRuns(append(append([]string(nil), runDirs...), fsss...))
	if prov != nil { // the slices the benchmark annotated, per case
		prov.Annotations = map[string][]int{}
		for _, r := range ev.Rows {
			if !slices.Contains(prov.Annotations[r.Case], r.Slice) {
				prov.Annotations[r.Case] = append(prov.Annotations[r.Case], r.Slice)
			}
		}
	}
	if err := ev.Write(out, names, title); err != nil {
		return err
	}
	if err := finishOutput(prov, out, ms.base.Cfg); err != nil {
		return err
	}
	if in.results.path != "" { // after the report is whole: a failure here leaves it usable
		about := resultsAbout(ds, ev, ms.base.Cfg, ms.methods, out)
		key, err := ev.WriteResults(in.results.path, in.results.titleOr(title), ms.methods, about)
		if err != nil {
			return fmt.Errorf("evaluate: %w", err)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "results: section %s of %s\n", key, in.results.path)
	}
	fmt.Fprint(cmd.OutOrStdout(), ev.Table(names))
	fmt.Fprintf(cmd.OutOrStdout(), "report: %s\n", filepath.Join(out, "report.md"))
	return nil
}

// methodSet collects the evaluated methods under unique names.
type methodSet struct {
	methods []infer.Method
	base    *infer.Job // the job whose config drives the evaluation (the first run's)
	seen    map[string]bool
	models  map[string]bool // the runs' names, each before its variants' suffixes
}

// unique makes name unique among the methods: a number makes it so whatever the folders
// are called.
func (ms *methodSet) unique(name string) string {
	return uniqueIn(ms.seen, name)
}

// uniqueModel is unique for a run's name, numbered before any variant suffix is added
// ("sli2vol (2) (adapted)"), so a results table keeps a run's variants on one row.
func (ms *methodSet) uniqueModel(name string) string {
	if ms.models == nil {
		ms.models = map[string]bool{}
	}
	return uniqueIn(ms.models, name)
}

func uniqueIn(seen map[string]bool, name string) string {
	for i := 2; seen[name]; i++ {
		name = fmt.Sprintf("%s (%d)", strings.TrimSuffix(name, fmt.Sprintf(" (%d)", i-1)), i)
	}
	seen[name] = true
	return name
}

// addRuns adds the propagation runs, each in every variant asked for. A method is named by
// its mode (sli2vol+), or by its run folder when several runs share a mode, and by its
// variant ("sli2vol+ (adapted)").
func (ms *methodSet) addRuns(cmd *cobra.Command, runDirs []string, variants []infer.Variant) error {
	modes := map[configs.Mode]int{}
	for _, r := range runDirs {
		if c, err := runs.ReadConfig(r); err == nil {
			modes[c.Model.Mode]++
		}
	}
	for _, r := range runDirs {
		j, err := runJob(cmd, r)
		if err != nil {
			return err
		}
		j.Log = nil // one line per case below, not a bar per structure
		name := string(j.Cfg.Model.Mode)
		if modes[j.Cfg.Model.Mode] > 1 {
			name = filepath.Base(filepath.Clean(r))
		}
		if ms.base == nil {
			ms.base = j
		}
		model := ms.uniqueModel(name)
		if variants == nil {
			v := variantOf(j.Cfg.Infer)
			ms.methods = append(ms.methods, infer.Method{Name: ms.unique(model + v.Suffix()), Model: model, Variant: v, Job: j})
			continue
		}
		for _, v := range variants {
			vj, err := variantJob(v, j)
			if err != nil {
				return err
			}
			ms.methods = append(ms.methods, infer.Method{Name: ms.unique(model + v.Suffix()), Model: model, Variant: v, Job: vj})
		}
	}
	if ms.base != nil {
		return nil
	}
	// Without a propagation model, the command's own config drives the evaluation.
	cfg, dev, err := loadRuntime(cmd, nil)
	if err != nil {
		return err
	}
	ms.base = &infer.Job{Cfg: cfg, Device: dev}
	return nil
}

// addFSSS adds the FS-SS baseline runs (UNETR++).
func (ms *methodSet) addFSSS(fsss []string) error {
	for _, r := range fsss {
		net, err := loadSegNet(r, ms.base.Device)
		if err != nil {
			return err
		}
		name := "fs-ss"
		if len(fsss) > 1 {
			name = "fs-ss " + filepath.Base(filepath.Clean(r))
		}
		ms.methods = append(ms.methods, infer.Method{Name: ms.unique(name), Seg: net})
	}
	return nil
}

// addBaselines puts the copy and untrained-affinity baselines first.
func (ms *methodSet) addBaselines() {
	c := ms.base.Cfg
	if c.Infer.Adapts() { // an untrained affinity has nothing to adapt
		cc := *c
		cc.Infer = cc.Infer.WithoutAdaptation()
		c = &cc
	}
	geig := models.NewGEIG(c.Model.GEIG.Directions, c.Model.GEIG.Scales)
	aff := &infer.Job{Cfg: c, Device: ms.base.Device, Net: &infer.FeatureAffinity{Input: geig, Radius: c.Model.Radius},
		TrainingScale: ms.base.TrainingScale} // at infer.spacing training, the first run's scale
	ms.methods = append([]infer.Method{{Name: ms.unique("copy")}, {Name: ms.unique("geig-affinity (untrained)"), Job: aff}}, ms.methods...)
}

// resultsAbout is what a results section records besides its numbers: the test data, the
// settings every model was run with, where the full report is, and the runs scored.
func resultsAbout(ds *data.Dataset, ev *infer.Evaluation, c *configs.Config, methods []infer.Method, out string) string {
	cases, structures := map[string]bool{}, map[string]bool{}
	for _, r := range ev.Rows {
		cases[r.Case] = true
		structures[r.Case+"/"+r.Name] = true
	}
	in := c.Infer
	adapt := "adaptation (the adapted columns) " + fmt.Sprintf("%d steps at lr %g", in.AdaptSteps, in.AdaptLR)
	switch in.AdaptNorm {
	case configs.AdaptNormAuto:
		adapt += ", batch norm auto (Sli2Vol+ without pseudo-labels: statistics frozen)"
	case configs.AdaptNormBatch:
		adapt += ", batch norm on batch statistics"
	case configs.AdaptNormFrozen:
		adapt += ", batch-norm statistics frozen"
	case configs.AdaptNormVolume:
		adapt += ", then batch-norm statistics re-estimated on the volume"
	}
	if in.AdaptMix < 1 {
		adapt += fmt.Sprintf(", weights %g×adapted + %g×trained", in.AdaptMix, 1-in.AdaptMix)
	}
	if in.ObjectEstimate == configs.EstimatePropagated {
		adapt += fmt.Sprintf(", %d rounds", in.AdaptRounds)
	}
	if !in.Adapts() {
		adapt = "no adaptation"
	}
	whose := "every model"
	for _, m := range methods { // runs keep their own settings unless the command sets some
		if o := m.Job; o != nil && (o.Cfg.Infer.Spacing != in.Spacing || o.Cfg.Infer.ObjectEstimate != in.ObjectEstimate ||
			o.Cfg.Infer.Resize != in.Resize || o.Cfg.Infer.AdaptSteps > 0 && o.Cfg.Infer.AdaptLR != in.AdaptLR || o.Cfg.Infer.AdaptNorm != in.AdaptNorm ||
			o.Cfg.Infer.AdaptMix != in.AdaptMix) {
			whose = "the first model; the others differ, see each run's config.yaml"
		}
	}
	return fmt.Sprintf("Test data: %s (cases: %d, structures: %d), each structure propagated from one slice chosen at random near its "+
		"largest cross-section (seed %d). Inference (%s): spacing %s, object estimate %s, %s; verification: Sli2Vol's "+
		"module. Full report (per structure, drift curves of every variant, overlays): `%s`.\n%s",
		ds.Name, len(cases), len(structures), c.Seed, whose, in.Spacing, in.ObjectEstimate, adapt, filepath.Join(out, "report.md"), ev.Sources)
}

// scoredRuns is the report's record of the runs it scored: each run's commit and data hash
// (from its run.json), so a table can be traced to the code and data behind it.
func scoredRuns(dirs []string) string {
	if len(dirs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("\nRuns scored (from their `run.json`):\n\n| run | sli2vol | commit | data hash | trained |\n|---|---|---|---|---|\n")
	for _, d := range dirs {
		p, err := runs.ReadProvenance(d)
		if err != nil {
			fmt.Fprintf(&b, "| %s | no run.json | | | |\n", d)
			continue
		}
		commit := p.Software.Commit
		if len(commit) > 12 {
			commit = commit[:12]
		}
		if p.Software.Dirty {
			commit += " (uncommitted changes)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", d, p.Software.Sli2vol, commit, p.DataHash, p.Started.Format("2006-01-02 15:04 UTC"))
	}
	return b.String()
}

// variantNames are the --variants values.
var variantNames = map[string]infer.Variant{"plain": {}, "adapted": {Adapted: true}, "verified": {Verified: true},
	"adapted+verified": {Adapted: true, Verified: true}}

func parseVariants(names []string) ([]infer.Variant, error) {
	var out []infer.Variant
	for _, n := range names {
		v, ok := variantNames[n]
		if !ok {
			return nil, fmt.Errorf("evaluate: --variants %q: want plain, adapted, verified or adapted+verified", n)
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// variantOf is the variant an inference config runs.
func variantOf(i configs.Infer) infer.Variant {
	return infer.Variant{Adapted: i.Adapts(), Verified: i.Verification}
}

// variantJob is j run as variant v: adaptation with j's infer.adapt_* settings or none,
// verification on or off.
func variantJob(v infer.Variant, j *infer.Job) (*infer.Job, error) {
	if v.Adapted && !j.Cfg.Infer.Adapts() {
		return nil, fmt.Errorf("evaluate: --variants adapted needs adaptation (--adapt-steps N or --adapt-norm volume)")
	}
	c := *j.Cfg
	if !v.Adapted {
		c.Infer = c.Infer.WithoutAdaptation()
	}
	c.Infer.Verification = v.Verified
	out := *j
	out.Cfg = &c
	return &out, nil
}
