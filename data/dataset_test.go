package data

import (
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func touch(t *testing.T, paths ...string) {
	for _, p := range paths {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestMSDLayout(t *testing.T) {
	root := t.TempDir()
	touch(t, filepath.Join(root, "imagesTr", "spleen_1.nii.gz"), filepath.Join(root, "labelsTr", "spleen_1.nii.gz"),
		filepath.Join(root, "imagesTr", "spleen_2_0000.nii.gz"), filepath.Join(root, "labelsTr", "spleen_2.nii.gz"),
		filepath.Join(root, "imagesTr", "._spleen_1.nii.gz"), // macOS junk in MSD tarballs
		filepath.Join(root, "imagesTs", "spleen_9.nii.gz"))
	os.WriteFile(filepath.Join(root, "dataset.json"), []byte(`{"name": "Spleen", "training": []}`), 0o644)
	d, err := OpenDataset(root)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "Spleen" || len(d.Cases) != 3 || len(d.Split("train")) != 2 || len(d.Split("test")) != 1 {
		t.Fatalf("dataset %+v", d)
	}
	if c := d.Cases[1]; c.ID != "spleen_2" || !strings.HasSuffix(c.Label, "labelsTr/spleen_2.nii.gz") {
		t.Fatalf("nnU-Net style pairing: %+v", c)
	}
	if d.Split("test")[0].Label != "" {
		t.Fatal("test image without labelsTs got a label")
	}
	// An image in imagesTr without its label in labelsTr is an error naming the image.
	touch(t, filepath.Join(root, "imagesTr", "spleen_3.nii.gz"))
	if _, err := OpenDataset(root); err == nil || !strings.Contains(err.Error(), "spleen_3.nii.gz: no label") {
		t.Fatalf("missing label: %v", err)
	}
}

func TestPlainFolderAndManifest(t *testing.T) {
	root := t.TempDir()
	touch(t, filepath.Join(root, "a.nii.gz"), filepath.Join(root, "a_seg.nii.gz"), filepath.Join(root, "b.nii"))
	d, err := OpenDataset(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Cases) != 2 || d.Cases[0].ID != "a" || !strings.HasSuffix(d.Cases[0].Label, "a_seg.nii.gz") || d.Cases[1].Label != "" {
		t.Fatalf("plain folder %+v", d.Cases)
	}
	touch(t, filepath.Join(root, "c_label.nii.gz"))
	if _, err := OpenDataset(root); err == nil || !strings.Contains(err.Error(), "without its image") {
		t.Fatalf("orphan label: %v", err)
	}

	mdir := t.TempDir()
	touch(t, filepath.Join(mdir, "img", "x.nii.gz"), filepath.Join(mdir, "ann", "x.nii.gz"))
	m := filepath.Join(mdir, "study.yaml")
	os.WriteFile(m, []byte("name: study\ncases:\n  - image: img/x.nii.gz\n    annotation: ann/x.nii.gz\n    slice: 12\n    split: test\n"), 0o644)
	d, err = OpenDataset(m)
	if err != nil {
		t.Fatal(err)
	}
	c := d.Cases[0]
	if d.Name != "study" || c.ID != "x" || c.Slice != 12 || c.Split != "test" || c.Annotation != filepath.Join(mdir, "ann", "x.nii.gz") {
		t.Fatalf("manifest case %+v", c)
	}
	bad := []struct{ body, want string }{
		{"cases:\n  - image: img/x.nii.gz\n    lable: y\n", "field lable not found"},
		{"cases:\n  - image: img/missing.nii.gz\n", "missing.nii.gz"},
		{"cases:\n  - label: img/x.nii.gz\n", "has no image"},
		{"cases:\n  - image: img/x.nii.gz\n    split: val\n", `split "val"`},
	}
	for _, b := range bad {
		os.WriteFile(m, []byte(b.body), 0o644)
		if _, err := OpenDataset(m); err == nil || !strings.Contains(err.Error(), b.want) || !strings.Contains(err.Error(), m) {
			t.Errorf("manifest %q: %v", b.body, err)
		}
	}
	if _, err := OpenDataset(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no NIfTI images") {
		t.Fatalf("empty folder: %v", err)
	}
}

func labelsOf(shape [3]int, set map[[3]int]int32) *Labels {
	g := NewGeometry(shape, [3]float64{1, 1, 1}, [3]float64{})
	g.Source = "ann.nii.gz"
	l := &Labels{Geometry: g, Data: make([]int32, g.NumVoxels())}
	for ijk, v := range set {
		l.Data[g.Index(ijk[0], ijk[1], ijk[2])] = v
	}
	return l
}

func TestFindAnnotation(t *testing.T) {
	shape := [3]int{4, 4, 6}
	one := labelsOf(shape, map[[3]int]int32{{1, 1, 3}: 5, {2, 1, 3}: 12175})
	s, _ := NewSlicer(&one.Geometry, -1)
	a, err := FindAnnotation(one, s, -1)
	if err != nil || a.Slice != 3 || len(a.IDs) != 2 || a.IDs[1] != 12175 {
		t.Fatalf("annotation %+v %v", a, err)
	}
	cases := []struct {
		l     *Labels
		slice int
		want  string
	}{
		{labelsOf(shape, nil), -1, "annotation is empty"},
		{labelsOf(shape, map[[3]int]int32{{0, 0, 1}: 1, {0, 0, 4}: 1}), -1, "2 slices are labelled (1, 4 along axis 2)"},
		{one, 9, "slice 9 is out of range"},
		{one, 2, "slice 2 has no labelled voxel"},
	}
	for _, c := range cases {
		_, err := FindAnnotation(c.l, s, c.slice)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "ann.nii.gz: ") {
			t.Errorf("want %q, got %v", c.want, err)
		}
	}
	two := labelsOf(shape, map[[3]int]int32{{0, 0, 1}: 1, {0, 0, 4}: 2})
	if a, err := FindAnnotation(two, s, 4); err != nil || a.IDs[0] != 2 {
		t.Fatalf("--slice on a full volume: %+v %v", a, err)
	}
}

// The benchmark picks, per structure, a slice within ±3 of its largest cross-section that
// contains it; the same seed picks the same slices.
func TestBenchmarkAnnotations(t *testing.T) {
	set := map[[3]int]int32{}
	// Structure 1 on slices 2..12, largest (3×3) on slice 8; structure 7 only on slices 0, 1.
	for k := 2; k <= 12; k++ {
		set[[3]int{0, 0, k}] = 1
	}
	for i := 0; i < 3; i++ {
		for j := 0; j < 3; j++ {
			set[[3]int{i, j, 8}] = 1
		}
	}
	set[[3]int{3, 3, 0}], set[[3]int{3, 3, 1}], set[[3]int{2, 3, 1}] = 7, 7, 7
	l := labelsOf([3]int{4, 4, 16}, set)
	s, _ := NewSlicer(&l.Geometry, -1)
	seen := map[int]bool{}
	for seed := int64(0); seed < 40; seed++ {
		ch := BenchmarkAnnotations(l, s, rand.New(rand.NewSource(seed)), 3)
		if len(ch) != 2 || ch[0].ID != 1 || ch[1].ID != 7 {
			t.Fatalf("choices %+v", ch)
		}
		if ch[0].Largest != 8 || ch[0].Slice < 5 || ch[0].Slice > 11 || ch[0].First != 2 || ch[0].Last != 12 {
			t.Fatalf("structure 1: %+v", ch[0])
		}
		if ch[1].Largest != 1 || (ch[1].Slice != 0 && ch[1].Slice != 1) {
			t.Fatalf("structure 7 (only on slices 0-1): %+v", ch[1])
		}
		seen[ch[0].Slice] = true
		again := BenchmarkAnnotations(l, s, rand.New(rand.NewSource(seed)), 3)
		if again[0] != ch[0] || again[1] != ch[1] {
			t.Fatal("same seed, different choice")
		}
	}
	if len(seen) < 5 {
		t.Fatalf("only slices %v chosen over 40 seeds", seen)
	}
}

// On the real volumes: every structure's benchmark slice lies within ±3 of its largest
// cross-section, counted here independently slice by slice.
func TestRealBenchmarkAnnotations(t *testing.T) {
	for _, p := range realPairs(t) {
		if strings.Contains(p.label, "brain") {
			continue // 188 structures on 256³: covered by the others, too slow for the suite
		}
		l, err := LoadLabels(p.label, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := NewSlicer(&l.Geometry, -1)
		counts := map[int32][]int{}
		for n := 0; n < s.Len(); n++ {
			for _, v := range Slice(s, l.Data, n) {
				if v != 0 {
					if counts[v] == nil {
						counts[v] = make([]int, s.Len())
					}
					counts[v][n]++
				}
			}
		}
		for _, ch := range BenchmarkAnnotations(l, s, rand.New(rand.NewSource(1)), 3) {
			c := counts[ch.ID]
			best := 0
			for n := range c {
				if c[n] > c[best] {
					best = n
				}
			}
			if ch.Slice < best-3 || ch.Slice > best+3 || c[ch.Slice] == 0 {
				t.Fatalf("%s id %d: slice %d, largest at %d", p.label, ch.ID, ch.Slice, best)
			}
		}
	}
}

func TestLoadCaseGridMismatch(t *testing.T) {
	dir := t.TempDir()
	g := NewGeometry([3]int{8, 8, 4}, [3]float64{1, 1, 2}, [3]float64{})
	g2 := NewGeometry([3]int{8, 8, 4}, [3]float64{1, 1, 2}, [3]float64{0, 0, 5}) // shifted 5 mm
	g3 := NewGeometry([3]int{8, 8, 5}, [3]float64{1, 1, 2}, [3]float64{})
	img := filepath.Join(dir, "x.nii.gz")
	if err := WriteImageInt16(img, make([]float32, 256), &g, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	ok := filepath.Join(dir, "ok.nii.gz")
	shifted := filepath.Join(dir, "shifted.nii.gz")
	bigger := filepath.Join(dir, "bigger.nii.gz")
	WriteLabels(ok, make([]int32, 256), &g, WriteOptions{})
	WriteLabels(shifted, make([]int32, 256), &g2, WriteOptions{})
	WriteLabels(bigger, make([]int32, 320), &g3, WriteOptions{})
	if _, _, err := LoadCase(Case{Image: img, Label: ok}, DefaultLimits); err != nil {
		t.Fatal(err)
	}
	for _, lab := range []string{shifted, bigger} {
		_, _, err := LoadCase(Case{Image: img, Label: lab}, DefaultLimits)
		if err == nil || !strings.HasPrefix(err.Error(), lab+": does not lie on the grid") {
			t.Errorf("%s: %v", lab, err)
		}
	}
}
