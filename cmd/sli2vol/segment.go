package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
)

func newSegmentCmd() *cobra.Command {
	var model, image, annotation, out, series, dataDir, annDir string
	var slice int
	var force bool
	cmd := &cobra.Command{
		Use:   "segment --model RUN (--image X --annotation A --out Y | --data DIR [--annotations DIR] --out DIR)",
		Short: "Propagate annotated slices through a volume (both directions) into a 3D mask, or through every case of a folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			many := dataDir != ""
			switch {
			case model == "" || out == "":
				return fmt.Errorf("segment: --model and --out are required")
			case many && (image != "" || annotation != "" || slice >= 0):
				return fmt.Errorf("segment: --data segments a folder of cases; --image, --annotation and --slice are for one volume")
			case !many && (image == "" || annotation == ""):
				return fmt.Errorf("segment: --image and --annotation (or --data for a folder of cases) are required")
			case !many && annDir != "":
				return fmt.Errorf("segment: --annotations goes with --data")
			}
			o := data.WriteOptions{Overwrite: force}
			if many {
				return segmentCases(cmd, model, dataDir, annDir, out, o)
			}
			j, err := runJob(cmd, model)
			if err != nil {
				return err
			}
			j.Series = series
			res, err := j.SegmentFile(image, annotation, slice, out, o)
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
	f.StringVar(&out, "out", "", "output mask (NIfTI, the image's geometry); with --data an existing folder for ID.nii.gz")
	f.IntVar(&slice, "slice", -1, "take only this labelled slice of the annotation file")
	f.StringVar(&dataDir, "data", "", "a folder of cases (MSD layout, manifest, plain folder or DICOM tree) to segment")
	f.StringVar(&annDir, "annotations", "", "with --data: a folder of ID.nii.gz annotation files (default: each case's own annotation)")
	f.BoolVar(&force, "force", false, "overwrite existing outputs")
	addInferFlags(cmd)
	return cmd
}

// segmentCases is `segment --data DIR`: every case's annotation propagated into OUT/ID.nii.gz,
// refused as a whole before any work when a case lacks an annotation or an output exists.
func segmentCases(cmd *cobra.Command, model, dataDir, annDir, out string, o data.WriteOptions) error {
	ds, err := data.OpenDataset(dataDir)
	if err != nil {
		return err
	}
	cases, err := infer.CaseInputs(ds, annDir, out, o)
	if err != nil {
		return err
	}
	j, err := runJob(cmd, model)
	if err != nil {
		return err
	}
	if err := j.SegmentCases(cases, o); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "wrote %d masks to %s\n", len(cases), out)
	return nil
}
