package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/train"
)

// interrupts delivers SIGINT/SIGTERM to a training loop, which finishes its step, writes a
// checkpoint and returns an error that exits 130/143; stop restores the default handling.
func interrupts() (<-chan os.Signal, func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	return sig, func() { signal.Stop(sig) }
}

// trainSeg runs a UNETR++ training with SIGINT/SIGTERM ending it at a checkpoint.
func trainSeg(c *configs.Config, o train.SegOptions, stdout io.Writer) error {
	sig, stop := interrupts()
	defer stop()
	o.Interrupt = sig
	r, err := train.TrainUNETRPP(c, o)
	if err != nil || !isRank0(o.Group) {
		return err
	}
	fmt.Fprintf(stdout, "trained UNETR++ (%s) on %s: %d steps, loss %.4f → %.4f; model in %s\n",
		o.Title, o.Device, r.Steps, r.FirstLoss, r.LastLoss, o.Dir)
	return nil
}

func newTrainCmd() *cobra.Command {
	var dataDir, out, pseudo string
	var resume bool
	cmd := &cobra.Command{
		Use:   "train --data DIR --out RUN [--pseudo PLDIR] [--resume]",
		Short: "Train Sli2Vol (model.mode sli2vol) or Sli2Vol+'s OEG-CFN (sli2vol+, with --pseudo)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || out == "" {
				return fmt.Errorf("train: --data and --out are required")
			}
			if launched, err := launchIfAsked(cmd); launched {
				return err
			}
			c, dev, g, err := loadDistRuntime(cmd, map[string]string{"mode": "model.mode", "epochs": "train.epochs", "batch-size": "train.batch_size"})
			if err != nil {
				return err
			}
			defer g.Close()
			ds, err := data.OpenDataset(dataDir)
			if err != nil {
				return err
			}
			sig, stop := interrupts()
			defer stop()
			prov := newProvenance("train", c.Seed, dev, g)
			addCases(prov, ds, "train", false)
			if c.Model.Mode.UsesPL() {
				addPseudoLabels(prov, ds, pseudo)
			}
			startHashing(prov)
			r, err := train.TrainCFN(c, train.Options{Data: ds, PseudoDir: pseudo, RunOptions: train.RunOptions{
				Dir: out, Device: dev, Resume: resume, Log: cmd.ErrOrStderr(), Interrupt: sig, Group: g, Provenance: prov}})
			if err != nil || !isRank0(g) {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "trained %s on %s: %d steps, loss %.4f → %.4f; model in %s\n",
				c.Model.Mode, dev, r.Steps, r.FirstLoss, r.LastLoss, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "training dataset (MSD folder, plain folder or manifest)")
	f.StringVar(&out, "out", "", "run folder for config, checkpoints, metrics and the model")
	f.StringVar(&pseudo, "pseudo", "", "pseudo-labels (sli2vol pseudo-label output), for mode sli2vol+")
	f.BoolVar(&resume, "resume", false, "continue from the run folder's last checkpoint")
	f.String("mode", string(configs.Defaults().Model.Mode), "sli2vol or sli2vol+ (config: model.mode)")
	f.Int("epochs", 0, "epochs (config: train.epochs)")
	f.Int("batch-size", 0, "batch size per process (config: train.batch_size)")
	addLaunchFlags(cmd)
	return cmd
}
