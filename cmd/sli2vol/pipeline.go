package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/dist"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/train"
)

// The pipeline's folders under --out, in the order they are made.
const (
	stepSli2Vol = string(configs.ModeSli2Vol)     // Sli2Vol, trained self-supervised on the training volumes
	stepPseudo  = "pseudo"                        // its propagation of each annotated slice: the PLs
	stepRefined = "refined"                       // UNETR++'s re-prediction of them (and refined/unetr, the network)
	stepPlus    = string(configs.ModeSli2VolPlus) // the OEG-CFN trained on the refined PLs
	stepReport  = "report"                        // evaluation on --test
)

func newPipelineCmd() *cobra.Command {
	var pl pipeline
	cmd := &cobra.Command{
		Use:   "pipeline --config F --data DIR --out WORK [--test DIR]",
		Short: "Run the whole method: train Sli2Vol → pseudo-label → refine → train Sli2Vol+ → evaluate",
		Long: "Runs every step of the paper's pipeline into WORK/{sli2vol,pseudo,refined,sli2vol+,report}.\n" +
			"A step whose output is complete is skipped, so an interrupted pipeline continues where it\n" +
			"stopped when run again (an interrupted training step resumes from its checkpoint).\n" +
			"--no-refine trains Sli2Vol+ on the raw pseudo-labels (the paper's ablation row (g)).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if pl.dataDir == "" || pl.out == "" {
				return fmt.Errorf("pipeline: --data and --out are required")
			}
			if launched, err := launchIfAsked(cmd); launched {
				return err
			}
			pl.cmd = cmd
			return pl.run()
		},
	}
	f := cmd.Flags()
	f.StringVar(&pl.dataDir, "data", "", "training dataset (one annotated slice per volume, or labels)")
	f.StringVar(&pl.testDir, "test", "", "labelled test dataset to evaluate on (optional)")
	f.StringVar(&pl.out, "out", "", "work folder for every step's output")
	f.BoolVar(&pl.noRefine, "no-refine", false, "train Sli2Vol+ on the raw pseudo-labels (ablation)")
	addInferFlags(cmd)
	addLaunchFlags(cmd)
	return cmd
}

// pipeline is one run of the pipeline command: its flags, then what the steps share.
type pipeline struct {
	dataDir, testDir, out string
	noRefine              bool

	cmd *cobra.Command
	cfg *configs.Config
	dev string
	ds  *data.Dataset
	g   *dist.Group // a distributed launch: training on every rank, cases split, rank 0 reports
}

// run takes the steps in order; each skips itself when its output is complete.
func (pl *pipeline) run() error {
	var err error
	if pl.cfg, pl.dev, err = loadRuntime(pl.cmd, nil); err != nil {
		return err
	}
	if pl.ds, err = data.OpenDataset(pl.dataDir); err != nil {
		return err
	}
	if pl.g, err = joinGroup(pl.cfg, pl.dev); err != nil {
		return err
	}
	defer pl.g.Close()
	if err := os.MkdirAll(pl.out, 0o755); err != nil {
		return fmt.Errorf("pipeline: %w", err)
	}
	prov := newProvenance("pipeline", pl.cfg.Seed, pl.dev, pl.g)
	addCases(prov, pl.ds, "train", true)
	if err := pl.steps(); err != nil {
		return err
	}
	if pl.testDir != "" {
		if test, err := data.OpenDataset(pl.testDir); err == nil {
			addCases(prov, test, "train", true)
			addCases(prov, test, "test", true)
		}
	}
	startHashing(prov)
	return finishOutput(prov, pl.out, pl.cfg)
}

// steps are the method's steps in order: 1. Sli2Vol, 2. its pseudo-labels, 3. their
// refinement, 4. Sli2Vol+, 5. evaluation.
func (pl *pipeline) steps() error {
	if err := pl.trainCFN(configs.ModeSli2Vol, pl.path(stepSli2Vol), ""); err != nil {
		return err
	}
	if err := pl.pseudoLabels(); err != nil {
		return err
	}
	pls, err := pl.refine()
	if err != nil {
		return err
	}
	if err := pl.trainCFN(configs.ModeSli2VolPlus, pl.path(stepPlus), pls); err != nil {
		return err
	}
	if pl.testDir == "" {
		pl.say("done; no --test data, so no evaluation (sli2vol evaluate --model %s ...)", pl.path(stepPlus))
		return nil
	}
	return runEvaluate(pl.cmd, pl.g, evalInputs{runs: []string{pl.path(stepSli2Vol), pl.path(stepPlus)}}, pl.testDir, pl.path(stepReport), true, true)
}

func (pl *pipeline) path(step string) string { return filepath.Join(pl.out, step) }

func (pl *pipeline) say(f string, a ...any) {
	if isRank0(pl.g) {
		fmt.Fprintf(pl.cmd.OutOrStdout(), "pipeline: "+f+"\n", a...)
	}
}

// done reports whether a step's output is complete, as rank 0 sees it: every rank then takes
// or skips the step together.
func (pl *pipeline) done(path string) bool {
	ok := exists(path)
	if pl.g == nil {
		return ok
	}
	v := 0.0
	if ok && pl.g.Rank() == 0 {
		v = 1
	}
	all, err := pl.g.AllReduceScalars(true, v)
	return err == nil && all[0] > 0
}

// trainCFN is steps 1 and 4: the same trainer in two modes, resumed from a checkpoint.
func (pl *pipeline) trainCFN(mode configs.Mode, dir, pseudo string) error {
	if pl.done(runs.Path(dir, runs.ModelFile)) {
		pl.say("%s: trained already (%s)", mode, dir)
		return nil
	}
	c := *pl.cfg
	c.Model.Mode = mode
	sig, stop := interrupts()
	defer stop()
	prov := newProvenance("pipeline train "+string(mode), c.Seed, pl.dev, pl.g)
	addCases(prov, pl.ds, "train", false)
	addPseudoLabels(prov, pl.ds, pseudo)
	startHashing(prov)
	r, err := train.TrainCFN(&c, train.Options{Data: pl.ds, PseudoDir: pseudo, RunOptions: train.RunOptions{Dir: dir,
		Device: pl.dev, Resume: pl.done(runs.Path(dir, runs.CheckpointFile)), Log: pl.cmd.ErrOrStderr(), Interrupt: sig, Group: pl.g,
		Provenance: prov}})
	if err != nil {
		return err
	}
	pl.say("%s: %d steps, loss %.4f → %.4f (%s)", mode, r.Steps, r.FirstLoss, r.LastLoss, dir)
	return nil
}

// pseudoLabels is step 2 (annotations.json is written last: its presence marks a full set).
func (pl *pipeline) pseudoLabels() error {
	out := pl.path(stepPseudo)
	if pl.done(filepath.Join(out, "annotations.json")) {
		pl.say("pseudo-labels: made already (%s)", out)
		return nil
	}
	j, err := runJob(pl.cmd, pl.path(stepSli2Vol))
	if err != nil {
		return err
	}
	prov := newProvenance("pipeline pseudo-label", j.Cfg.Seed, pl.dev, pl.g)
	addCases(prov, pl.ds, "train", true)
	addModel(prov, pl.path(stepSli2Vol))
	startHashing(prov)
	if err := j.PseudoLabels(pl.ds, out, data.WriteOptions{Overwrite: true}, ranksOf(pl.g)); err != nil {
		return err
	}
	if err := finishOutput(prov, out, j.Cfg); err != nil {
		return err
	}
	pl.say("pseudo-labels: %s", out)
	return nil
}

// refine is step 3; it returns the pseudo-labels Sli2Vol+ trains on.
func (pl *pipeline) refine() (string, error) {
	if pl.noRefine {
		return pl.path(stepPseudo), nil
	}
	out := pl.path(stepRefined)
	if pl.done(filepath.Join(out, "annotations.json")) {
		pl.say("refined pseudo-labels: made already (%s)", out)
		return out, nil
	}
	run := filepath.Join(out, "unetr")
	resume := pl.done(runs.Path(run, runs.CheckpointFile)) && !pl.done(runs.Path(run, runs.ModelFile))
	return out, refine(pl.cmd, pl.cfg, pl.dev, pl.g, pl.dataDir, pl.path(stepPseudo), out, run, resume, true)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
