package data

import (
	"bytes"
	"compress/gzip"
	"errors"
	"slices"
	"testing"
)

// Encoded to a stream and read back (gzipped and not), an image and a label volume keep
// their voxels and their affine; a header over the voxel limit is a VoxelLimitError.
func TestStreamRoundTrip(t *testing.T) {
	img, lab, g := Phantom([3]int{12, 10, 6}, 3)
	g.Affine[0][1] = 0.25 // oblique: the sform, not a diagonal, must come back
	g.Header = syntheticHeader(&g)
	var raw, gz bytes.Buffer
	if err := EncodeImage(&raw, img, &g); err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(&gz)
	if err := EncodeLabels(zw, lab, &g); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	back, err := ReadImage("img.nii", bytes.NewReader(raw.Bytes()), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.Data, img) || back.SameGrid(&g, 1e-6) != nil {
		t.Fatal("image changed in a stream round trip")
	}
	bl, err := ReadLabels("lab.nii.gz", bytes.NewReader(gz.Bytes()), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bl.Data, lab) || bl.SameGrid(&g, 1e-6) != nil {
		t.Fatal("labels changed in a stream round trip")
	}
	_, err = ReadImage("img.nii", bytes.NewReader(raw.Bytes()), Limits{MaxVoxels: 100})
	var le *VoxelLimitError
	if !errors.As(err, &le) || le.Voxels != 720 {
		t.Fatalf("over the voxel limit: %v", err)
	}
	if _, err := ReadImage("cut.nii", bytes.NewReader(raw.Bytes()[:500]), DefaultLimits); err == nil {
		t.Fatal("a truncated stream was read")
	}
}

// labelledSlices (one pass in memory order) finds the slices a slice-by-slice scan finds,
// along every axis, superior increasing or not.
func TestLabelledSlicesEveryAxis(t *testing.T) {
	g := NewGeometry([3]int{7, 6, 5}, [3]float64{1, 1, 1}, [3]float64{})
	l := &Labels{Geometry: g, Data: make([]int32, g.NumVoxels())}
	l.Data[3], l.Data[100], l.Data[209] = 2, 1, 5
	for _, aff := range []Mat4{
		{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 0, 1}},
		{{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, -1, 0}, {0, 0, 0, 1}},
		{{-1, 0, 0, 0}, {0, 0, 1, 0}, {0, -1, 0, 0}, {0, 0, 0, 1}},
		{{0, 0, 1, 0}, {0, 1, 0, 0}, {1, 0, 0, 0}, {0, 0, 0, 1}},
	} {
		l.Affine = aff
		s, _ := NewSlicer(&l.Geometry, -1)
		var want []int
		for n := 0; n < s.Len(); n++ {
			if len(IDsIn(Slice(s, l.Data, n))) > 0 {
				want = append(want, n)
			}
		}
		if got := labelledSlices(l, s); !slices.Equal(got, want) {
			t.Errorf("axis %d reversed %v: %v, want %v", s.Axis, s.Reversed, got, want)
		}
	}
}
