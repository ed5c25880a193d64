package cache

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/internal/testpy"
)

func phantomSources(t *testing.T, cases int) []Source {
	t.Helper()
	dir := t.TempDir()
	if err := data.WritePhantomDataset(dir, cases, 1, [3]int{24, 20, 10}, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ds, err := data.OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []Source
	for _, c := range ds.Split("train") {
		out = append(out, Source{Case: c, PL: c.Label}) // the phantom's labels stand in for pseudo-labels
	}
	return out
}

func settings() Settings {
	return Settings{Keys: map[string]string{"data.intensity": "auto"}, Intensity: data.DefaultIntensity, Axis: -1, Limits: data.DefaultLimits}
}

// memory reads a source whole, as training without a cache does.
func memory(t *testing.T, src Source) (*data.Image, *data.Labels, data.Slicer, *data.Normalizer) {
	t.Helper()
	img, lab, err := data.LoadCase(src.Case, data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	sl, _ := data.NewSlicer(&img.Geometry, -1)
	n, _ := data.NewNormalizer(data.DefaultIntensity, img.Data)
	return img, lab, sl, n
}

// Every slice read from the cache equals the slice of the volume read whole, the normaliser
// decides the same, and the statistics are those of SegImage.
func TestCachedSlicesEqualVolume(t *testing.T) {
	srcs := phantomSources(t, 2)
	c, err := Prepare(filepath.Join(t.TempDir(), "c"), srcs, settings(), Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range c.TrainVolumes() {
		img, lab, sl, norm := memory(t, srcs[i])
		h, w := sl.Size()
		if v.Len != sl.Len() || v.H != h || v.W != w || !v.HasPL {
			t.Fatalf("volume %d: %d slices of %d×%d (PL %v), want %d of %d×%d", i, v.Len, v.H, v.W, v.HasPL, sl.Len(), h, w)
		}
		gotImg, gotLab := make([]float32, h*w), make([]int32, h*w)
		for n := range v.Len {
			if err := v.Slices.Image(n, gotImg); err != nil {
				t.Fatal(err)
			}
			if err := v.Slices.Labels(n, gotLab); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotImg, data.Slice(sl, img.Data, n)) || !reflect.DeepEqual(gotLab, data.Slice(sl, lab.Data, n)) {
				t.Fatalf("volume %d slice %d differs from the volume's", i, n)
			}
		}
		got, _ := v.Slices.Normalizer()
		if got.State() != norm.State() {
			t.Fatalf("normaliser %+v, want %+v", got.State(), norm.State())
		}
		seg := data.SegImage(img, sl, norm.Test())
		var want data.StandardSum // SegImage's values are standardised: recompute from the window
		win := make([]float32, len(img.Data))
		norm.Test().Apply(img.Data, win)
		want.Add(data.ToSliceOrder(sl, win))
		if c.Entries[i].Seg != want.Stats() || c.Entries[i].Seg.Apply(data.ToSliceOrder(sl, win)[5]) != seg[5] {
			t.Fatalf("statistics %+v, want %+v", c.Entries[i].Seg, want.Stats())
		}
	}
	if err := c.TrainVolumes()[0].Slices.Image(10, make([]float32, 24*20)); err == nil {
		t.Fatal("slice past the end read")
	}
}

// The arrays are .npy files NumPy reads as the volume in slice order.
func TestCacheArraysLoadInNumPy(t *testing.T) {
	py := testpy.Find(t, "numpy")
	srcs := phantomSources(t, 1)
	dir := filepath.Join(t.TempDir(), "c")
	c, err := Prepare(dir, srcs, settings(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	img, lab, sl, _ := memory(t, srcs[0])
	raw := filepath.Join(t.TempDir(), "want")
	if err := os.WriteFile(raw+".f4", asBytes(data.ToSliceOrder(sl, img.Data)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(raw+".i4", asBytes(data.ToSliceOrder(sl, lab.Data)), 0o644); err != nil {
		t.Fatal(err)
	}
	e := c.Entries[0]
	script := fmt.Sprintf(`import numpy as np
a = np.load(%q); b = np.load(%q)
assert a.shape == b.shape == (%d, %d, %d), (a.shape, b.shape)
assert np.array_equal(a, np.fromfile(%q, dtype="<f4").reshape(a.shape))
assert np.array_equal(b.astype(np.int32), np.fromfile(%q, dtype="<i4").reshape(b.shape))
`, c.path(e.ID, imageSuffix), c.path(e.ID, plSuffix(c.pls[0])), e.Shape[0], e.Shape[1], e.Shape[2], raw+".f4", raw+".i4")
	if out, err := exec.Command(py, "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("numpy: %v\n%s", err, out)
	}
}

// An interrupted Prepare resumes: cases written before the failure are kept as they are.
func TestPrepareResumes(t *testing.T) {
	srcs := phantomSources(t, 2)
	dir := filepath.Join(t.TempDir(), "c")
	good := srcs[1].Case.Image
	broken := filepath.Join(t.TempDir(), "broken.nii.gz")
	os.WriteFile(broken, []byte("not a volume"), 0o644)
	srcs[1].Case.Image = broken
	if _, err := Prepare(dir, srcs, settings(), Options{}); err == nil || !strings.Contains(err.Error(), broken) {
		t.Fatalf("broken case: %v", err)
	}
	first := filepath.Join(dir, casesDir, srcs[0].Case.ID+".json")
	before, err := os.Stat(first)
	if err != nil {
		t.Fatalf("the case before the failure is not kept: %v", err)
	}
	srcs[1].Case.Image = good
	if _, err := Prepare(dir, srcs, settings(), Options{}); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(first); !after.ModTime().Equal(before.ModTime()) || !os.SameFile(before, after) {
		t.Fatal("the finished case was written again")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, casesDir, ".*tmp*"))
	if len(leftovers) > 0 {
		t.Fatalf("temp files left: %v", leftovers)
	}
}

// Stale or foreign folders are refused with one line naming what changed.
func TestPrepareRefuses(t *testing.T) {
	srcs := phantomSources(t, 1)
	dir := filepath.Join(t.TempDir(), "c")
	if _, err := Prepare(dir, srcs, settings(), Options{}); err != nil {
		t.Fatal(err)
	}
	other := settings()
	other.Keys["data.intensity"] = "mri"
	_, err := Prepare(dir, srcs, other, Options{})
	if err == nil || !strings.Contains(err.Error(), "made with data.intensity = auto, the config has mri") {
		t.Fatalf("changed key: %v", err)
	}
	os.Chtimes(srcs[0].Case.Image, time.Now(), time.Now().Add(time.Hour))
	_, err = Prepare(dir, srcs, settings(), Options{})
	if err == nil || !strings.Contains(err.Error(), srcs[0].Case.Image+" changed since it was cached") {
		t.Fatalf("changed file: %v", err)
	}
	if _, err := Prepare(dir, srcs, settings(), Options{Force: true}); err != nil {
		t.Fatalf("--force: %v", err)
	}
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o644)
	_, err = Prepare(foreign, srcs, settings(), Options{Force: true})
	if err == nil || !strings.Contains(err.Error(), "not a cache") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("foreign folder: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(foreign, "notes.txt")); string(b) != "mine" {
		t.Fatal("a user's file was touched")
	}
	// A foreign index.json is no licence to clear the folder, even with --force.
	theirs := t.TempDir()
	os.WriteFile(filepath.Join(theirs, indexFile), []byte(`{"title": "mine"}`), 0o644)
	os.MkdirAll(filepath.Join(theirs, casesDir), 0o755)
	os.WriteFile(filepath.Join(theirs, casesDir, "precious.txt"), []byte("mine"), 0o644)
	if _, err := Prepare(theirs, srcs, settings(), Options{Force: true}); err == nil {
		t.Fatal("a folder with a foreign index.json was taken over")
	}
	if b, _ := os.ReadFile(filepath.Join(theirs, casesDir, "precious.txt")); string(b) != "mine" {
		t.Fatal("a user's file under cases/ was removed")
	}
	// A damaged array is named, and --force rebuilds it.
	image := filepath.Join(dir, casesDir, srcs[0].Case.ID+imageSuffix)
	os.Truncate(image, 1000)
	if _, err := Prepare(dir, srcs, settings(), Options{}); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated array: %v", err)
	}
	if _, err := Prepare(dir, srcs, settings(), Options{Force: true}); err != nil {
		t.Fatalf("--force on a damaged array: %v", err)
	}
}

// Resident volumes stay within the budget (plus the volume being read) and read the same
// slices as volumes held whole.
func TestResidentBounded(t *testing.T) {
	srcs := phantomSources(t, 3)
	one := int64(24*20*10) * 8 // image and labels of one volume
	vols, r, err := NewResident(srcs, settings(), one+one/2)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]float32, 24*20)
	for _, order := range [][]int{{0, 1, 2, 0, 2, 1}} {
		for _, i := range order {
			img, _, sl, _ := memory(t, srcs[i])
			if err := vols[i].Slices.Image(3, buf); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(buf, data.Slice(sl, img.Data, 3)) {
				t.Fatalf("volume %d: slice differs", i)
			}
			if used := r.Resident(); used > one {
				t.Fatalf("%d bytes resident, budget %d holds one volume of %d", used, one+one/2, one)
			}
		}
	}
}

// One cache holds several pseudo-label sets of the same images (a pipeline's raw and refined
// ones): adding a set writes its arrays alone, and each set reads back as itself.
func TestCacheHoldsPseudoLabelSets(t *testing.T) {
	srcs := phantomSources(t, 1)
	dir := filepath.Join(t.TempDir(), "c")
	if _, err := Prepare(dir, srcs, settings(), Options{}); err != nil {
		t.Fatal(err)
	}
	image := filepath.Join(dir, casesDir, srcs[0].Case.ID+imageSuffix)
	before, _ := os.Stat(image)
	// A second set: the labels with every id raised by 300 (int32 storage).
	lab, err := data.LoadLabels(srcs[0].PL, data.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range lab.Data {
		if v > 0 {
			lab.Data[i] = v + 300
		}
	}
	other := filepath.Join(t.TempDir(), srcs[0].Case.ID+".nii.gz")
	if err := data.WriteLabels(other, lab.Data, &lab.Geometry, data.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	second := []Source{{Case: srcs[0].Case, PL: other}}
	c2, err := Prepare(dir, second, settings(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(image); !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("adding pseudo-labels rewrote the image")
	}
	c1, err := Prepare(dir, srcs, settings(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, want, sl, _ := memory(t, srcs[0])
	got1, got2 := make([]int32, 24*20), make([]int32, 24*20)
	for n := range 10 {
		c1.TrainVolumes()[0].Slices.Labels(n, got1)
		c2.TrainVolumes()[0].Slices.Labels(n, got2)
		w := data.Slice(sl, want.Data, n)
		for i := range w {
			if got1[i] != w[i] || (w[i] > 0 && got2[i] != w[i]+300) || (w[i] == 0 && got2[i] != 0) {
				t.Fatalf("slice %d voxel %d: sets read %d and %d, the labels hold %d", n, i, got1[i], got2[i], w[i])
			}
		}
	}
	if ids := c2.pls[0].LabelIDs; len(ids) == 0 || ids[0] <= 300 || c2.pls[0].Dtype != "<i4" {
		t.Fatalf("second set: ids %v stored as %s", ids, c2.pls[0].Dtype)
	}
}
