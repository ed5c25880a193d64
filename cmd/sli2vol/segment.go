package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/data"
)

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
	f.StringVar(&annotation, "annotation", "", "label file on the image's grid: its labelled slice (several: each propagates, blended between them)")
	f.StringVar(&out, "out", "", "output mask (NIfTI, the image's geometry)")
	f.IntVar(&slice, "slice", -1, "take only this labelled slice of the annotation file")
	f.BoolVar(&force, "force", false, "overwrite an existing output")
	addInferFlags(cmd)
	return cmd
}
