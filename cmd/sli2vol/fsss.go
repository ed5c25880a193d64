package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/train"
)

func newTrainFSSSCmd() *cobra.Command {
	var dataDir, out string
	var resume bool
	cmd := &cobra.Command{
		Use:   "train-fsss --data DIR --out RUN",
		Short: "Train the FS-SS baseline (§4.3): UNETR++ on one annotated slice per volume",
		Long: "Trains UNETR++ with the loss restricted to the slices that `sli2vol evaluate` annotates\n" +
			"in each evaluation volume of DIR (same seed, same choice), as the paper's FS-SS baseline\n" +
			"does. Score it with `sli2vol evaluate --fsss RUN` on the same data and config.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dataDir == "" || out == "" {
				return fmt.Errorf("train-fsss: --data and --out are required")
			}
			if launched, err := launchIfAsked(cmd); launched {
				return err
			}
			c, dev, g, err := loadDistRuntime(cmd, map[string]string{"epochs": "unetr.epochs"})
			if err != nil {
				return err
			}
			defer g.Close()
			ds, err := data.OpenDataset(dataDir)
			if err != nil {
				return err
			}
			vols, err := infer.FSSSVolumes(c, ds)
			if err != nil {
				return err
			}
			prov := newProvenance("train-fsss", c.Seed, dev, g)
			addCases(prov, ds, "train", true)
			addCases(prov, ds, "test", true)
			startHashing(prov)
			o := train.SegOptions{Vols: vols, Title: "fs-ss",
				RunOptions: train.RunOptions{Dir: out, Device: dev, Resume: resume, Log: cmd.ErrOrStderr(), Group: g, Provenance: prov}}
			return trainSeg(c, o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "labelled dataset (the volumes evaluate scores)")
	f.StringVar(&out, "out", "", "run folder")
	f.BoolVar(&resume, "resume", false, "continue from the run folder's last checkpoint")
	f.Int("epochs", 0, "UNETR++ epochs (config: unetr.epochs)")
	addLaunchFlags(cmd)
	return cmd
}
