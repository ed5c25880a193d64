package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/train"
)

func newSelftestCmd() *cobra.Command {
	var steps int
	cmd := &cobra.Command{
		Use:   "selftest",
		Short: "Train a tiny conv net for a few steps on --device: forward, backward, optimizer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, dev, err := loadRuntime(cmd, nil)
			if err != nil {
				return err
			}
			r, err := train.Smoke(dev, steps, uint64(c.Seed), cmd.OutOrStdout())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "selftest ok on %s: loss %.5f → %.5f in %d steps\n", r.Device, r.First, r.Last, r.Steps)
			return nil
		},
	}
	cmd.Flags().IntVar(&steps, "steps", 40, "training steps")
	return cmd
}
