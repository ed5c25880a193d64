package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/data"
)

func parseSize(s string) ([3]int, error) {
	var out [3]int
	parts := strings.Split(s, ",")
	if len(parts) != 3 {
		return out, fmt.Errorf("--size %q: want X,Y,Z (e.g. 96,96,48)", s)
	}
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || v <= 0 {
			return out, fmt.Errorf("--size %q: %q is not a positive integer", s, p)
		}
		out[i] = v
	}
	return out, nil
}

func newPhantomCmd() *cobra.Command {
	var out, size string
	var cases int
	var force bool
	cmd := &cobra.Command{
		Use:   "phantom --out DIR [--cases N] [--seed S]",
		Short: "Write synthetic CT-like phantoms with labels as a Decathlon-style dataset",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("phantom: --out is required")
			}
			c, err := loadConfig(cmd, nil)
			if err != nil {
				return err
			}
			shape, err := parseSize(size)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return fmt.Errorf("phantom: %w", err)
			}
			start := time.Now()
			if err := data.WritePhantomDataset(out, cases, c.Seed, shape, data.WriteOptions{Overwrite: force}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d phantom cases (%d×%d×%d, seed %d) to %s in %v\n",
				cases, shape[0], shape[1], shape[2], c.Seed, out, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "output folder (an MSD dataset: imagesTr, labelsTr, dataset.json)")
	cmd.Flags().IntVar(&cases, "cases", 4, "number of cases")
	cmd.Flags().StringVar(&size, "size", "96,96,48", "volume size X,Y,Z (Z is the slice axis)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	return cmd
}
