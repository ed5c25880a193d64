package models

import (
	"math"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/torchx"
)

// paperCFNConfig is the network of configs/defaults.yaml (and the paper): w = 16, four
// stages of two blocks, 64 feature channels, R = 6, GEIG in four directions at three scales.
func paperCFNConfig(pl bool) CFNConfig {
	return CFNConfig{PL: pl, Width: 16, Stages: 4, BlocksPerStage: 2, FeatureDim: 64, Radius: 6, EdgeRadius: 3,
		GEIGDirections: 4, GEIGScales: []int{1, 2, 3}}
}

func smallModelConfig(pl bool) CFNConfig {
	c := paperCFNConfig(pl)
	c.Width, c.Stages, c.BlocksPerStage, c.FeatureDim, c.Radius = 4, 2, 2, 8, 2
	c.GEIGScales = []int{1, 2}
	return c
}

// encoderParams counts an encoder's parameters by hand: conv weights, BN γ/β, the output
// conv's bias; a 1×1 shortcut + BN wherever the width changes.
func encoderParams(in, w, stages, blocks, f int) int64 {
	n := in*w*49 + 2*w
	c := w
	for s := 0; s < stages; s++ {
		out := w << s
		for j := 0; j < blocks; j++ {
			n += c*out*9 + 2*out + out*out*9 + 2*out
			if c != out {
				n += c*out + 2*out
			}
			c = out
		}
	}
	return int64(n + c*f*9 + f)
}

func TestCFNNamesAndCounts(t *testing.T) {
	torchx.ManualSeed(0)
	m, err := NewCFN(smallModelConfig(true))
	if err != nil {
		t.Fatal(err)
	}
	sd := StateDict(m)
	for _, n := range []string{"encoder.conv1.weight", "encoder.bn1.running_mean", "encoder.bn1.num_batches_tracked",
		"encoder.layer1.0.conv1.weight", "encoder.layer1.1.bn2.bias", "encoder.layer2.0.downsample.0.weight",
		"encoder.layer2.0.downsample.1.running_var", "encoder.conv_out.bias"} {
		if _, ok := sd[n]; !ok {
			t.Errorf("state dict lacks %s", n)
		}
	}
	if _, ok := sd["encoder.layer1.0.downsample.0.weight"]; ok {
		t.Error("shortcut conv where the width does not change")
	}
	// GEIG with 4 directions × 2 scales + intensity = 9 input channels.
	if got, want := ParamCount(m), encoderParams(9, 4, 2, 2, 8); got != want {
		t.Errorf("sli2vol+ params %d, want %d", got, want)
	}
	c := smallModelConfig(true)
	c.SeparatePLEncoder = true
	m2, _ := NewCFN(c)
	if got, want := ParamCount(m2), 2*encoderParams(9, 4, 2, 2, 8); got != want {
		t.Errorf("separate PL encoder params %d, want %d", got, want)
	}
	m3, _ := NewCFN(smallModelConfig(false))
	if got, want := ParamCount(m3), encoderParams(48, 4, 2, 2, 8); got != want {
		t.Errorf("sli2vol params %d, want %d", got, want)
	}
	// Strict loading: another architecture's weights are refused with a clear message.
	err = LoadStateDict(m, StateDict(m3))
	if err == nil || !strings.Contains(err.Error(), "shape") {
		t.Errorf("loading sli2vol weights into sli2vol+: %v", err)
	}
	err = LoadStateDict(m, StateDict(m2))
	if err == nil || !strings.Contains(err.Error(), "unexpected [pl_encoder.") {
		t.Errorf("loading separate-encoder weights: %v", err)
	}
	// Same seed → same weights.
	torchx.ManualSeed(0)
	again, _ := NewCFN(smallModelConfig(true))
	a := torchx.Float32s(StateDict(again)["encoder.conv1.weight"])
	b := torchx.Float32s(sd["encoder.conv1.weight"])
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed, different weights")
		}
	}
}

// shiftedPair makes slice j and slice j+1 = slice j shifted right by one pixel, plus blob
// masks shifted the same way as pseudo-labels.
func shiftedPair(b, hw int) (sJ, sJ1, plJ, plJ1 torchx.Tensor) {
	img := func(shift int) ([]float32, []float32) {
		v := make([]float32, b*hw*hw)
		m := make([]float32, b*hw*hw)
		for n := 0; n < b; n++ {
			for y := 0; y < hw; y++ {
				for x := 0; x < hw; x++ {
					xx := float64(x - shift)
					cy, cx := float64(hw)/2+float64(3*n), float64(hw)/2
					r := math.Hypot(float64(y)-cy, xx-cx)
					v[(n*hw+y)*hw+x] = float32(0.5+0.4*math.Sin(xx/3+float64(n))*math.Cos(float64(y)/4)) * float32(1-0.5*math.Tanh(r-10))
					if r < 12 {
						m[(n*hw+y)*hw+x] = 1
					}
				}
			}
		}
		return v, m
	}
	a, am := img(0)
	c, cm := img(1)
	s := []int64{int64(b), 1, int64(hw), int64(hw)}
	return torchx.FromFloat32(a, s...), torchx.FromFloat32(c, s...), torchx.FromFloat32(am, s...), torchx.FromFloat32(cm, s...)
}

// OEG-CFN forward/backward on batch 2 at 64×64 on CPU; the reconstruction loss of a shifted
// slice falls over 20 AdamW steps.
func TestOEGCFNLearnsShift(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	torchx.ManualSeed(1)
	m, _ := NewCFN(smallModelConfig(true))
	opt := torchx.NewAdamW(Parameters(m), torchx.AdamWOpts{LR: 3e-3, WeightDecay: 0.005})
	sJ, sJ1, plJ, plJ1 := shiftedPair(2, 64)
	var first, last float64
	for step := 0; step < 20; step++ {
		opt.ZeroGrad()
		loss := torchx.L1Loss(m.Reconstruct(sJ, sJ1, plJ, plJ1), sJ1, torchx.ReduceMean)
		torchx.Backward(loss)
		opt.Step()
		v := torchx.Item(loss)
		if step == 0 {
			first = v
		}
		last = v
		torchx.GC()
	}
	t.Logf("L1 %.5f → %.5f", first, last)
	if !(last < 0.8*first) {
		t.Fatalf("loss %.5f → %.5f: did not fall by 20%%", first, last)
	}
}

func TestSummaryAddsUp(t *testing.T) {
	m, _ := NewCFN(smallModelConfig(true))
	var sum int64
	groups := map[string]bool{}
	for _, r := range Summarize(m) {
		sum += r.Params
		groups[r.Group] = true
	}
	if sum != ParamCount(m) || !groups["encoder.layer2"] || !groups["encoder.conv_out"] {
		t.Fatalf("summary %v sums to %d, want %d", Summarize(m), sum, ParamCount(m))
	}
}
