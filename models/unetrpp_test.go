package models

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/internal/testpy"
	"github.com/sli2vol/sli2vol/torchx"
)

// tinyUNETRPP is small enough for a CPU test yet has every part: 2 heads, one block per
// stage, deep supervision, and a stage-3 grid of one token per axis.
func tinyUNETRPP() UNETRPPConfig {
	return UNETRPPConfig{
		InChannels: 1, Classes: 3, PatchSize: [3]int{16, 32, 32}, EmbedPatch: [3]int{2, 4, 4},
		FeatureSize: 4, Dims: [4]int{8, 16, 32, 64}, Depths: [4]int{1, 1, 1, 1}, Heads: 2,
		ProjSize: [4]int{8, 8, 8, 4}, DecoderProjSize: 8, DecoderDepth: 1, Dropout: 0.1, DeepSupervision: true,
	}
}

// PaperUNETRPP is the reference synapse configuration (patch 64×128×128, dims 32–256,
// depths 3, 4 heads).
func paperUNETRPP(classes int) UNETRPPConfig {
	return UNETRPPConfig{
		InChannels: 1, Classes: classes, PatchSize: [3]int{64, 128, 128}, EmbedPatch: [3]int{2, 4, 4},
		FeatureSize: 16, Dims: [4]int{32, 64, 128, 256}, Depths: [4]int{3, 3, 3, 3}, Heads: 4,
		ProjSize: [4]int{64, 64, 64, 32}, DecoderProjSize: 64, DecoderDepth: 3, Dropout: 0.1, DeepSupervision: true,
	}
}

func eachBlock(m *UNETRPP, f func(*TransformerBlock)) {
	for _, st := range m.Stages {
		for _, b := range st {
			f(b)
		}
	}
	for _, d := range m.Decoders {
		for _, b := range d.Blocks {
			f(b)
		}
	}
}

// The paper-scale network has the parameter count the UNETR++ paper reports for Synapse
// (42.96 M, rounded; with 14 classes) and exactly the count of the repo's PyTorch reference
// built at the same size, and E = F is one tensor.
func TestUNETRPPPaperParamCount(t *testing.T) {
	torchx.ManualSeed(1)
	m, err := NewUNETRPP(paperUNETRPP(14))
	if err != nil {
		t.Fatal(err)
	}
	n := ParamCount(m)
	t.Logf("paper UNETR++: %d parameters", n)
	if math.Abs(float64(n)/1e6-42.96) > 0.01 {
		t.Fatalf("%d parameters, the UNETR++ paper reports 42.96 M", n)
	}
	if py, ok := testpy.Lookup("torch"); ok {
		cfgPath := filepath.Join(t.TempDir(), "paper.json")
		js, _ := json.Marshal(paperUNETRPP(14).ReferenceJSON())
		os.WriteFile(cfgPath, js, 0o644)
		res, err := exec.Command(py, refScript(t, "unetrpp_ref.py"), "count", cfgPath).CombinedOutput()
		var info struct{ Params int64 }
		if err != nil || json.Unmarshal(res, &info) != nil || info.Params != n {
			t.Fatalf("PyTorch reference at the paper size: %s (%v); Go counts %d", res, err, n)
		}
	} else {
		t.Log("no python3 with torch: the reference's count is not compared")
	}
	sd := StateDict(m)
	e, f := sd["unetr_pp_encoder.stages.0.0.epa_block.E.weight"], sd["unetr_pp_encoder.stages.0.0.epa_block.F.weight"]
	if e.T != f.T {
		t.Fatal("E and F are separate tensors; the reference shares them")
	}
	if got := e.Shape(); got[0] != 64 || got[1] != 32*32*32 {
		t.Fatalf("stage-1 E projects %v, want 64×32768", got)
	}
	// One 64×128×128 patch through the paper-size network (eval, no grad): full-resolution
	// logits.
	SetTraining(m, false)
	var out []Tensor
	torchx.NoGrad(func() { out = m.Forward(torchx.Zeros([]int64{1, 1, 64, 128, 128}, torchx.Float32, "cpu"), false) })
	if len(out) != 1 || !equalShape(out[0].Shape(), []int64{1, 14, 64, 128, 128}) {
		t.Fatalf("paper-size output %d tensors, first %v", len(out), out[0].Shape())
	}
}

func TestUNETRPPShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  UNETRPPConfig
		b    int64
	}{
		{"tiny", tinyUNETRPP(), 2},
		{"anisotropic-embed", func() UNETRPPConfig {
			c := tinyUNETRPP()
			c.PatchSize, c.EmbedPatch, c.Classes, c.DeepSupervision = [3]int{8, 32, 16}, [3]int{1, 4, 2}, 2, false
			return c
		}(), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			torchx.ManualSeed(2)
			m, err := NewUNETRPP(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			p := tc.cfg.PatchSize
			x := torchx.Randn([]int64{tc.b, 1, int64(p[0]), int64(p[1]), int64(p[2])}, torchx.Float32, "cpu")
			var outs []Tensor
			torchx.NoGrad(func() { outs = m.Forward(x, true) })
			want := [][3]int{p}
			if tc.cfg.DeepSupervision {
				want = append(want, tc.cfg.StageGrid(0), tc.cfg.StageGrid(1))
			}
			if len(outs) != len(want) {
				t.Fatalf("%d outputs, want %d", len(outs), len(want))
			}
			for i, o := range outs {
				w := []int64{tc.b, int64(tc.cfg.Classes), int64(want[i][0]), int64(want[i][1]), int64(want[i][2])}
				if got := o.Shape(); !equalShape(got, w) {
					t.Fatalf("output %d: shape %v, want %v", i, got, w)
				}
			}
			// A patch of another size is refused with a message, not a crash.
			err = torchx.Try(func() { m.Forward(torchx.Zeros([]int64{1, 1, 8, 8, 8}, torchx.Float32, "cpu"), false) })
			if err == nil || !strings.Contains(err.Error(), "UNETR++ input") {
				t.Fatalf("wrong patch size: %v", err)
			}
		})
	}
	bad := tinyUNETRPP()
	bad.PatchSize = [3]int{16, 30, 32}
	if _, err := NewUNETRPP(bad); err == nil || !strings.Contains(err.Error(), "multiple of 8") {
		t.Fatalf("patch 30 accepted: %v", err)
	}
}

func equalShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A Go-saved state dict loaded into the repo's PyTorch reference reproduces one EPA block,
// one transformer block, the whole network in eval and training mode (deep supervision,
// batch statistics) and two gradients, to 1e-4.
func TestUNETRPPPyTorchParity(t *testing.T) {
	py := testpy.Find(t, "torch")
	ref := refScript(t, "unetrpp_ref.py")
	dir := t.TempDir()
	cfg := tinyUNETRPP()
	torchx.ManualSeed(3)
	m, err := NewUNETRPP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	perturbUNETRPP(m)
	weights := filepath.Join(dir, "w.pt")
	if err := torchx.SaveStateDict(weights, StateDict(m)); err != nil {
		t.Fatal(err)
	}
	g0 := cfg.StageGrid(0)
	n0 := int64(g0[0] * g0[1] * g0[2])
	inputs := map[string]Tensor{
		"tokens": torchx.Randn([]int64{2, n0, int64(cfg.Dims[0])}, torchx.Float32, "cpu"),
		"stage0": torchx.Randn([]int64{2, int64(cfg.Dims[0]), int64(g0[0]), int64(g0[1]), int64(g0[2])}, torchx.Float32, "cpu"),
		"x":      torchx.Randn([]int64{2, 1, 16, 32, 32}, torchx.Float32, "cpu"),
	}
	in := filepath.Join(dir, "in.pt")
	if err := torchx.SaveStateDict(in, inputs); err != nil {
		t.Fatal(err)
	}
	goOut := map[string][]float32{}
	block := m.Stages[0][0]
	torchx.NoGrad(func() {
		SetTraining(m, false)
		goOut["epa"] = torchx.Float32s(block.EPA.Forward(inputs["tokens"]))
		goOut["block"] = torchx.Float32s(block.Forward(inputs["stage0"]))
		for i, o := range m.Forward(inputs["x"], false) {
			goOut["eval"+string(rune('0'+i))] = torchx.Float32s(o)
		}
	})
	SetTraining(m, true)
	m.SetChannelDropout(0)
	eachBlock(m, func(b *TransformerBlock) { b.EPA.AttnDrop = 0 })
	logits := m.Forward(inputs["x"], true)
	var loss Tensor
	for i, o := range logits {
		goOut["train"+string(rune('0'+i))] = torchx.Float32s(o)
		l := torchx.Mean(torchx.Mul(o, o), false)
		if i == 0 {
			loss = l
		} else {
			loss = torchx.Add(loss, l)
		}
	}
	torchx.Backward(loss)
	goOut["grad_qkvv"] = torchx.Float32s(torchx.Grad(block.EPA.QKVV.Weight))
	goOut["grad_stem"] = torchx.Float32s(torchx.Grad(m.Downsample[0].Conv.Weight))

	refCfg := cfg
	refCfg.Dropout = 0
	cfgJSON, _ := json.Marshal(refCfg.ReferenceJSON())
	pyOut := runReference(t, py, ref, dir, cfgJSON, weights, in, ParamCount(m))
	compareUNETRPPReference(t, goOut, pyOut)
}

// perturbUNETRPP moves every tensor of m away from its init (γ = 1e-6 would hide the
// attention, zero position embeddings and unit temperatures would hide their wiring).
func perturbUNETRPP(m Module) {
	m.Visit("", &Visitor{Tensor: func(name string, p *Tensor, buffer bool) {
		switch {
		case strings.HasSuffix(name, "num_batches_tracked"):
		case strings.HasSuffix(name, "running_var"):
			torchx.CopyInto(*p, torchx.AddScalar(torchx.Rand(p.Shape(), torchx.Float32, "cpu"), 0.5))
		case strings.HasSuffix(name, "gamma") || strings.Contains(name, "temperature"):
			torchx.NoGrad(func() { torchx.CopyInto(*p, torchx.AddScalar(torchx.Rand(p.Shape(), torchx.Float32, "cpu"), 0.5)) })
		default:
			torchx.NoGrad(func() {
				torchx.CopyInto(*p, torchx.Add(*p, torchx.MulScalar(torchx.Randn(p.Shape(), torchx.Float32, "cpu"), 0.05)))
			})
		}
	}})
}

// compareUNETRPPReference checks every Go output against the reference's, to 1e-4 of its
// scale.
func compareUNETRPPReference(t *testing.T, goOut map[string][]float32, pyOut map[string]Tensor) {
	t.Helper()
	if len(pyOut) != len(goOut) {
		t.Fatalf("reference wrote %d outputs, Go has %d", len(pyOut), len(goOut))
	}
	for name, g := range goOut {
		scale := 0.0
		for _, v := range torchx.Float32s(pyOut[name]) {
			scale = max(scale, abs64(float64(v)))
		}
		if worst := maxDiff(t, name, g, pyOut[name]); worst > 1e-4*max(1, scale) {
			t.Errorf("%s differs from PyTorch by %g", name, worst)
		}
	}
}
