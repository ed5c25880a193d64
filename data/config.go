package data

import (
	"strconv"

	"github.com/sli2vol/sli2vol/configs"
)

// IntensityFrom takes the normalisation settings from a config's data section.
func IntensityFrom(d configs.Data) IntensityConfig {
	return IntensityConfig{Mode: d.Intensity, CTWindow: d.CTWindow, JitterLow: d.CTWindowJitterLow,
		JitterUp: d.CTWindowJitterUp, MRIPercentiles: d.MRIPercentiles}
}

// PairsFrom takes the pair sampler's settings from a config.
func PairsFrom(c *configs.Config) PairConfig {
	return PairConfig{Strides: c.Data.PairStrides, SwapProb: c.Data.SwapProb, ResizeRange: c.Data.ResizeRange,
		Crop: c.Data.Crop, Seed: c.Seed}
}

// SliceAxisFrom is the configured slice axis: −1 for auto (from the affine).
func SliceAxisFrom(d configs.Data) int {
	if a, err := strconv.Atoi(d.SliceAxis); err == nil {
		return a
	}
	return -1
}

// LimitsFrom is the configured resource limit.
func LimitsFrom(c *configs.Config) Limits { return Limits{MaxVoxels: c.Limits.MaxVoxels} }
