package infer

import (
	"testing"

	"github.com/sli2vol/sli2vol/data"
)

// The verification rule on a hand-built 20×20 slice. On the previous slice structure 3 is the
// square rows 5–9 × cols 5–9 at intensity 100 on a background of 0 (inside mean 100, ring
// mean 0), structure 5 the square rows 14–16 × cols 14–16 at 50. The propagated mask gives 3
// rows 5–9 × cols 5–12; on the current slice cols 5–10 are 100 but for a dark pixel (7,7),
// cols 11–12 are 10 (nearer the ring's 0: dropped). Kept: cols 5–10 without (7,7); the hole
// is filled; the closing of a rectangle is the rectangle. Structure 5 is unchanged.
func TestVerificationRule(t *testing.T) {
	const h, w = 20, 20
	prev, cur := make([]float32, h*w), make([]float32, h*w)
	prevMask, mask := make([]int32, h*w), make([]int32, h*w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			i := y*w + x
			sq3 := y >= 5 && y <= 9
			if sq3 && x >= 5 && x <= 9 {
				prev[i], prevMask[i] = 100, 3
			}
			if sq3 && x >= 5 && x <= 12 {
				mask[i] = 3
				cur[i] = 100
				if x >= 11 {
					cur[i] = 10
				}
			}
			if y >= 14 && y <= 16 && x >= 14 && x <= 16 {
				prev[i], prevMask[i], cur[i], mask[i] = 50, 5, 50, 5
			}
		}
	}
	cur[7*w+7] = 0
	got := newVerifier(h, w).verify(mask, prevMask, cur, prev, []int32{3, 5})
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			want := int32(0)
			switch {
			case y >= 5 && y <= 9 && x >= 5 && x <= 10:
				want = 3
			case y >= 14 && y <= 16 && x >= 14 && x <= 16:
				want = 5
			}
			if got[y*w+x] != want {
				t.Fatalf("(%d,%d) = %d, want %d", y, x, got[y*w+x], want)
			}
		}
	}
}

// With verification on, the propagator carries the verified mask: the identity flow copies
// the annotation, and where the next slices are dark on half of it, that half is dropped
// there and stays dropped beyond (it is what is carried on).
func TestPropagatorVerifies(t *testing.T) {
	g := data.NewGeometry([3]int{20, 20, 4}, [3]float64{1, 1, 1}, [3]float64{})
	img := &data.Image{Geometry: g, Data: make([]float32, g.NumVoxels())}
	s, _ := data.NewSlicer(&img.Geometry, -1)
	h, w := s.Size()
	mask := make([]int32, h*w)
	for n := 0; n < s.Len(); n++ {
		v := make([]float32, h*w)
		for y := 6; y <= 12; y++ {
			for x := 4; x <= 15; x++ {
				v[y*w+x] = 100
				if n > 0 && x >= 10 {
					v[y*w+x] = 5 // slices 1..3: the right half looks like the surroundings
				}
				if n == 0 {
					mask[y*w+x] = 2
				}
			}
		}
		data.SetSlice(s, img.Data, n, v)
	}
	ann := &data.Annotation{Slice: 0, Mask: mask, IDs: []int32{2}}
	p := &Propagator{Model: fixedFlow{0, 0}, Device: "cpu", Scale: 1, MinArea: 1, Verify: true}
	res, err := p.Segment(img, s, data.Window{Lo: 0, Up: 100}, ann)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n < s.Len(); n++ {
		got := data.Slice(s, res.Labels, n)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				want := int32(0)
				if y >= 6 && y <= 12 && x >= 4 && x <= 9 {
					want = 2
				}
				if got[y*w+x] != want {
					t.Fatalf("slice %d (%d,%d) = %d, want %d", n, y, x, got[y*w+x], want)
				}
			}
		}
	}
}
