package torchx

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/internal/testpy"
)

func TestStateDictRoundTrip(t *testing.T) {
	sd := map[string]Tensor{
		"encoder.conv1.weight":            FromFloat32([]float32{1, 2, 3, 4, 5, 6}, 2, 3),
		"encoder.bn1.num_batches_tracked": FromInt64([]int64{12175}, 1),
		"scalar":                          FromFloat64([]float64{0.5}),
	}
	p := filepath.Join(t.TempDir(), "w.pt")
	if err := SaveStateDict(p, sd); err != nil {
		t.Fatal(err)
	}
	back, err := LoadStateDict(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 3 {
		t.Fatalf("%d entries back", len(back))
	}
	assertShape(t, "weight", back["encoder.conv1.weight"], 2, 3)
	assertClose(t, "weight", Float64s(back["encoder.conv1.weight"]), []float64{1, 2, 3, 4, 5, 6}, 0)
	if DTypeOf(back["encoder.bn1.num_batches_tracked"]) != Int64 || Int64s(back["encoder.bn1.num_batches_tracked"])[0] != 12175 {
		t.Fatal("int64 entry changed")
	}
	if len(back["scalar"].Shape()) != 0 {
		t.Fatalf("0-d tensor came back with shape %v", back["scalar"].Shape())
	}
	// Every truncation of a valid file is an error, never a crash (libtorch's reader can
	// segfault on truncated archives; the container is checked in Go first).
	full, _ := os.ReadFile(p)
	for cut := 0; cut < len(full); cut += max(1, len(full)/97) {
		if _, err := DecodeStateDict(full[:cut]); err == nil {
			t.Fatalf("a file truncated to %d of %d bytes decoded", cut, len(full))
		}
	}
	flipped := append([]byte(nil), full...)
	flipped[len(flipped)/3] ^= 0xff
	if _, err := DecodeStateDict(flipped); err == nil {
		t.Fatal("a corrupted byte went unnoticed")
	}
	bad := filepath.Join(t.TempDir(), "bad.pt")
	os.WriteFile(bad, []byte("PK garbage"), 0o644)
	if _, err := LoadStateDict(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("garbage file: %v", err)
	}
}

// interopScript reads the file Go wrote (argv[1]) and prints what it saw as JSON, and writes
// a dict (argv[2]) and a model.state_dict() (argv[3]) with torch.save for Go to read.
const interopScript = `
import json, sys, torch
# weights_only=True: the safe loader, PyTorch's default since 2.6.
sd = torch.load(sys.argv[1], weights_only=True)
assert isinstance(sd, dict), type(sd)
w = sd["layer1.0.conv1.weight"]
out = {"keys": sorted(sd.keys()), "shape": list(w.shape), "dtype": str(w.dtype),
       "values": w.flatten().tolist(), "n": int(sd["bn.num_batches_tracked"]),
       "ndtype": str(sd["bn.num_batches_tracked"].dtype),
       "mask": sd["mask"].tolist(), "mdtype": str(sd["mask"].dtype),
       "transposed": sd["transposed"].flatten().tolist(), "tshape": list(sd["transposed"].shape)}
torch.save({"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4,
            "b.ids": torch.tensor([12175, -1], dtype=torch.int64)}, sys.argv[2])
# What most PyTorch code saves: model.state_dict(), an OrderedDict with _metadata, holding a
# non-contiguous view and a bool buffer.
lin = torch.nn.Linear(3, 2)
with torch.no_grad():
    lin.weight.copy_(torch.arange(6, dtype=torch.float32).reshape(2, 3))
    lin.bias.copy_(torch.tensor([0.5, -0.5]))
lin.register_buffer("mask", torch.tensor([True, False, True]))
lin.register_buffer("wt", lin.weight.detach().t())  # 3×2 view with strides (1, 3)
torch.save(lin.state_dict(), sys.argv[3])
print(json.dumps(out))
`

// Go writes, Python's torch.load reads; Python's torch.save writes, Go reads.
func TestStateDictPythonInterop(t *testing.T) {
	py := testpy.Find(t, "torch")
	dir := t.TempDir()
	goFile := filepath.Join(dir, "from_go.pt")
	w := make([]float32, 2*3*4)
	for i := range w {
		w[i] = float32(i)*0.25 - 1
	}
	if err := SaveStateDict(goFile, map[string]Tensor{
		"layer1.0.conv1.weight":  FromFloat32(w, 2, 3, 4),
		"bn.num_batches_tracked": FromInt64([]int64{7}),
		"mask":                   FromUint8([]uint8{0, 1, 255}, 3),
		"transposed":             Permute(FromFloat64([]float64{1, 2, 3, 4, 5, 6}, 2, 3), 1, 0),
	}); err != nil {
		t.Fatal(err)
	}
	pyFile := filepath.Join(dir, "from_py.pt")
	sdFile := filepath.Join(dir, "state_dict.pt")
	out, err := exec.Command(py, "-c", interopScript, goFile, pyFile, sdFile).CombinedOutput()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	checkPythonSaw(t, out, len(w))
	checkGoReadsPython(t, pyFile, sdFile)
}

// checkPythonSaw checks the JSON interopScript printed about the file Go wrote, whose weight
// has n values.
func checkPythonSaw(t *testing.T, out []byte, n int) {
	t.Helper()
	var got struct {
		Keys       []string
		Shape      []int
		Dtype      string
		Values     []float64
		N          int
		Ndtype     string
		Mask       []int
		Mdtype     string
		Transposed []float64
		Tshape     []int
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("python output %q: %v", out, err)
	}
	if got.Mdtype != "torch.uint8" || fmt.Sprint(got.Mask) != "[0 1 255]" || fmt.Sprint(got.Tshape) != "[3 2]" ||
		fmt.Sprint(got.Transposed) != "[1 4 2 5 3 6]" {
		t.Fatalf("python saw mask %v (%s), transposed %v %v", got.Mask, got.Mdtype, got.Transposed, got.Tshape)
	}
	if strings.Join(got.Keys, ",") != "bn.num_batches_tracked,layer1.0.conv1.weight,mask,transposed" ||
		got.Dtype != "torch.float32" || got.Ndtype != "torch.int64" || got.N != 7 ||
		len(got.Shape) != 3 || got.Shape[2] != 4 {
		t.Fatalf("python saw %+v", got)
	}
	want := make([]float64, n)
	for i := range want {
		want[i] = float64(i)*0.25 - 1
	}
	assertClose(t, "python values", got.Values, want, 0)
}

// checkGoReadsPython reads the two files interopScript saved.
func checkGoReadsPython(t *testing.T, pyFile, sdFile string) {
	t.Helper()
	sd, err := LoadStateDict(pyFile)
	if err != nil {
		t.Fatal(err)
	}
	assertShape(t, "a.weight", sd["a.weight"], 2, 3)
	assertClose(t, "a.weight", Float64s(sd["a.weight"]), []float64{0, 0.25, 0.5, 0.75, 1, 1.25}, 0)
	if ids := Int64s(sd["b.ids"]); ids[0] != 12175 || ids[1] != -1 {
		t.Fatalf("ids %v", ids)
	}
	st, err := LoadStateDict(sdFile)
	if err != nil {
		t.Fatalf("torch.save(model.state_dict()): %v", err)
	}
	if len(st) != 4 {
		t.Fatalf("state_dict entries %d, want 4", len(st))
	}
	assertClose(t, "weight", Float64s(st["weight"]), []float64{0, 1, 2, 3, 4, 5}, 0)
	assertClose(t, "bias", Float64s(st["bias"]), []float64{0.5, -0.5}, 0)
	assertShape(t, "wt", st["wt"], 3, 2)
	assertClose(t, "transposed view", Float64s(st["wt"]), []float64{0, 3, 1, 4, 2, 5}, 0)
	if DTypeOf(st["mask"]) != Bool || fmt.Sprint(Int64s(st["mask"])) != "[1 0 1]" {
		t.Fatalf("bool buffer %v", Int64s(st["mask"]))
	}
}
