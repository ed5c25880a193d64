package models

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sli2vol/sli2vol/internal/testpy"
	"github.com/sli2vol/sli2vol/torchx"
)

// The exported TorchScript module, run by Python's torch.jit.load, reproduces Go's
// propagation step (bottleneck, encoder, affinity, Eq. 4) on a slice pair to 1e-4.
func TestTorchScriptExportMatchesGo(t *testing.T) {
	py := testpy.Find(t, "torch")
	for _, pl := range []bool{true, false} {
		t.Run(map[bool]string{true: "oeg-cfn", false: "cfn"}[pl], func(t *testing.T) {
			torchx.ManualSeed(8)
			m, err := NewCFN(smallModelConfig(pl))
			if err != nil {
				t.Fatal(err)
			}
			// Non-trivial running statistics: export is for the eval network.
			m.Visit("", &Visitor{Tensor: func(name string, p *Tensor, buffer bool) {
				if filepath.Ext(name) == ".running_var" {
					torchx.CopyInto(*p, torchx.AddScalar(torchx.Rand(p.Shape(), torchx.Float32, "cpu"), 0.5))
				}
			}})
			SetTraining(m, false)
			dir := t.TempDir()
			path := filepath.Join(dir, "step.pt")
			if err := ExportTorchScript(m, 255, path); err != nil {
				t.Fatal(err)
			}
			sJ, sJ1, plJ, _ := shiftedPair(1, 24)
			mask := torchx.Cat([]Tensor{torchx.AddScalar(torchx.Neg(plJ), 1), plJ}, 1) // background, object
			var want []float32
			torchx.NoGrad(func() {
				fa := m.SliceFeatures(torchx.MulScalar(sJ, 255))
				fb := m.SliceFeatures(torchx.MulScalar(sJ1, 255))
				want = torchx.Float32s(m.Propagate(m.Affinity(fb, fa), mask))
			})
			// C++: libtorch's own loader runs it too.
			cpp, err := torchx.RunTorchScript(path, sJ, sJ1, mask)
			if err != nil {
				t.Fatalf("torch::jit::load: %v", err)
			}
			var cw float64
			for i, v := range torchx.Float32s(cpp) {
				cw = max(cw, abs64(float64(v-want[i])))
			}
			if cw > 1e-4 {
				t.Fatalf("C++-loaded module differs from Go by %g", cw)
			}
			in := filepath.Join(dir, "in.pt")
			if err := torchx.SaveStateDict(in, map[string]Tensor{"a": sJ, "b": sJ1, "m": mask}); err != nil {
				t.Fatal(err)
			}
			script := `
import json, sys, torch
mod = torch.jit.load(sys.argv[1])
x = torch.load(sys.argv[2])
with torch.no_grad():
    out = mod(x["a"], x["b"], x["m"])
print(json.dumps(out.flatten().tolist()))`
			out, err := exec.Command(py, "-c", script, path, in).CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			var got []float64
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%.300s: %v", out, err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d values from TorchScript, %d from Go", len(got), len(want))
			}
			var worst float64
			for i := range got {
				worst = max(worst, abs64(got[i]-float64(want[i])))
			}
			t.Logf("max |Go − TorchScript| = %.2e", worst)
			if worst > 1e-4 {
				t.Fatalf("TorchScript differs from Go by %g", worst)
			}
		})
	}
}
