package train

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/infer"
	"github.com/sli2vol/sli2vol/internal/testpy"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// tinyUNETRConfig: a UNETR++ a 2-core CPU trains in a minute or two.
func tinyUNETRConfig(t *testing.T) *configs.Config {
	c := configs.Defaults()
	c.Device = "cpu"
	u := &c.UNETR
	u.PatchSize, u.EmbedPatch = [3]int{16, 32, 32}, [3]int{2, 4, 4}
	u.FeatureSize, u.Dims, u.Depths, u.Heads = 8, [4]int{16, 32, 64, 128}, [4]int{1, 1, 1, 1}, 4
	u.ProjSize, u.DecoderProjSize, u.DecoderDepth = [4]int{32, 32, 16, 8}, 32, 1
	u.Epochs, u.IterationsPerEpoch, u.BatchSize, u.CheckpointEvery = 12, 50, 2, 100
	// AdamW for the CPU test: the paper's SGD (lr 0.01, momentum 0.99) needs thousands of
	// steps to get going (600 steps reach a mean Dice of 0.45 here, AdamW 0.95).
	u.Optimizer, u.LR, u.WeightDecay = configs.OptimizerAdamW, 1e-3, 0
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// phantomSegVolume is one phantom laid out D×H×W along its slice axis, labels as ids.
func phantomSegVolume(t *testing.T, shape [3]int, seed int64) (*data.SegVolume, *data.Image, data.Slicer) {
	img, lab, g := data.Phantom(shape, seed)
	s, err := data.NewSlicer(&g, -1)
	if err != nil {
		t.Fatal(err)
	}
	im := &data.Image{Geometry: g, Data: img}
	n, _ := data.NewNormalizer(data.IntensityConfig{Mode: "ct", CTWindow: [2]float64{-300, 400}}, img)
	return &data.SegVolume{ID: "p", Shape: data.SegShape(s), Image: data.SegImage(im, s, n.Test()), Labels: data.ToSliceOrder(s, lab)}, im, s
}

// A small UNETR++ trained on one phantom volume's labels segments that volume (sliding
// window, Gaussian weighting, mirroring) with a mean Dice above 0.9.
func TestUNETRPPOverfitsPhantom(t *testing.T) {
	c := tinyUNETRConfig(t)
	v, _, _ := phantomSegVolume(t, [3]int{48, 48, 24}, 3)
	dir := t.TempDir()
	t0 := time.Now()
	res, err := TrainUNETRPP(c, SegOptions{Vols: []*data.SegVolume{v}, RunOptions: RunOptions{Dir: dir, Device: "cpu"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d steps in %v: loss %.3f → %.3f", res.Steps, time.Since(t0), res.FirstLoss, res.LastLoss)
	loaded, err := runs.LoadUNETR(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	m, classes := loaded.Model, loaded.Classes
	net := &infer.SegNet{Cfg: c, Model: m, Classes: classes, Device: "cpu"}
	pred, err := net.Window().Predict(v.Image, v.Shape, len(classes.IDs), func(x torchx.Tensor) torchx.Tensor { return m.Forward(x, false)[0] })
	if err != nil {
		t.Fatal(err)
	}
	classes.ToIDs(pred)
	var mean float64
	for _, s := range data.PhantomStructures {
		d := infer.Dice(pred, v.Labels, s.ID)
		t.Logf("%s: Dice %.3f", s.Name, d)
		mean += d / float64(len(data.PhantomStructures))
	}
	if mean < 0.9 {
		t.Fatalf("mean Dice %.3f on the training volume, want > 0.9", mean)
	}
}

// A run stopped after 3 steps and resumed ends with exactly the weights of an uninterrupted
// 6-step run (paper optimizer: SGD with Nesterov momentum, poly schedule), and FS-SS
// volumes (one known slice) train without error.
func TestUNETRPPResumeExact(t *testing.T) {
	c := tinyUNETRConfig(t)
	c.UNETR.Optimizer, c.UNETR.LR = configs.OptimizerSGD, 0.01
	c.UNETR.Epochs, c.UNETR.IterationsPerEpoch, c.UNETR.CheckpointEvery = 3, 2, 3
	v, _, _ := phantomSegVolume(t, [3]int{48, 48, 24}, 5)
	full, part := t.TempDir(), t.TempDir()
	if _, err := TrainUNETRPP(c, SegOptions{Vols: []*data.SegVolume{v}, RunOptions: RunOptions{Dir: full, Device: "cpu"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := TrainUNETRPP(c, SegOptions{Vols: []*data.SegVolume{v}, RunOptions: RunOptions{Dir: part, Device: "cpu", StopAfter: 3}}); err != nil {
		t.Fatal(err)
	}
	if _, err := TrainUNETRPP(c, SegOptions{Vols: []*data.SegVolume{v}, RunOptions: RunOptions{Dir: part, Device: "cpu"}}); err == nil {
		t.Fatal("a second run into the same folder without --resume was accepted")
	}
	if _, err := TrainUNETRPP(c, SegOptions{Vols: []*data.SegVolume{v}, RunOptions: RunOptions{Dir: part, Device: "cpu", Resume: true}}); err != nil {
		t.Fatal(err)
	}
	a, b := readModel(t, full), readModel(t, part)
	for k, va := range a {
		vb := b[k]
		for i := range va {
			if va[i] != vb[i] {
				t.Fatalf("%s[%d]: %v uninterrupted, %v resumed", k, i, va[i], vb[i])
			}
		}
	}
	fsss := *v
	fsss.Slices = []int{v.Shape[0] / 2}
	res, err := TrainUNETRPP(c, SegOptions{Vols: []*data.SegVolume{&fsss}, RunOptions: RunOptions{Dir: t.TempDir(), Device: "cpu"}})
	if err != nil || res.Steps != 6 {
		t.Fatalf("FS-SS run: %d steps, %v", res.Steps, err)
	}
}

// A UNETR++ run exports as a state dict that the PyTorch reference loads with strict=True
// and that reproduces Go's logits; TorchScript export refuses it with a message.
func TestUNETRPPExportLoadsInPyTorch(t *testing.T) {
	py := testpy.Find(t, "torch")
	c := tinyUNETRConfig(t)
	c.UNETR.Epochs, c.UNETR.IterationsPerEpoch = 1, 2
	v, _, _ := phantomSegVolume(t, [3]int{48, 48, 24}, 7)
	run := t.TempDir()
	if _, err := TrainUNETRPP(c, SegOptions{Vols: []*data.SegVolume{v}, RunOptions: RunOptions{Dir: run, Device: "cpu"}}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "unetr.pt")
	if err := runs.ExportStateDict(run, out); err != nil {
		t.Fatal(err)
	}
	loaded, err := runs.LoadUNETR(run, "")
	if err != nil {
		t.Fatal(err)
	}
	m := loaded.Model
	cj, err := os.ReadFile(strings.TrimSuffix(out, ".pt") + ".classes.json")
	if err != nil || !strings.Contains(string(cj), "\"ids\"") {
		t.Fatalf("classes file: %v %s", err, cj)
	}
	x := torchx.Randn([]int64{1, 1, 16, 32, 32}, torchx.Float32, "cpu")
	var want []float32
	torchx.NoGrad(func() { want = torchx.Float32s(m.Forward(x, false)[0]) })
	in := filepath.Join(t.TempDir(), "x.pt")
	torchx.SaveStateDict(in, map[string]torchx.Tensor{"x": x})
	net, _ := json.Marshal(m.Config.ReferenceJSON())
	res := filepath.Join(t.TempDir(), "y.pt")
	script := `import json, sys, torch
sys.path.insert(0, sys.argv[1])
from unetrpp_ref import UNETRPP
net = UNETRPP(json.loads(sys.argv[2]))
net.load_state_dict(torch.load(sys.argv[3], weights_only=True), strict=True)
net.eval()
with torch.no_grad():
    torch.save({"y": net(torch.load(sys.argv[4])["x"])[0]}, sys.argv[5])
`
	_, file, _, _ := runtime.Caller(0)
	refDir := filepath.Join(filepath.Dir(file), "..", "bench", "pytorch")
	if b, err := exec.Command(py, "-c", script, refDir, string(net), out, in, res).CombinedOutput(); err != nil {
		t.Fatalf("PyTorch could not load the export: %v\n%s", err, b)
	}
	got, err := torchx.LoadStateDict(res)
	if err != nil {
		t.Fatal(err)
	}
	y := torchx.Float32s(got["y"])
	for i := range want {
		if d := math.Abs(float64(y[i] - want[i])); d > 1e-4 {
			t.Fatalf("logit %d: PyTorch %v, Go %v", i, y[i], want[i])
		}
	}
	if err := runs.ExportTorchScript(run, filepath.Join(t.TempDir(), "ts.pt")); err == nil || !strings.Contains(err.Error(), "UNETR++ run") {
		t.Fatalf("TorchScript export of a UNETR++ run: %v", err)
	}
}
