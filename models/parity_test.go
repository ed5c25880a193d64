package models

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/sli2vol/sli2vol/internal/testpy"
	"github.com/sli2vol/sli2vol/torchx"
)

// refScript finds bench/pytorch/NAME from the package folder (where go test and a carried
// test binary run) or from this file's build-time location.
func refScript(t *testing.T, name string) string {
	_, file, _, _ := runtime.Caller(0)
	for _, p := range []string{
		filepath.Join("..", "bench", "pytorch", name),
		filepath.Join(filepath.Dir(file), "..", "bench", "pytorch", name),
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatalf("PyTorch reference bench/pytorch/%s missing", name)
	return ""
}

// A Go-saved state dict, loaded into the repo's own PyTorch reference (written from the
// paper, with unfold-based affinity and shift-based GEIG), reproduces Go's outputs to 1e-4:
// eval mode (running statistics) and training mode (batch statistics).
func TestPyTorchParity(t *testing.T) {
	py := testpy.Find(t, "torch")
	ref := refScript(t, "sli2vol_ref.py")
	for _, variant := range []string{"oeg-cfn", "oeg-cfn separate", "cfn"} {
		t.Run(variant, func(t *testing.T) {
			dir := t.TempDir()
			cfg := smallModelConfig(variant != "cfn")
			cfg.SeparatePLEncoder = variant == "oeg-cfn separate"
			torchx.ManualSeed(5)
			m, err := NewCFN(cfg)
			if err != nil {
				t.Fatal(err)
			}
			// Non-trivial running statistics, so eval mode is a real test.
			m.Visit("", &Visitor{Tensor: func(name string, p *Tensor, buffer bool) {
				switch filepath.Ext(name) {
				case ".running_mean":
					torchx.CopyInto(*p, torchx.MulScalar(torchx.Randn(p.Shape(), torchx.Float32, "cpu"), 0.1))
				case ".running_var":
					torchx.CopyInto(*p, torchx.AddScalar(torchx.Rand(p.Shape(), torchx.Float32, "cpu"), 0.5))
				}
			}})
			weights := filepath.Join(dir, "w.pt")
			if err := torchx.SaveStateDict(weights, StateDict(m)); err != nil {
				t.Fatal(err)
			}
			sJ, sJ1, plJ, plJ1 := shiftedPair(2, 20)
			inputs := map[string]Tensor{"s_j": sJ, "s_j1": sJ1}
			if cfg.PL {
				inputs["pl_j"], inputs["pl_j1"] = plJ, plJ1
			}
			in := filepath.Join(dir, "in.pt")
			if err := torchx.SaveStateDict(in, inputs); err != nil {
				t.Fatal(err)
			}
			goOut := map[string][]float32{}
			torchx.NoGrad(func() {
				SetTraining(m, false)
				goOut["recon_eval"] = torchx.Float32s(m.Reconstruct(sJ, sJ1, plJ, plJ1))
				goOut["features_eval"] = torchx.Float32s(m.SliceFeatures(sJ))
				SetTraining(m, true)
				goOut["recon_train"] = torchx.Float32s(m.Reconstruct(sJ, sJ1, plJ, plJ1))
			})
			cfgJSON, _ := json.Marshal(map[string]any{
				"pl": cfg.PL, "radius": cfg.Radius, "width": cfg.Width, "stages": cfg.Stages,
				"blocks_per_stage": cfg.BlocksPerStage, "feature_dim": cfg.FeatureDim, "edge_radius": cfg.EdgeRadius,
				"separate_pl_encoder": cfg.SeparatePLEncoder,
				"geig":                map[string]any{"directions": cfg.GEIGDirections, "scales": cfg.GEIGScales},
			})
			pyOut := runReference(t, py, ref, dir, cfgJSON, weights, in, ParamCount(m))
			for name, g := range goOut {
				if worst := maxDiff(t, name, g, pyOut[name]); worst > 1e-4 {
					t.Errorf("%s differs from PyTorch by %g", name, worst)
				}
			}
		})
	}
}

func abs64(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// runReference runs a reference script's parity mode on Go's weights and inputs and returns
// its outputs; the reference must count params parameters too.
func runReference(t *testing.T, py, ref, dir string, cfgJSON []byte, weights, in string, params int64) map[string]Tensor {
	t.Helper()
	cfgPath := filepath.Join(dir, "cfg.json")
	os.WriteFile(cfgPath, cfgJSON, 0o644)
	outPath := filepath.Join(dir, "out.pt")
	res, err := exec.Command(py, ref, "parity", cfgPath, weights, in, outPath).CombinedOutput()
	if err != nil {
		t.Fatalf("reference: %v\n%s", err, res)
	}
	var info struct{ Params int64 }
	if err := json.Unmarshal(res, &info); err != nil || info.Params != params {
		t.Fatalf("reference has %d parameters, Go %d (%s)", info.Params, params, res)
	}
	pyOut, err := torchx.LoadStateDict(outPath)
	if err != nil {
		t.Fatal(err)
	}
	return pyOut
}

// maxDiff is the largest |Go − PyTorch| of one output, logged with the output's scale.
func maxDiff(t *testing.T, name string, g []float32, py Tensor) float64 {
	t.Helper()
	p := torchx.Float32s(py)
	if len(p) != len(g) {
		t.Fatalf("%s: %d values from PyTorch, %d from Go", name, len(p), len(g))
	}
	var worst, scale float64
	for i := range g {
		worst = max(worst, abs64(float64(g[i]-p[i])))
		scale = max(scale, abs64(float64(p[i])))
	}
	t.Logf("%s: max |Go − PyTorch| = %.2e (max |value| %.2e)", name, worst, scale)
	return worst
}
