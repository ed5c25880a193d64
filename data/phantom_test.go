package data

import (
	"path/filepath"
	"testing"
)

// components counts 4-connected components of a 2D mask.
func components(m []bool, h, w int) int {
	seen := make([]bool, len(m))
	n := 0
	for s := range m {
		if !m[s] || seen[s] {
			continue
		}
		n++
		stack := []int{s}
		seen[s] = true
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			y, x := p/w, p%w
			for _, d := range [][2]int{{1, 0}, {-1, 0}, {0, 1}, {0, -1}} {
				yy, xx := y+d[0], x+d[1]
				q := yy*w + xx
				if yy >= 0 && yy < h && xx >= 0 && xx < w && m[q] && !seen[q] {
					seen[q] = true
					stack = append(stack, q)
				}
			}
		}
	}
	return n
}

// phantomSpans finds, per structure, the first and last slice it appears on and the numbers
// of connected pieces it has on a slice.
func phantomSpans(s Slicer, lab []int32) (extent map[int32][2]int, pieces map[int32]map[int]bool) {
	h, w := s.Size()
	extent = map[int32][2]int{}
	pieces = map[int32]map[int]bool{}
	for n := 0; n < s.Len(); n++ {
		sl := Slice(s, lab, n)
		for _, st := range PhantomStructures {
			m := make([]bool, len(sl))
			any := false
			for i, v := range sl {
				m[i] = v == st.ID
				any = any || m[i]
			}
			if !any {
				continue
			}
			e, ok := extent[st.ID]
			if !ok {
				e = [2]int{n, n}
			}
			e[1] = n
			extent[st.ID] = e
			if pieces[st.ID] == nil {
				pieces[st.ID] = map[int]bool{}
			}
			pieces[st.ID][components(m, h, w)] = true
		}
	}
	return extent, pieces
}

// checkPhantomHU: air outside, organs brighter than soft tissue, partial-volume edges.
func checkPhantomHU(t *testing.T, img []float32, lab []int32) {
	t.Helper()
	var air, liver, tissue, liverN, tissueN, mixed float64
	for i, v := range img {
		switch {
		case i == 0:
			air = float64(v)
		case lab[i] == 1:
			liver += float64(v)
			liverN++
		case lab[i] == 0 && v > 0 && v < 45:
			tissue += float64(v)
			tissueN++
		}
		if v > -700 && v < -200 {
			mixed++
		}
	}
	if air > -900 || liver/liverN < 50 || liver/liverN > 95 || mixed == 0 {
		t.Errorf("HU: corner %g, liver mean %g, %g partial-volume voxels", air, liver/liverN, mixed)
	}
}

func TestPhantomStructure(t *testing.T) {
	shape := [3]int{96, 96, 48}
	img, lab, g := Phantom(shape, 42)
	s, _ := NewSlicer(&g, -1)
	if s.Axis != 2 || s.Reversed {
		t.Fatalf("phantom slicer %+v", s)
	}
	extent, pieces := phantomSpans(s, lab)
	for _, st := range PhantomStructures {
		e, ok := extent[st.ID]
		if !ok {
			t.Fatalf("%s missing", st.Name)
		}
		if e[0] == 0 || e[1] == s.Len()-1 {
			t.Errorf("%s spans slices %v: must begin and end inside the volume", st.Name, e)
		}
	}
	// The vessel is one piece on some slices and two on others; the kidneys are two pieces.
	if !pieces[3][1] || !pieces[3][2] {
		t.Errorf("vessel pieces per slice %v: want slices with 1 and with 2", pieces[3])
	}
	if !pieces[2][2] {
		t.Errorf("kidney pieces per slice %v: want 2", pieces[2])
	}
	checkPhantomHU(t, img, lab)
	if !LooksLikeCT(img) {
		t.Error("phantom not detected as CT")
	}
	// Deterministic per seed.
	img2, lab2, _ := Phantom(shape, 42)
	img3, _, _ := Phantom(shape, 43)
	for i := range img {
		if img[i] != img2[i] || lab[i] != lab2[i] {
			t.Fatal("same seed, different phantom")
		}
	}
	diff := 0
	for i := range img {
		if img[i] != img3[i] {
			diff++
		}
	}
	if diff == 0 {
		t.Fatal("another seed, same phantom")
	}
}

func TestPhantomDataset(t *testing.T) {
	dir := t.TempDir()
	if err := WritePhantomDataset(dir, 2, 5, [3]int{32, 32, 16}, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "sli2vol-phantoms" || len(d.Cases) != 2 {
		t.Fatalf("%+v", d)
	}
	img, err := LoadImage(d.Cases[1].Image, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	lab, err := LoadLabels(d.Cases[1].Label, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.SameGrid(&lab.Geometry, 1e-6); err != nil {
		t.Fatal(err)
	}
	want, wantLab, _ := Phantom([3]int{32, 32, 16}, 5*1000+1)
	for i := range want {
		if d := img.Data[i] - float32(int16(want[i])); d > 1 || d < -1 || lab.Data[i] != wantLab[i] {
			t.Fatalf("voxel %d: %g/%d, want %g/%d", i, img.Data[i], lab.Data[i], want[i], wantLab[i])
		}
	}
	if err := WritePhantomDataset(dir, 2, 5, [3]int{32, 32, 16}, WriteOptions{}); err == nil {
		t.Fatal("rewrote an existing dataset without --force")
	}
	if err := WritePhantomDataset(filepath.Join(dir, "x"), 0, 5, [3]int{32, 32, 16}, WriteOptions{}); err == nil {
		t.Fatal("zero cases accepted")
	}
}
