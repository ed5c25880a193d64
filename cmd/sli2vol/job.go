package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/train"
)

// inferFlags bind the inference settings a command may override (flag → config key).
var inferFlags = map[string]string{"min-area": "infer.min_area", "estimate": "infer.object_estimate", "resize": "infer.resize",
	"spacing": "infer.spacing", "encode-batch": "infer.encode_batch", "verify": "infer.verification",
	"adapt-steps": "infer.adapt_steps", "adapt-lr": "infer.adapt_lr", "adapt-rounds": "infer.adapt_rounds",
	"adapt-norm": "infer.adapt_norm", "adapt-mix": "infer.adapt_mix"}

// runtimeInferFlags set how inference runs, not what it computes: they never replace the
// run's own inference settings (see configs.Config.ForInference).
var runtimeInferFlags = map[string]bool{"encode-batch": true}

func addInferFlags(cmd *cobra.Command) {
	d := configs.Defaults().Infer
	cmd.Flags().Int("min-area", d.MinArea, "stop a direction when the mask has fewer pixels (config: infer.min_area)")
	cmd.Flags().String("estimate", string(d.ObjectEstimate), "test-time object estimate: none, propagated or model (config: infer.object_estimate)")
	cmd.Flags().Int("resize", d.Resize, "propagate on slices resampled to N×N, 0 = native size (config: infer.resize)")
	cmd.Flags().String("spacing", string(d.Spacing), "propagate at the slice's own pixels (native), resampled to the mm/px the run was trained at (training), or at that where it is finer than the slice's (finer) (config: infer.spacing)")
	cmd.Flags().String("estimate-model", "", "UNETR++ run whose prediction is the estimate with --estimate model")
	cmd.Flags().Int("encode-batch", d.EncodeBatch, "slices encoded together while propagating, 0 = auto (config: infer.encode_batch)")
	cmd.Flags().Bool("verify", d.Verification, "Sli2Vol's verification module on every propagated slice (config: infer.verification)")
	cmd.Flags().Int("adapt-steps", d.AdaptSteps, "test-time adaptation: fine-tune a copy of the network on each volume for N steps first, 0 = none (config: infer.adapt_steps)")
	cmd.Flags().Float64("adapt-lr", d.AdaptLR, "test-time adaptation's learning rate (config: infer.adapt_lr)")
	cmd.Flags().String("adapt-norm", string(d.AdaptNorm), "batch norm during test-time adaptation: batch (as training), frozen (trained statistics, weights adapt), volume (statistics re-estimated on the volume after any steps), auto (frozen for Sli2Vol+ without pseudo-labels, else batch) (config: infer.adapt_norm)")
	cmd.Flags().Float64("adapt-mix", d.AdaptMix, "after test-time adaptation, each weight is w×adapted + (1−w)×trained (WiSE-FT); 1 = the adapted network (config: infer.adapt_mix)")
	cmd.Flags().Int("adapt-rounds", d.AdaptRounds, "Sli2Vol+: propagate and adapt on the result this many times (config: infer.adapt_rounds)")
}

// runJob loads a trained run for inference, with the command's runtime settings (device,
// threads) and, when given on the command line, its inference settings (min area, object
// estimate, resize) over the run's own config.
func runJob(cmd *cobra.Command, runDir string) (*infer.Job, error) {
	flagsCfg, err := loadConfig(cmd, inferFlags)
	if err != nil {
		return nil, err
	}
	run, err := runs.LoadCFN(runDir, "")
	if err != nil {
		return nil, err
	}
	inferSet := false
	for name := range inferFlags {
		inferSet = inferSet || cmd.Flags().Changed(name) && !runtimeInferFlags[name]
	}
	c := run.Config.ForInference(flagsCfg, inferSet)
	dev, err := applyRuntime(c)
	if err != nil {
		return nil, err
	}
	if err := run.To(dev); err != nil {
		return nil, err
	}
	j := &infer.Job{Cfg: c, Net: run.Model, Device: dev, Log: cmd.ErrOrStderr(), Adapter: train.Adapter{}}
	if c.Infer.Spacing.FromTraining() {
		sc, err := runs.ReadScale(runDir)
		if err != nil {
			return nil, err
		}
		j.TrainingScale = sc.MMPerPx
	}
	if est, _ := cmd.Flags().GetString("estimate-model"); est != "" {
		if j.Estimator, err = loadSegNet(est, dev); err != nil {
			return nil, err
		}
	}
	if c.Infer.ObjectEstimate == configs.EstimateModel && j.Estimator == nil {
		return nil, fmt.Errorf("--estimate model needs --estimate-model RUN (a UNETR++ run, e.g. refine's)")
	}
	return j, nil
}

// loadSegNet loads a UNETR++ run for prediction on dev.
func loadSegNet(runDir, dev string) (*infer.SegNet, error) {
	r, err := runs.LoadUNETR(runDir, dev)
	if err != nil {
		return nil, err
	}
	return &infer.SegNet{Cfg: r.Config, Model: r.Model, Classes: r.Classes, Device: dev}, nil
}
