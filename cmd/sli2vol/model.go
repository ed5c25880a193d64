package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
)

func newModelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "model", Short: "Inspect the networks a config describes"}
	var network string
	var classes int
	summary := &cobra.Command{
		Use:   "summary",
		Short: "Print a network's shape and parameter counts (--config F; --network cfn|unetr)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			switch network {
			case "cfn":
				m, err := runs.NewCFN(c.Model)
				if err != nil {
					return err
				}
				m.WriteSummary(cmd.OutOrStdout())
			case "unetr":
				m, err := models.NewUNETRPP(runs.UNETRConfig(c.UNETR, 1, classes))
				if err != nil {
					return err
				}
				m.WriteSummary(cmd.OutOrStdout())
			default:
				return fmt.Errorf("model summary: --network %q: want cfn or unetr", network)
			}
			return nil
		},
	}
	summary.Flags().StringVar(&network, "network", "cfn", "cfn (the correspondence-flow network) or unetr (UNETR++)")
	summary.Flags().IntVar(&classes, "classes", 2, "UNETR++ output classes, background included")
	cmd.AddCommand(summary)
	return cmd
}
