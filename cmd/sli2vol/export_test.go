package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/testpy"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/runs"
	"github.com/sli2vol/sli2vol/torchx"
)

// export → PyTorch (the repo's reference loads it, changes one bias, saves
// model.state_dict()) → import: the imported run carries PyTorch's weights.
func TestExportImportRoundTrip(t *testing.T) {
	py := testpy.Find(t, "torch")
	dir := tinyTrainedRun(t, 2)
	p := func(s string) string { return filepath.Join(dir, s) }
	if code, o, e := runCLI(t, "export", "--model", p("run"), "--format", "state-dict", "--out", p("m.pt")); code != 0 {
		t.Fatalf("export: %s %s", o, e)
	}
	if _, err := os.Stat(p("m.yaml")); err != nil {
		t.Fatal("no config beside the export")
	}
	_, file, _, _ := runtime.Caller(0)
	ref := filepath.Join(filepath.Dir(file), "..", "..", "bench", "pytorch")
	script := `
import json, sys, torch
sys.path.insert(0, sys.argv[1])
from sli2vol_ref import CFN
m = CFN(json.loads(sys.argv[2]))
m.load_state_dict(torch.load(sys.argv[3]), strict=True)
with torch.no_grad():
    m.encoder.conv_out.bias.add_(1.0)
torch.save(m.state_dict(), sys.argv[4])
print(json.dumps(m.encoder.conv_out.bias.tolist()))`
	cfgJSON := `{"pl": true, "radius": 2, "width": 4, "stages": 1, "blocks_per_stage": 1, "feature_dim": 8,
		"edge_radius": 3, "separate_pl_encoder": false, "geig": {"directions": 4, "scales": [1, 2, 3]}}`
	out, err := exec.Command(py, "-c", script, ref, cfgJSON, p("m.pt"), p("changed.pt")).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	var bias []float64
	if err := json.Unmarshal(out, &bias); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if code, o, e := runCLI(t, "import", "--config", p("m.yaml"), "--weights", p("changed.pt"), "--out", p("imported")); code != 0 {
		t.Fatalf("import: %s %s", o, e)
	}
	sd, err := torchx.LoadStateDict(p("imported/model.pt"))
	if err != nil {
		t.Fatal(err)
	}
	got := torchx.Float64s(sd["encoder.conv_out.bias"])
	for i := range bias {
		if d := got[i] - bias[i]; d > 1e-6 || d < -1e-6 {
			t.Fatalf("imported bias %v, PyTorch's %v", got, bias)
		}
	}
	// The imported run segments like any other.
	if code, _, e := runCLI(t, "evaluate", "--model", p("imported"), "--baselines=false", "--data", p("ds"), "--out", p("rep")); code != 0 {
		t.Fatalf("evaluate an imported run: %s", e)
	}
	// Its run.json records the slices the benchmark annotated: those of results.csv.
	f, _ := os.Open(p("rep/results.csv"))
	records, _ := csv.NewReader(f).ReadAll()
	f.Close()
	want := map[string][]int{}
	for _, r := range records[1:] { // case, method, label, structure, annotated_slice, ...
		s, _ := strconv.Atoi(r[4])
		if !slices.Contains(want[r[0]], s) {
			want[r[0]] = append(want[r[0]], s)
		}
	}
	prov, err := runs.ReadProvenance(p("rep"))
	if err != nil || prov.Kind != "evaluate" || len(want) == 0 || !reflect.DeepEqual(prov.Annotations, want) {
		t.Fatalf("report run.json: annotations %v, results.csv %v (%v)", prov.Annotations, want, err)
	}
	// Weights of another architecture are refused.
	os.WriteFile(p("wide.yaml"), []byte("model: {mode: sli2vol+, width: 8, stages: 1, blocks_per_stage: 1, feature_dim: 8, radius: 2}\n"), 0o644)
	code, _, e := runCLI(t, "import", "--config", p("wide.yaml"), "--weights", p("changed.pt"), "--out", p("bad"))
	if code != 2 || !strings.Contains(e, "changed.pt") || !strings.Contains(e, "shape") {
		t.Fatalf("mismatched import: exit %d %s", code, e)
	}
	if code, _, _ := runCLI(t, "export", "--model", p("run"), "--format", "onnx", "--out", p("x.pt")); code != 2 {
		t.Fatal("an unknown export format was accepted")
	}
}

// The TorchScript export, run by Python's torch.jit.load on a real CT slice pair (the
// phantom when the real data is absent), gives Go's propagation step to 1e-4.
func TestTorchScriptExportOnRealSlices(t *testing.T) {
	py := testpy.Find(t, "torch")
	dir := tinyTrainedRun(t, 3)
	p := func(s string) string { return filepath.Join(dir, s) }
	if code, o, e := runCLI(t, "export", "--model", p("run"), "--format", "torchscript", "--out", p("step.pt")); code != 0 {
		t.Fatalf("export: %s %s", o, e)
	}
	imgPath, labPath := p("ds/imagesTr/phantom_000.nii.gz"), p("ds/labelsTr/phantom_000.nii.gz")
	if real := filepath.Join("..", "..", "..", "shared", "data", "real", "ts-abdomen-ct"); dirExists(real) {
		imgPath, labPath = filepath.Join(real, "imagesTr", "ts_abdomen_001.nii.gz"), filepath.Join(real, "labelsTr", "ts_abdomen_001.nii.gz")
	}
	img, lab, err := data.LoadCase(data.Case{Image: imgPath, Label: labPath}, data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := data.NewSlicer(&img.Geometry, -1)
	h, w := s.Size()
	win := data.Window{Lo: -300, Up: 400}
	n := s.Len() / 2
	a, b := data.Slice(s, img.Data, n), data.Slice(s, img.Data, n+1)
	win.Apply(a, a)
	win.Apply(b, b)
	l := data.Slice(s, lab.Data, n)
	mask := make([]float32, 2*h*w)
	for i, v := range l {
		if v == 5 || (v != 0 && strings.Contains(imgPath, "phantom")) { // liver, or any phantom structure
			mask[h*w+i] = 1
		} else {
			mask[i] = 1
		}
	}
	run, err := runs.LoadCFN(p("run"), "")
	if err != nil {
		t.Fatal(err)
	}
	m := run.Model
	at := torchx.FromFloat32(a, 1, 1, int64(h), int64(w))
	bt := torchx.FromFloat32(b, 1, 1, int64(h), int64(w))
	mt := torchx.FromFloat32(mask, 1, 2, int64(h), int64(w))
	var want []float32
	torchx.NoGrad(func() {
		models.SetTraining(m, false)
		fa := m.SliceFeatures(torchx.MulScalar(at, 255))
		fb := m.SliceFeatures(torchx.MulScalar(bt, 255))
		want = torchx.Float32s(m.Propagate(m.Affinity(fb, fa), mt))
	})
	if err := torchx.SaveStateDict(p("in.pt"), map[string]torchx.Tensor{"a": at, "b": bt, "m": mt}); err != nil {
		t.Fatal(err)
	}
	script := `
import json, sys, torch
mod = torch.jit.load(sys.argv[1])
x = torch.load(sys.argv[2])
with torch.no_grad():
    print(json.dumps(mod(x["a"], x["b"], x["m"]).flatten().tolist()))`
	out, err := exec.Command(py, "-c", script, p("step.pt"), p("in.pt")).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%.500s", err, out)
	}
	var got []float64
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(want) {
		t.Fatalf("%d values vs %d (%v)", len(got), len(want), err)
	}
	var worst float64
	for i := range got {
		worst = math.Max(worst, math.Abs(got[i]-float64(want[i])))
	}
	t.Logf("%s slices %d/%d (%d×%d): max |Go − TorchScript| = %.2e", filepath.Base(imgPath), n, n+1, h, w, worst)
	if worst > 1e-4 {
		t.Fatalf("TorchScript differs from Go by %g", worst)
	}
}

func dirExists(p string) bool { st, err := os.Stat(p); return err == nil && st.IsDir() }

// tinyTrainedRun trains a tiny Sli2Vol+ (affinity radius r) on one phantom, using the
// phantom's labels as pseudo-labels; the run is dir/run, the data dir/ds.
func tinyTrainedRun(t *testing.T, r int) string {
	dir := t.TempDir()
	p := func(s string) string { return filepath.Join(dir, s) }
	if err := data.WritePhantomDataset(p("ds"), 1, 1, [3]int{32, 32, 10}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := p("c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("device: cpu\ndata: {resize_range: [32, 34], crop: 32}\n"+
		"model: {mode: sli2vol+, width: 4, stages: 1, blocks_per_stage: 1, feature_dim: 8, radius: %d}\n"+
		"train: {batch_size: 4, epochs: 1}\n", r)), 0o644)
	if code, o, e := runCLI(t, "train", "--config", cfg, "--data", p("ds"), "--pseudo", p("ds"), "--out", p("run")); code != 0 {
		t.Fatalf("train: %s %s", o, e)
	}
	return dir
}
