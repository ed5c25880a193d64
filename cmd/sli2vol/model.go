package main

import (
	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/models"
)

func newModelCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "model", Short: "Inspect the correspondence-flow network a config describes"}
	cmd.AddCommand(&cobra.Command{
		Use:   "summary",
		Short: "Print the network's inputs, window and parameter counts (--config F)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			m, err := models.NewCFN(c.Model)
			if err != nil {
				return err
			}
			m.WriteSummary(cmd.OutOrStdout())
			return nil
		},
	})
	return cmd
}
