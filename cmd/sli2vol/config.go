package main

import (
	"github.com/spf13/cobra"
)

func newConfigCmd() *cobra.Command {
	cfg := &cobra.Command{Use: "config", Short: "Inspect configuration"}
	cfg.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Print the effective config (defaults ← --config ← SLI2VOL_* env ← flags) as YAML",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			b, err := c.YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	})
	return cfg
}
