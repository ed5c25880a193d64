package configs

import (
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
		Crop: c.Data.Crop, Seed: c.Seed}
}

// VolumeLimits is the configured resource limit on what a reader accepts.
func (c *Config) VolumeLimits() data.Limits { return data.Limits{MaxVoxels: c.Limits.MaxVoxels} }
