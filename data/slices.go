package data

import (
	"fmt"
	"math"
)

// SliceAxis is the array axis whose direction is closest to the patient's superior–inferior
// axis (RAS z), from the affine — not assumed to be the last axis (FreeSurfer's LIA volumes
// have it second). superior reports whether increasing index moves superior.
func (g *Geometry) SliceAxis() (axis int, superior bool) {
	best := -1.0
	for a := 0; a < 3; a++ {
		x, y, z := g.Affine[0][a], g.Affine[1][a], g.Affine[2][a]
		n := math.Sqrt(x*x + y*y + z*z)
		if n == 0 {
			continue
		}
		if c := math.Abs(z) / n; c > best+1e-9 {
			best, axis, superior = c, a, z > 0
		}
	}
	return axis, superior
}

// Slicer cuts a volume into 2D slices along one array axis, in anatomical order: slice 0 is
// the most inferior. Each slice is H×W, rows along the lower remaining array axis and columns
// along the higher one, the same way for every slice.
type Slicer struct {
	Axis       int
	Reversed   bool // anatomical slice n is array index Len−1−n
	shape      [3]int
	rows, cols int // array axes of the slice's rows and columns
}

// NewSlicer slices g along axis (−1: the superior–inferior axis from the affine).
func NewSlicer(g *Geometry, axis int) (Slicer, error) {
	auto, sup := g.SliceAxis()
	if axis < 0 {
		axis = auto
	} else if axis > 2 {
		return Slicer{}, fmt.Errorf("slice axis %d: want 0, 1 or 2", axis)
	} else {
		sup = g.Affine[2][axis] >= 0
	}
	s := Slicer{Axis: axis, Reversed: !sup, shape: g.Shape}
	others := make([]int, 0, 2)
	for a := 0; a < 3; a++ {
		if a != axis {
			others = append(others, a)
		}
	}
	s.rows, s.cols = others[0], others[1]
	return s, nil
}

// Len is the number of slices.
func (s Slicer) Len() int { return s.shape[s.Axis] }

// Size is a slice's height (rows) and width (columns).
func (s Slicer) Size() (h, w int) { return s.shape[s.rows], s.shape[s.cols] }

// PixelSpacing is the size of a slice's pixel in g's units (mm): between rows, between columns.
func (s Slicer) PixelSpacing(g *Geometry) (rows, cols float64) {
	return g.Spacing[s.rows], g.Spacing[s.cols]
}

// ArrayIndex is the array index along the axis of anatomical slice n.
func (s Slicer) ArrayIndex(n int) int {
	if s.Reversed {
		return s.shape[s.Axis] - 1 - n
	}
	return n
}

// voxel is the array index of row r, column c of anatomical slice n.
func (s Slicer) voxel(n, r, c int) int {
	var ijk [3]int
	ijk[s.Axis] = s.ArrayIndex(n)
	ijk[s.rows], ijk[s.cols] = r, c
	return ijk[0] + s.shape[0]*(ijk[1]+s.shape[1]*ijk[2])
}

// Slice copies anatomical slice n of vol into a new H·W slice (row-major).
func Slice[T any](s Slicer, vol []T, n int) []T {
	h, w := s.Size()
	out := make([]T, h*w)
	SliceInto(s, vol, n, out)
	return out
}

// SliceInto copies anatomical slice n of vol into out (H·W, row-major).
func SliceInto[T any](s Slicer, vol []T, n int, out []T) {
	h, _ := s.Size()
	RowsInto(s, vol, n, 0, h, out)
}

// RowsInto copies rows r0 … r0+rows−1 of anatomical slice n of vol into out (rows·W).
func RowsInto[T any](s Slicer, vol []T, n, r0, rows int, out []T) {
	_, w := s.Size()
	for r := 0; r < rows; r++ {
		for c := 0; c < w; c++ {
			out[r*w+c] = vol[s.voxel(n, r0+r, c)]
		}
	}
}

// SetSlice writes an H·W slice back as anatomical slice n of vol.
func SetSlice[T any](s Slicer, vol []T, n int, slice []T) {
	h, w := s.Size()
	for r := 0; r < h; r++ {
		for c := 0; c < w; c++ {
			vol[s.voxel(n, r, c)] = slice[r*w+c]
		}
	}
}
