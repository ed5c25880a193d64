package configs

import (
	"fmt"
	"strconv"

	"github.com/sli2vol/sli2vol/data"
)

// The data package takes its own small settings types; these translate the config's sections
// into them, so data never sees a Config.

// IntensitySettings are the normalisation settings of the data section.
func (d Data) IntensitySettings() data.IntensityConfig {
	return data.IntensityConfig{Mode: d.Intensity, CTWindow: d.CTWindow, JitterLow: d.CTWindowJitterLow,
		JitterUp: d.CTWindowJitterUp, MRIPercentiles: d.MRIPercentiles}
}

// Axis is the configured slice axis: −1 for auto (from the affine).
func (d Data) Axis() int {
	if a, err := strconv.Atoi(d.SliceAxis); err == nil {
		return a
	}
	return -1
}

// PairSettings are the pair sampler's settings: the data section and the seed.
func (c *Config) PairSettings() data.PairConfig {
	return data.PairConfig{Strides: c.Data.PairStrides, SwapProb: c.Data.SwapProb, ResizeRange: c.Data.ResizeRange,
		Crop: c.Data.Crop, Seed: c.Seed, PL: c.Model.Mode.UsesPL(), VolumeGroup: c.Data.VolumeGroup}
}

// Ahead is how training batches are prepared ahead of the step.
func (d Data) Ahead() data.Prefetch { return data.Prefetch{Workers: d.Workers, Depth: d.Prefetch} }

// VolumeLimits is the configured resource limit on what a reader accepts.
func (c *Config) VolumeLimits() data.Limits { return data.Limits{MaxVoxels: c.Limits.MaxVoxels} }

// CacheKeys are the settings a preprocessed cache's contents depend on, by config key: the
// slicing and the intensity normalisation (the training jitter is drawn at sampling time,
// so it is not among them).
func (c *Config) CacheKeys() map[string]string {
	d := c.Data
	return map[string]string{
		"data.slice_axis":      d.SliceAxis,
		"data.intensity":       d.Intensity,
		"data.ct_window":       fmt.Sprint(d.CTWindow),
		"data.mri_percentiles": fmt.Sprint(d.MRIPercentiles),
	}
}
