package train

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/sli2vol/sli2vol/cache"
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

// TrainSources are the training split's cases, each with its pseudo-label file when
// pseudoDir is given.
func TrainSources(ds *data.Dataset, pseudoDir string) ([]cache.Source, error) {
	cases := ds.Split("train")
	if len(cases) == 0 {
		return nil, fmt.Errorf("dataset %s: no training cases", ds.Root)
	}
	out := make([]cache.Source, len(cases))
	for i, cs := range cases {
		out[i].Case = cs
		if pseudoDir != "" {
			p, err := PseudoLabelPath(pseudoDir, cs.ID)
			if err != nil {
				return nil, err
			}
			out[i].PL = p
		}
	}
	return out, nil
}

// CacheSettings are what a cache made under c depends on.
func CacheSettings(c *configs.Config) cache.Settings {
	return cache.Settings{Keys: c.CacheKeys(), Intensity: c.Data.IntensitySettings(), Axis: c.Data.Axis(), Limits: c.VolumeLimits()}
}

// PrepareCache makes or completes the cache data.cache for the training split (and its
// pseudo-labels), or refuses a stale one.
func PrepareCache(c *configs.Config, ds *data.Dataset, pseudoDir string, force bool, log io.Writer) (*cache.Cache, error) {
	srcs, err := TrainSources(ds, pseudoDir)
	if err != nil {
		return nil, err
	}
	return cache.Prepare(c.Data.Cache, srcs, CacheSettings(c), cache.Options{Force: force, Workers: max(c.Data.Workers, 1), Log: log})
}

// LoadTrainVolumes gives the training split (with pseudo-labels from pseudoDir) as training
// volumes, from where the config says: the cache data.cache (made first when missing),
// decoded on demand within data.max_resident_gb, or read whole into memory.
func LoadTrainVolumes(c *configs.Config, ds *data.Dataset, pseudoDir string, log io.Writer) ([]data.TrainVolume, error) {
	if c.Data.Cache != "" {
		cc, err := PrepareCache(c, ds, pseudoDir, false, log)
		if err != nil {
			return nil, err
		}
		return cc.TrainVolumes(), nil
	}
	srcs, err := TrainSources(ds, pseudoDir)
	if err != nil {
		return nil, err
	}
	if c.Data.MaxResidentGB > 0 {
		vols, _, err := cache.NewResident(srcs, CacheSettings(c), int64(c.Data.MaxResidentGB*1e9))
		return vols, err
	}
	out := make([]data.TrainVolume, len(srcs))
	for i, src := range srcs {
		v, err := loadVolume(c, src)
		if err != nil {
			return nil, err
		}
		out[i] = data.MemoryVolume(v.id, v.img, v.pl, v.sl, v.norm)
	}
	return out, nil
}

// memVolume is a training case read whole.
type memVolume struct {
	id   string
	img  *data.Image
	pl   *data.Labels
	sl   data.Slicer
	norm *data.Normalizer
}

// loadVolume reads a case's image and pseudo-labels and decides slicing and normalisation.
func loadVolume(c *configs.Config, src cache.Source) (*memVolume, error) {
	lim := c.VolumeLimits()
	img, err := src.Case.LoadImage(lim)
	if err != nil {
		return nil, err
	}
	v := &memVolume{id: src.Case.ID, img: img}
	if v.sl, err = data.NewSlicer(&img.Geometry, c.Data.Axis()); err != nil {
		return nil, fmt.Errorf("%s: %w", src.Case.Image, err)
	}
	if v.norm, err = data.NewNormalizer(c.Data.IntensitySettings(), img.Data); err != nil {
		return nil, err
	}
	if src.PL == "" {
		return v, nil
	}
	if v.pl, err = data.LoadLabels(src.PL, lim); err != nil {
		return nil, err
	}
	if err := img.SameGrid(&v.pl.Geometry, 1e-3); err != nil {
		return nil, fmt.Errorf("%s: does not lie on the grid of %s: %w", src.PL, src.Case.Image, err)
	}
	return v, nil
}
