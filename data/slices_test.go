package data

import (
	"math"
	"testing"
)

func geomWith(a Mat4, shape [3]int) *Geometry {
	a[3][3] = 1
	return &Geometry{Shape: shape, Affine: a}
}

func TestSliceAxisFromAffine(t *testing.T) {
	c, s := math.Cos(0.3), math.Sin(0.3)
	cases := []struct {
		name     string
		a        Mat4
		axis     int
		superior bool
	}{
		{"RAS", Mat4{{1, 0, 0}, {0, 1, 0}, {0, 0, 2}}, 2, true},
		{"LPS", Mat4{{-1, 0, 0}, {0, -1, 0}, {0, 0, 1}}, 2, true},
		{"LPI (z flipped)", Mat4{{-1, 0, 0}, {0, -1, 0}, {0, 0, -1}}, 2, false},
		// FreeSurfer conformed: columns L, I, A → axial is array axis 1, running inferior.
		{"LIA", Mat4{{-1, 0, 0}, {0, 0, 1}, {0, -1, 0}}, 1, false},
		// Oblique: axis 0 tilted 0.3 rad from superior, axes 1 and 2 in the other plane.
		{"oblique", Mat4{{0, 1, 0}, {s, 0, c}, {c, 0, -s}}, 0, true},
	}
	for _, tc := range cases {
		g := geomWith(tc.a, [3]int{4, 5, 6})
		axis, sup := g.SliceAxis()
		if axis != tc.axis || sup != tc.superior {
			t.Errorf("%s: axis %d superior %v, want %d %v", tc.name, axis, sup, tc.axis, tc.superior)
		}
	}
}

// Slices come out in anatomical order (inferior first), with the same in-plane layout.
func TestSlicerOrderAndRoundTrip(t *testing.T) {
	g := geomWith(Mat4{{-1, 0, 0}, {0, 0, 1}, {0, -1, 0}}, [3]int{3, 4, 5}) // LIA
	s, err := NewSlicer(g, -1)
	if err != nil {
		t.Fatal(err)
	}
	if s.Axis != 1 || s.Len() != 4 || !s.Reversed {
		t.Fatalf("slicer %+v", s)
	}
	h, w := s.Size()
	if h != 3 || w != 5 {
		t.Fatalf("slice size %d×%d, want 3×5", h, w)
	}
	vol := make([]int, 60)
	for i := range vol {
		vol[i] = i
	}
	// Anatomical slice 0 (most inferior) is array index j = 3 along axis 1; its row r,
	// column c is voxel (i=r, j=3, k=c).
	sl := Slice(s, vol, 0)
	for r := 0; r < 3; r++ {
		for c := 0; c < 5; c++ {
			if want := r + 3*(3+4*c); sl[r*5+c] != want {
				t.Fatalf("slice 0 (%d,%d) = %d, want %d", r, c, sl[r*5+c], want)
			}
		}
	}
	out := make([]int, 60)
	for n := 0; n < s.Len(); n++ {
		SetSlice(s, out, n, Slice(s, vol, n))
	}
	for i := range vol {
		if out[i] != vol[i] {
			t.Fatal("Slice/SetSlice do not round-trip")
		}
	}
	// An explicit axis overrides the affine's choice.
	s2, _ := NewSlicer(g, 2)
	if s2.Axis != 2 || s2.Len() != 5 {
		t.Fatalf("override: %+v", s2)
	}
	if _, err := NewSlicer(g, 3); err == nil {
		t.Fatal("axis 3 accepted")
	}
}
