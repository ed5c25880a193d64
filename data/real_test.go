package data

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sli2vol/sli2vol/internal/testpy"
)

// realData is ../shared/data/real, or a skip when this checkout has none beside it.
func realData(t *testing.T) string {
	t.Helper()
	p := filepath.Join("..", "..", "shared", "data", "real")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("real data folder %s absent: real-data tests skipped", p)
	}
	return p
}

type pair struct{ image, label string }

func realPairs(t *testing.T) []pair {
	root := realData(t)
	imgs, _ := filepath.Glob(filepath.Join(root, "*", "imagesTr", "*.nii.gz"))
	var out []pair
	for _, im := range imgs {
		lab := filepath.Join(filepath.Dir(filepath.Dir(im)), "labelsTr", filepath.Base(im))
		if _, err := os.Stat(lab); err == nil {
			out = append(out, pair{im, lab})
		}
	}
	if len(out) < 5 {
		t.Fatalf("only %d image/label pairs under %s", len(out), root)
	}
	return out
}

// Every real image/label pair loads and shares one grid; our affines equal nibabel's.
func TestRealPairsLoadAndMatchNibabel(t *testing.T) {
	pairs := realPairs(t)
	affines := map[string]Mat4{}
	for _, p := range pairs {
		img, err := LoadImage(p.image, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		lab, err := LoadLabels(p.label, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		if err := img.SameGrid(&lab.Geometry, 1e-4); err != nil {
			t.Fatalf("%s vs %s: %v", p.image, p.label, err)
		}
		affines[p.image] = img.Affine
	}
	py, ok := testpy.Lookup("nibabel")
	if !ok {
		t.Skip("python3-nibabel absent: affines not compared with nibabel")
	}
	var files []string
	for f := range affines {
		files = append(files, f)
	}
	script := `
import json, sys, nibabel as nib
print(json.dumps({f: nib.load(f).affine.tolist() for f in sys.argv[1:]}))`
	out, err := exec.Command(py, append([]string{"-c", script}, files...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	var nb map[string][4][4]float64
	if err := json.Unmarshal(out, &nb); err != nil {
		t.Fatal(err)
	}
	for f, a := range affines {
		for r := 0; r < 4; r++ {
			for c := 0; c < 4; c++ {
				if d := a[r][c] - nb[f][r][c]; d > 1e-4 || d < -1e-4 {
					t.Fatalf("%s: affine %v, nibabel %v", f, a, nb[f])
				}
			}
		}
	}
}

// brain-aparc-mri is LIA: the axial (slice) axis is the second array axis.
func TestRealSliceAxis(t *testing.T) {
	root := realData(t)
	img, err := LoadImage(filepath.Join(root, "brain-aparc-mri", "imagesTr", "brain_001.nii.gz"), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if axis, _ := img.SliceAxis(); axis != 1 {
		t.Fatalf("brain-aparc-mri slice axis %d, want 1", axis)
	}
	ct, err := LoadImage(filepath.Join(root, "ts-abdomen-ct", "imagesTr", "ts_abdomen_001.nii.gz"), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if axis, _ := ct.SliceAxis(); axis != 2 {
		t.Fatalf("abdomen CT slice axis %d, want 2", axis)
	}
}

// A mask written for the LIA brain reads back in nibabel with the input's affine, shape and
// ids (FreeSurfer ids up to 12175).
func TestRealMaskOverlaysInNibabel(t *testing.T) {
	root := realData(t)
	lab, err := LoadLabels(filepath.Join(root, "brain-aparc-mri", "labelsTr", "brain_001.nii.gz"), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "mask.nii.gz")
	if err := WriteLabels(out, lab.Data, &lab.Geometry, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	py := testpy.Find(t, "nibabel")
	script := `
import json, sys, numpy as np, nibabel as nib
a, b = nib.load(sys.argv[1]), nib.load(sys.argv[2])
da, db = np.asarray(a.dataobj), np.asarray(b.dataobj)
print(json.dumps({"affine": bool(np.allclose(a.affine, b.affine, atol=1e-5)), "shape": list(b.shape),
  "same": bool((da.astype(np.int64) == db.astype(np.int64)).all()), "max": int(db.max()),
  "codes": "".join(nib.aff2axcodes(b.affine))}))`
	res, err := exec.Command(py, "-c", script, lab.Source, out).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, res)
	}
	var got struct {
		Affine, Same bool
		Shape        []int
		Max          int
		Codes        string
	}
	if err := json.Unmarshal(res, &got); err != nil {
		t.Fatalf("%s: %v", res, err)
	}
	if !got.Affine || !got.Same || got.Max != 12175 || got.Codes != "LIA" || len(got.Shape) != 3 || got.Shape[1] != lab.Shape[1] {
		t.Fatalf("nibabel sees %+v", got)
	}
}
