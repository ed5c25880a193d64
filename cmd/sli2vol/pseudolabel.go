package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/data"
)

func newPseudoLabelCmd() *cobra.Command {
	var model, dataDir, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "pseudo-label --model RUN --data DIR --out PLDIR",
		Short: "Propagate each training volume's annotated slice into pseudo-labels (§3.2)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if model == "" || dataDir == "" || out == "" {
				return fmt.Errorf("pseudo-label: --model, --data and --out are required")
			}
			if launched, err := launchIfAsked(cmd); launched {
				return err
			}
			j, err := runJob(cmd, model)
			if err != nil {
				return err
			}
			ds, err := data.OpenDataset(dataDir)
			if err != nil {
				return err
			}
			g, err := joinGroup(j.Cfg, j.Device)
			if err != nil {
				return err
			}
			defer g.Close()
			prov := newProvenance("pseudo-label", j.Cfg.Seed, j.Device, g)
			addCases(prov, ds, "train", true)
			addModel(prov, model)
			startHashing(prov)
			if err := j.PseudoLabels(ds, out, data.WriteOptions{Overwrite: force}, ranksOf(g)); err != nil || !isRank0(g) {
				return err
			}
			if err := finishOutput(prov, out, j.Cfg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pseudo-labels for %d cases in %s\n", len(ds.Split("train")), out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "trained run folder")
	f.StringVar(&dataDir, "data", "", "training dataset")
	f.StringVar(&out, "out", "", "output folder (labelsTr/ID.nii.gz, annotations.json)")
	f.BoolVar(&force, "force", false, "overwrite existing pseudo-labels")
	addInferFlags(cmd)
	addLaunchFlags(cmd)
	return cmd
}
