package train

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
)

// PseudoLabelPath finds case id's pseudo-label under dir: MSD layout (labelsTr/ID.nii.gz) or
// flat (ID.nii.gz).
func PseudoLabelPath(dir, id string) (string, error) {
	for _, p := range []string{
		filepath.Join(dir, "labelsTr", id+".nii.gz"), filepath.Join(dir, "labelsTr", id+".nii"),
		filepath.Join(dir, id+".nii.gz"), filepath.Join(dir, id+".nii"),
	} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("pseudo-labels %s: none for case %s (want labelsTr/%s.nii.gz)", dir, id, id)
}

// LoadTrainVolumes reads the training split once: images (labels are not used: training is
// self-supervised) and, with pseudoDir, each case's pseudo-labels on the image's grid.
func LoadTrainVolumes(c *configs.Config, ds *data.Dataset, pseudoDir string) ([]data.TrainVolume, error) {
	cases := ds.Split("train")
	if len(cases) == 0 {
		return nil, fmt.Errorf("dataset %s: no training cases", ds.Root)
	}
	lim := c.VolumeLimits()
	var out []data.TrainVolume
	for _, cs := range cases {
		img, err := data.LoadImage(cs.Image, lim)
		if err != nil {
			return nil, err
		}
		tv := data.TrainVolume{ID: cs.ID, Image: img}
		if tv.Slicer, err = data.NewSlicer(&img.Geometry, c.Data.Axis()); err != nil {
			return nil, fmt.Errorf("%s: %w", cs.Image, err)
		}
		if tv.Norm, err = data.NewNormalizer(c.Data.IntensitySettings(), img.Data); err != nil {
			return nil, err
		}
		if pseudoDir != "" {
			p, err := PseudoLabelPath(pseudoDir, cs.ID)
			if err != nil {
				return nil, err
			}
			pl, err := data.LoadLabels(p, lim)
			if err != nil {
				return nil, err
			}
			if err := img.SameGrid(&pl.Geometry, 1e-3); err != nil {
				return nil, fmt.Errorf("%s: does not lie on the grid of %s: %w", p, cs.Image, err)
			}
			tv.PL = pl
		}
		out = append(out, tv)
	}
	return out, nil
}
