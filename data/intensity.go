package data

import (
	"fmt"
	"math/rand"
	"sort"
)

// Intensity normalisation maps a volume to [0, 1]: CT by a Hounsfield window (as the paper's
// code does), other images (MRI) by percentiles, since their units are arbitrary.

// IntensityConfig chooses and parameterises the normalisation (configs' data section).
type IntensityConfig struct {
	Mode           string     // auto | ct | mri
	CTWindow       [2]float64 // test-time window, HU
	JitterLow      [2]float64 // training: window low end drawn from this range
	JitterUp       [2]float64 // training: window high end drawn from this range
	MRIPercentiles [2]float64
}

// DefaultIntensity is the paper code's setting.
var DefaultIntensity = IntensityConfig{Mode: "auto", CTWindow: [2]float64{-300, 400},
	JitterLow: [2]float64{-400, -200}, JitterUp: [2]float64{300, 500}, MRIPercentiles: [2]float64{0.5, 99.5}}

// LooksLikeCT reports whether intensities are Hounsfield-like: air near −1000 (the 0.5th
// percentile at or below −500) and nothing beyond dense bone/metal range.
func LooksLikeCT(v []float32) bool {
	lo, hi := Percentiles(v, 0.5, 100)
	return lo <= -500 && hi <= 5000
}

// Percentiles returns the p and q percentiles (0–100) of v by linear interpolation.
func Percentiles(v []float32, p, q float64) (float32, float32) {
	if len(v) == 0 {
		return 0, 0
	}
	// Large volumes: a fixed, evenly spaced sample of at most 2M voxels is exact enough.
	step := max(1, len(v)/2_000_000)
	s := make([]float32, 0, len(v)/step+1)
	for i := 0; i < len(v); i += step {
		s = append(s, v[i])
	}
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(p float64) float32 {
		x := p / 100 * float64(len(s)-1)
		i := int(x)
		if i >= len(s)-1 {
			return s[len(s)-1]
		}
		f := float32(x - float64(i))
		return s[i]*(1-f) + s[i+1]*f
	}
	return at(p), at(q)
}

// Window clips to [lo, up] and scales to [0, 1].
type Window struct{ Lo, Up float32 }

// Apply normalises v into dst (which may be v).
func (w Window) Apply(v, dst []float32) {
	d := w.Up - w.Lo
	for i, x := range v {
		x = min(max(x, w.Lo), w.Up)
		dst[i] = (x - w.Lo) / d
	}
}

// Normalizer picks the window of one volume.
type Normalizer struct {
	cfg  IntensityConfig
	isCT bool
	mri  Window
}

// NewNormalizer inspects the volume once (mode auto: CT if it looks like HU).
func NewNormalizer(cfg IntensityConfig, v []float32) (*Normalizer, error) {
	n := &Normalizer{cfg: cfg}
	switch cfg.Mode {
	case "ct":
		n.isCT = true
	case "mri":
	case "auto", "":
		n.isCT = LooksLikeCT(v)
	default:
		return nil, fmt.Errorf("intensity mode %q: want auto, ct or mri", cfg.Mode)
	}
	if !n.isCT {
		lo, hi := Percentiles(v, cfg.MRIPercentiles[0], cfg.MRIPercentiles[1])
		if hi <= lo {
			hi = lo + 1
		}
		n.mri = Window{lo, hi}
	}
	return n, nil
}

// NormState is what a Normalizer decided from its volume: enough to rebuild it without the
// voxels (a cache stores it beside the slices).
type NormState struct {
	CT  bool       `json:"ct"`
	MRI [2]float32 `json:"mri_window"`
}

// State is what n decided.
func (n *Normalizer) State() NormState {
	return NormState{CT: n.isCT, MRI: [2]float32{n.mri.Lo, n.mri.Up}}
}

// RestoreNormalizer rebuilds a Normalizer from its state.
func RestoreNormalizer(cfg IntensityConfig, st NormState) *Normalizer {
	return &Normalizer{cfg: cfg, isCT: st.CT, mri: Window{st.MRI[0], st.MRI[1]}}
}

// IsCT reports the chosen mode.
func (n *Normalizer) IsCT() bool { return n.isCT }

// Test is the fixed window for inference.
func (n *Normalizer) Test() Window {
	if n.isCT {
		return Window{float32(n.cfg.CTWindow[0]), float32(n.cfg.CTWindow[1])}
	}
	return n.mri
}

// Train draws a jittered CT window (the paper code's augmentation); MRI keeps its window.
func (n *Normalizer) Train(r *rand.Rand) Window {
	if !n.isCT {
		return n.mri
	}
	u := func(a [2]float64) float32 { return float32(a[0] + r.Float64()*(a[1]-a[0])) }
	return Window{u(n.cfg.JitterLow), u(n.cfg.JitterUp)}
}
