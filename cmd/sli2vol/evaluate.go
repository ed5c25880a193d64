package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/train"
)

func newEvaluateCmd() *cobra.Command {
	var runs, fsss []string
	var dataDir, out string
	var baselines, force bool
	cmd := &cobra.Command{
		Use:   "evaluate --model RUN [--model RUN2 ...] --data DIR --out REPORT",
		Short: "Benchmark trained models and baselines on labelled volumes (Dice, HD95, error drift)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEvaluate(cmd, runs, fsss, dataDir, out, baselines, force)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&runs, "model", nil, "trained run folder (repeatable)")
	f.StringArrayVar(&fsss, "fsss", nil, "FS-SS baseline run folder (sli2vol train-fsss; repeatable)")
	f.StringVar(&dataDir, "data", "", "labelled dataset to evaluate on")
	f.StringVar(&out, "out", "", "report folder (report.md, results.csv, drift.csv)")
	f.BoolVar(&baselines, "baselines", true, "include the copy and untrained GEIG-affinity baselines")
	f.BoolVar(&force, "force", false, "overwrite an existing report")
	addInferFlags(cmd)
	return cmd
}

// runEvaluate scores the runs (propagation models), FS-SS runs and baselines on dataDir.
func runEvaluate(cmd *cobra.Command, runs, fsss []string, dataDir, out string, baselines, force bool) error {
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
	var methods []infer.Method
	var base *infer.Job
	seen := map[string]bool{}
	// A method is named by its mode ("sli2vol+"), or by its run folder when several runs
	// share a mode; a number makes a name unique whatever the folders are called.
	modes := map[string]int{}
	for _, r := range runs {
		if c, _, err := train.LoadRun(r); err == nil {
			modes[c.Model.Mode]++
		}
	}
	unique := func(name string) string {
		for i := 2; seen[name]; i++ {
			name = fmt.Sprintf("%s (%d)", strings.TrimSuffix(name, fmt.Sprintf(" (%d)", i-1)), i)
		}
		seen[name] = true
		return name
	}
	for _, r := range runs {
		j, err := runJob(cmd, r)
		if err != nil {
			return err
		}
		j.Log = nil // one line per case below, not a bar per structure
		name := j.Cfg.Model.Mode
		if modes[name] > 1 {
			name = filepath.Base(filepath.Clean(r))
		}
		methods = append(methods, infer.Method{Name: unique(name), Job: j})
		if base == nil {
			base = j
		}
	}
	// Without a propagation model, the command's own config drives the evaluation.
	var cfg *configs.Config
	var dev string
	if base == nil {
		if cfg, err = loadConfig(cmd, nil); err != nil {
			return err
		}
		if dev, err = applyRuntime(cfg); err != nil {
			return err
		}
		base = &infer.Job{Cfg: cfg, Device: dev}
	}
	for _, r := range fsss {
		net, err := loadSegNet(r, base.Device)
		if err != nil {
			return err
		}
		name := "fs-ss"
		if len(fsss) > 1 {
			name = "fs-ss " + filepath.Base(filepath.Clean(r))
		}
		methods = append(methods, infer.Method{Name: unique(name), Seg: net})
	}
	if baselines || len(methods) == 0 {
		c := base.Cfg
		geig := models.NewGEIG(c.Model.GEIG.Directions, c.Model.GEIG.Scales)
		aff := &infer.Job{Cfg: c, Device: base.Device, Net: &infer.FeatureAffinity{Input: geig, Radius: c.Model.Radius}}
		methods = append([]infer.Method{{Name: "copy"}, {Name: "geig-affinity (untrained)", Job: aff}}, methods...)
	}
	ev, err := infer.Evaluate(ds, base, methods, base.Cfg.Seed)
	if err != nil {
		return err
	}
	names := make([]string, len(methods))
	for i, m := range methods {
		names[i] = m.Name
	}
	if err := ev.Write(out, names, "sli2vol evaluation on "+ds.Name); err != nil {
		return err
	}
	fmt.Fprint(cmd.OutOrStdout(), ev.Table(names))
	fmt.Fprintf(cmd.OutOrStdout(), "report: %s\n", filepath.Join(out, "report.md"))
	return nil
}
