package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/train"
)

func newPrepareCmd() *cobra.Command {
	var dataDir, pseudo string
	var force bool
	cmd := &cobra.Command{
		Use:   "prepare --data DIR --out CACHE [--pseudo PLDIR] [--force]",
		Short: "Decode the training split once into a cache that training reads slice by slice",
		Long: "Writes each training case (and its pseudo-labels, with --pseudo) decoded, in slice\n" +
			"order, as .npy arrays with a JSON entry, so that train and refine (with data.cache set\n" +
			"to CACHE) read only the slices they sample: datasets larger than memory train in\n" +
			"bounded RAM. A cache made under other data settings is refused, naming the key;\n" +
			"--force rebuilds it. An interrupted prepare resumes. train and refine also prepare\n" +
			"the cache themselves on first use.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(cmd, map[string]string{"out": "data.cache", "workers": "data.workers"})
			if err != nil {
				return err
			}
			if dataDir == "" || c.Data.Cache == "" {
				return fmt.Errorf("prepare: --data and --out (or data.cache) are required")
			}
			ds, err := data.OpenDataset(dataDir)
			if err != nil {
				return err
			}
			start := time.Now()
			cc, err := train.PrepareCache(c, ds, pseudo, force, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cache %s: %d cases (%.1f MB) ready in %v\n", cc.Dir, len(cc.Entries),
				float64(cc.Bytes())/1e6, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", "", "training dataset (MSD folder, plain folder, DICOM tree or manifest)")
	f.String("out", "", "cache folder (config: data.cache)")
	f.StringVar(&pseudo, "pseudo", "", "pseudo-labels to cache with the images (sli2vol pseudo-label output)")
	f.Int("workers", 0, "cases decoded at once (config: data.workers)")
	f.BoolVar(&force, "force", false, "rebuild a cache made under other settings or from changed files")
	return cmd
}
