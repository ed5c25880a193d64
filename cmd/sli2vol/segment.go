package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
	"github.com/sli2vol/sli2vol/train"
)

// runJob loads a trained run for inference, with the command's runtime settings (device,
// threads, min area, object estimate) over the run's own config.
func runJob(cmd *cobra.Command, runDir string) (*infer.Job, error) {
	flagsCfg, err := loadConfig(cmd, map[string]string{"min-area": "infer.min_area", "estimate": "infer.object_estimate", "resize": "infer.resize"})
	if err != nil {
		return nil, err
	}
	c, m, err := train.LoadRun(runDir)
	if err != nil {
		return nil, err
	}
	c.Device, c.Threads = flagsCfg.Device, flagsCfg.Threads
	if cmd.Flags().Changed("min-area") || cmd.Flags().Changed("estimate") || cmd.Flags().Changed("resize") {
		c.Infer.MinArea, c.Infer.ObjectEstimate, c.Infer.Resize = flagsCfg.Infer.MinArea, flagsCfg.Infer.ObjectEstimate, flagsCfg.Infer.Resize
	}
	dev, err := applyRuntime(c)
	if err != nil {
		return nil, err
	}
	if err := moveModel(m, dev); err != nil {
		return nil, err
	}
	j := &infer.Job{Cfg: c, Net: m, Device: dev, Log: cmd.ErrOrStderr()}
	if est, _ := cmd.Flags().GetString("estimate-model"); est != "" {
		if j.Estimator, err = loadSegNet(est, dev); err != nil {
			return nil, err
		}
	}
	if c.Infer.ObjectEstimate == "model" && j.Estimator == nil {
		return nil, fmt.Errorf("--estimate model needs --estimate-model RUN (a UNETR++ run, e.g. refine's)")
	}
	return j, nil
}

func addInferFlags(cmd *cobra.Command) {
	d := configs.Defaults().Infer
	cmd.Flags().Int("min-area", d.MinArea, "stop a direction when the mask has fewer pixels (config: infer.min_area)")
	cmd.Flags().String("estimate", d.ObjectEstimate, "test-time object estimate: none, propagated or model (config: infer.object_estimate)")
	cmd.Flags().Int("resize", d.Resize, "propagate on slices resampled to N×N, 0 = native size (config: infer.resize)")
	cmd.Flags().String("estimate-model", "", "UNETR++ run whose prediction is the estimate with --estimate model")
}

func newSegmentCmd() *cobra.Command {
	var model, image, annotation, out, series string
	var slice int
	var force bool
	cmd := &cobra.Command{
		Use:   "segment --model RUN --image X --annotation A --out Y",
		Short: "Propagate one annotated slice through a volume (both directions) into a 3D mask",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if model == "" || image == "" || annotation == "" || out == "" {
				return fmt.Errorf("segment: --model, --image, --annotation and --out are required")
			}
			j, err := runJob(cmd, model)
			if err != nil {
				return err
			}
			j.Series = series
			res, err := j.SegmentFile(image, annotation, slice, out, data.WriteOptions{Overwrite: force})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (slices %d..%d labelled)\n", out, res.First, res.Last)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "trained run folder (sli2vol train --out)")
	f.StringVar(&image, "image", "", "image volume: NIfTI file, or a folder holding a DICOM series")
	f.StringVar(&series, "series", "", "DICOM SeriesInstanceUID, when the image folder holds several series")
	f.StringVar(&annotation, "annotation", "", "label file with the annotated slice, on the image's grid")
	f.StringVar(&out, "out", "", "output mask (NIfTI, the image's geometry)")
	f.IntVar(&slice, "slice", -1, "the annotated slice, when the annotation file labels several")
	f.BoolVar(&force, "force", false, "overwrite an existing output")
	addInferFlags(cmd)
	return cmd
}

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
			j, err := runJob(cmd, model)
			if err != nil {
				return err
			}
			ds, err := data.OpenDataset(dataDir)
			if err != nil {
				return err
			}
			if err := j.PseudoLabels(ds, out, data.WriteOptions{Overwrite: force}); err != nil {
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
	return cmd
}

func moveModel(m *models.CFN, dev string) error {
	return torchx.Try(func() { models.To(m, dev) })
}
