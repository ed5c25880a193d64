package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/train"
)

// The pipeline's folders under --out, in the order they are made.
const (
	stepSli2Vol = "sli2vol"  // Sli2Vol, trained self-supervised on the training volumes
	stepPseudo  = "pseudo"   // its propagation of each annotated slice: the PLs
	stepRefined = "refined"  // UNETR++'s re-prediction of them (and refined/unetr, the network)
	stepPlus    = "sli2vol+" // the OEG-CFN trained on the refined PLs
	stepReport  = "report"   // evaluation on --test
)

func newPipelineCmd() *cobra.Command {
	var dataDir, testDir, out string
	var noRefine bool
	cmd := &cobra.Command{
		Use:   "pipeline --config F --data DIR --out WORK [--test DIR]",
		Short: "Run the whole method: train Sli2Vol → pseudo-label → refine → train Sli2Vol+ → evaluate",
		Long: "Runs every step of the paper's pipeline into WORK/{sli2vol,pseudo,refined,sli2vol+,report}.\n" +
			"A step whose output is complete is skipped, so an interrupted pipeline continues where it\n" +
			"stopped when run again (an interrupted training step resumes from its checkpoint).\n" +
			"--no-refine trains Sli2Vol+ on the raw pseudo-labels (the paper's ablation row (g)).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || out == "" {
				return fmt.Errorf("pipeline: --data and --out are required")
			}
			c, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			dev, err := applyRuntime(c)
			if err != nil {
				return err
			}
			ds, err := data.OpenDataset(dataDir)
			if err != nil {
				return err
			}
			p := func(s string) string { return filepath.Join(out, s) }
			say := func(f string, a ...any) { fmt.Fprintf(cmd.OutOrStdout(), "pipeline: "+f+"\n", a...) }
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("pipeline: %v", err)
			}
			done := func(path string) bool { _, err := os.Stat(path); return err == nil }

			// 1. Sli2Vol, then 4. Sli2Vol+: the same trainer in two modes.
			trainCFN := func(mode, dir, pseudo string) error {
				if done(filepath.Join(dir, train.ModelFile)) {
					say("%s: trained already (%s)", mode, dir)
					return nil
				}
				cc := *c
				cc.Model.Mode = mode
				sig, stop := interrupts()
				defer stop()
				r, err := train.TrainCFN(&cc, train.Options{Data: ds, PseudoDir: pseudo, RunDir: dir, Device: dev,
					Resume: done(filepath.Join(dir, train.CheckpointFile)), Log: cmd.ErrOrStderr(), Interrupt: sig})
				if err != nil {
					return err
				}
				say("%s: %d steps, loss %.4f → %.4f (%s)", mode, r.Steps, r.FirstLoss, r.LastLoss, dir)
				return nil
			}
			if err := trainCFN("sli2vol", p(stepSli2Vol), ""); err != nil {
				return err
			}
			// 2. Pseudo-labels (annotations.json is written last: its presence marks a full set).
			if done(p(stepPseudo + "/annotations.json")) {
				say("pseudo-labels: made already (%s)", p(stepPseudo))
			} else {
				j, err := runJob(cmd, p(stepSli2Vol))
				if err != nil {
					return err
				}
				if err := j.PseudoLabels(ds, p(stepPseudo), data.WriteOptions{Overwrite: true}); err != nil {
					return err
				}
				say("pseudo-labels: %s", p(stepPseudo))
			}
			// 3. Refinement.
			pls := p(stepRefined)
			switch {
			case noRefine:
				pls = p(stepPseudo)
			case done(p(stepRefined + "/annotations.json")):
				say("refined pseudo-labels: made already (%s)", pls)
			default:
				run := p(stepRefined + "/unetr")
				resume := done(filepath.Join(run, train.CheckpointFile)) && !done(filepath.Join(run, train.ModelFile))
				if err := refine(cmd, c, dev, dataDir, p(stepPseudo), pls, run, resume, true); err != nil {
					return err
				}
			}
			// 4. Sli2Vol+.
			if err := trainCFN("sli2vol+", p(stepPlus), pls); err != nil {
				return err
			}
			// 5. Evaluation.
			if testDir == "" {
				say("done; no --test data, so no evaluation (sli2vol evaluate --model %s ...)", p(stepPlus))
				return nil
			}
			return runEvaluate(cmd, []string{p(stepSli2Vol), p(stepPlus)}, nil, testDir, p(stepReport), true, true)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "training dataset (one annotated slice per volume, or labels)")
	f.StringVar(&testDir, "test", "", "labelled test dataset to evaluate on (optional)")
	f.StringVar(&out, "out", "", "work folder for every step's output")
	f.BoolVar(&noRefine, "no-refine", false, "train Sli2Vol+ on the raw pseudo-labels (ablation)")
	addInferFlags(cmd)
	return cmd
}
