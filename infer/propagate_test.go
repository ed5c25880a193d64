package infer

import (
	"runtime/metrics"
	"slices"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/configs"
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/torchx"
)

// fixedFlow is a stand-in network whose affinity puts all weight on one displacement
// (dy, dx) of a radius-1 window: propagation then moves the mask by exactly that much per
// slice, which makes the expected output computable by hand.
type fixedFlow struct{ dy, dx int }

func (f fixedFlow) SliceFeatures(s torchx.Tensor) torchx.Tensor { return s }
func (f fixedFlow) PLFeatures(m torchx.Tensor) torchx.Tensor    { return m }
func (f fixedFlow) Affinity(q, _ torchx.Tensor) torchx.Tensor {
	sh := q.Shape()
	hw := sh[2] * sh[3]
	a := make([]float32, sh[0]*9*hw)
	d := int64((f.dy+1)*3 + f.dx + 1)
	for b := int64(0); b < sh[0]; b++ {
		for i := int64(0); i < hw; i++ {
			a[(b*9+d)*hw+i] = 1
		}
	}
	return torchx.FromFloat32(a, sh[0], 9, sh[2], sh[3])
}
func (f fixedFlow) Propagate(a, src torchx.Tensor) torchx.Tensor { return torchx.Aggregate(a, src, 1) }

// lia is a small volume in FreeSurfer's LIA orientation: slices along array axis 1, most
// inferior at the highest index.
func lia() *data.Image {
	g := data.NewGeometry([3]int{6, 5, 7}, [3]float64{1, 1, 1}, [3]float64{})
	g.Affine = data.Mat4{{-1, 0, 0, 0}, {0, 0, 1, 0}, {0, -1, 0, 0}, {0, 0, 0, 1}}
	return &data.Image{Geometry: g, Data: make([]float32, g.NumVoxels())}
}

// With every object estimate (each feeds PL features, which the stand-in's affinity ignores),
// so that the per-slice scopes are exercised with what each estimate keeps from slice to slice.
func TestIdentityFlowCopiesBothWays(t *testing.T) {
	for _, est := range configs.Estimates {
		t.Run(string(est), func(t *testing.T) { testIdentityFlow(t, est) })
	}
}

func testIdentityFlow(t *testing.T, estimate configs.Estimate) {
	img := lia()
	s, _ := data.NewSlicer(&img.Geometry, -1)
	h, w := s.Size() // 6×7
	mask := make([]int32, h*w)
	mask[2*w+3], mask[2*w+4], mask[3*w+3] = 12175, 12175, 4 // two ids
	ann := &data.Annotation{Slice: 2, Mask: mask, IDs: []int32{4, 12175}}
	p := &Propagator{Model: fixedFlow{0, 0}, Device: "cpu", Scale: 1, MinArea: 1, Estimate: estimate}
	if estimate == configs.EstimateModel {
		p.EstimateVolume = make([]int32, img.NumVoxels())
		for n := 0; n < s.Len(); n++ {
			data.SetSlice(s, p.EstimateVolume, n, mask)
		}
	}
	withEngines(t, p, func(t *testing.T, p *Propagator) {
		// Every tensor of a propagation lives in its scopes, and what a slice replaces is freed:
		// none is left to the collector, so the per-slice torchx.GC never runs one.
		torchx.GC()
		forced := func() uint64 {
			m := []metrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
			metrics.Read(m)
			return m[0].Value.Uint64()
		}
		gc0 := forced()
		res, err := p.Segment(img, s, data.Window{Lo: 0, Up: 1}, ann)
		if err != nil {
			t.Fatal(err)
		}
		if n := forced() - gc0; n != 0 {
			t.Errorf("%d collections during the propagation: tensors were left to the collector", n)
		}
		if res.First != 0 || res.Last != s.Len()-1 {
			t.Fatalf("covered slices %d..%d, want 0..%d", res.First, res.Last, s.Len()-1)
		}
		for n := 0; n < s.Len(); n++ {
			got := data.Slice(s, res.Labels, n)
			for i := range mask {
				if got[i] != mask[i] {
					t.Fatalf("slice %d pixel %d = %d, want %d", n, i, got[i], mask[i])
				}
			}
		}
	})

}

// A flow that moves the mask one column left per slice going up, and (applied the other
// way) also left going down; a 2-pixel-wide square at columns 1-2 survives one step and
// vanishes after three, where propagation must stop.
func TestShiftFlowStopsWhenMaskVanishes(t *testing.T) {
	img := lia()
	s, _ := data.NewSlicer(&img.Geometry, -1)
	h, w := s.Size()
	mask := make([]int32, h*w)
	for y := 2; y <= 3; y++ {
		for x := 1; x <= 2; x++ {
			mask[y*w+x] = 3
		}
	}
	ann := &data.Annotation{Slice: 2, Mask: mask, IDs: []int32{3}}
	p := &Propagator{Model: fixedFlow{0, 1}, Device: "cpu", Scale: 1, MinArea: 3}
	withEngines(t, p, func(t *testing.T, p *Propagator) {
		res, err := p.Segment(img, s, data.Window{Lo: 0, Up: 1}, ann)
		if err != nil {
			t.Fatal(err)
		}
		// Each step: out[y,x] = m[y,x+1] → columns 0-1 (area 4), then column 0 (area 2 < 3: stop).
		if res.First != 1 || res.Last != 3 {
			t.Fatalf("covered %d..%d, want 1..3", res.First, res.Last)
		}
		one := data.Slice(s, res.Labels, 3)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				want := int32(0)
				if (y == 2 || y == 3) && x <= 1 {
					want = 3
				}
				if one[y*w+x] != want {
					t.Fatalf("slice 3 (%d,%d) = %d, want %d", y, x, one[y*w+x], want)
				}
			}
		}
		for _, n := range []int{0, 4} {
			for _, v := range data.Slice(s, res.Labels, n) {
				if v != 0 {
					t.Fatalf("slice %d labelled after the mask vanished", n)
				}
			}
		}
	})
	if _, err := (&Propagator{Model: fixedFlow{}, Device: "cpu", Scale: 1, Estimate: configs.EstimateModel}).Segment(img, s, data.Window{Lo: 0, Up: 1}, ann); err == nil {
		t.Fatal("estimate model accepted without a refinement network")
	}
}

// With infer.resize, propagation runs on the resampled grid and each result comes back to
// the slice's size. On an 8×8 slice with a mask of aligned 2×2 blocks, resampling to 16² or
// 4² and back is exact (bilinear at factor 2 keeps each block's argmax), so the identity flow
// must return the annotation on every slice, and the work grid must be the asked size.
func TestResizedPropagationRoundTrips(t *testing.T) {
	g := data.NewGeometry([3]int{8, 8, 5}, [3]float64{1, 1, 1}, [3]float64{})
	img := &data.Image{Geometry: g, Data: make([]float32, g.NumVoxels())}
	s, _ := data.NewSlicer(&img.Geometry, -1)
	h, w := s.Size()
	mask := make([]int32, h*w)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			switch {
			case y >= 2 && y < 6 && x >= 2 && x < 4:
				mask[y*w+x] = 7
			case y >= 4 && y < 6 && x >= 4 && x < 8:
				mask[y*w+x] = 9
			}
		}
	}
	ann := &data.Annotation{Slice: 2, Mask: mask, IDs: []int32{7, 9}}
	for _, c := range [][2]int{{16, 0}, {16, 1}, {16, 2}, {4, 0}, {4, 2}} {
		size, e := c[0], engines[c[1]]
		seen := map[int64]bool{}
		flow := sizeSpy{fixedFlow{0, 0}, seen}
		p := &Propagator{Model: flow, Device: "cpu", Scale: 1, MinArea: 1, Resize: size, PerSlice: e.perSlice, EncodeBatch: e.batch}
		res, err := p.Segment(img, s, data.Window{Lo: 0, Up: 1}, ann)
		if err != nil {
			t.Fatal(err)
		}
		if len(seen) != 1 || !seen[int64(size)] {
			t.Fatalf("resize %d: the network saw slices of side %v", size, seen)
		}
		for n := 0; n < s.Len(); n++ {
			got := data.Slice(s, res.Labels, n)
			for i := range mask {
				if got[i] != mask[i] {
					t.Fatalf("resize %d: slice %d pixel %d = %d, want %d", size, n, i, got[i], mask[i])
				}
			}
		}
	}
}

// sizeSpy records the side of the slices the network is given.
type sizeSpy struct {
	fixedFlow
	seen map[int64]bool
}

func (s sizeSpy) SliceFeatures(x torchx.Tensor) torchx.Tensor {
	s.seen[x.Shape()[3]] = true
	return x
}

// With infer.spacing training the working grid is each axis resampled from its own pixel
// size to the training mm/px: a slice of 8 rows of 1 mm and 4 columns of 2 mm (8×8 mm)
// propagated at 0.5 mm/px is 16×16. Its mask of 2×2-pixel blocks survives the round trip
// (each native pixel's centre falls between two working pixels of its own block), so the
// identity flow returns the annotation on every slice.
func TestSpacingResamplesEachAxis(t *testing.T) {
	g := data.NewGeometry([3]int{8, 4, 5}, [3]float64{1, 2, 1}, [3]float64{})
	img := &data.Image{Geometry: g, Data: make([]float32, g.NumVoxels())}
	s, _ := data.NewSlicer(&img.Geometry, 2)
	h, w := s.Size()
	if h != 8 || w != 4 {
		t.Fatalf("slice %d×%d, want 8×4", h, w)
	}
	mask := make([]int32, h*w)
	for y := 2; y < 6; y++ {
		mask[y*w+0], mask[y*w+1] = 3, 3
	}
	for y := 4; y < 8; y++ {
		mask[y*w+2], mask[y*w+3] = 5, 5
	}
	ann := &data.Annotation{Slice: 2, Mask: mask, IDs: []int32{3, 5}}
	for _, e := range engines {
		spy := &shapeSpy{fixedFlow: fixedFlow{0, 0}}
		p := &Propagator{Model: spy, Device: "cpu", Scale: 1, MinArea: 1, Spacing: 0.5, PerSlice: e.perSlice, EncodeBatch: e.batch}
		res, err := p.Segment(img, s, data.Window{Lo: 0, Up: 1}, ann)
		if err != nil {
			t.Fatal(err)
		}
		if len(spy.seen) != 1 || !spy.seen[[2]int64{16, 16}] {
			t.Fatalf("%s: the network saw slices of %v, want 16×16", e.name, spy.seen)
		}
		for n := 0; n < s.Len(); n++ {
			if got := data.Slice(s, res.Labels, n); !slices.Equal(got, mask) {
				t.Fatalf("%s: slice %d = %v, want %v", e.name, n, got, mask)
			}
		}
	}
}

// shapeSpy records the height and width of the slices the network is given.
type shapeSpy struct {
	fixedFlow
	seen map[[2]int64]bool
}

func (s *shapeSpy) SliceFeatures(x torchx.Tensor) torchx.Tensor {
	if s.seen == nil {
		s.seen = map[[2]int64]bool{}
	}
	sh := x.Shape()
	s.seen[[2]int64{sh[2], sh[3]}] = true
	return x
}

// With NoCoarser (infer.spacing finer) an axis is resampled only where its pixels are larger
// than the training scale: at 1.5 mm/px, 8 rows of 1 mm stay 8, and 4 columns of 2 mm
// become round(4·2/1.5) = 5.
func TestSpacingNoCoarser(t *testing.T) {
	g := data.NewGeometry([3]int{8, 4, 5}, [3]float64{1, 2, 1}, [3]float64{})
	img := &data.Image{Geometry: g, Data: make([]float32, g.NumVoxels())}
	s, _ := data.NewSlicer(&img.Geometry, 2)
	mask := make([]int32, 8*4)
	mask[2*4+1], mask[3*4+1] = 3, 3
	for _, c := range []struct {
		noCoarser bool
		want      [2]int64
	}{{true, [2]int64{8, 5}}, {false, [2]int64{5, 5}}} {
		spy := &shapeSpy{fixedFlow: fixedFlow{0, 0}}
		p := &Propagator{Model: spy, Device: "cpu", Scale: 1, MinArea: 1, Spacing: 1.5, NoCoarser: c.noCoarser, PerSlice: true}
		if _, err := p.Segment(img, s, data.Window{Lo: 0, Up: 1}, &data.Annotation{Slice: 2, Mask: mask, IDs: []int32{3}}); err != nil {
			t.Fatal(err)
		}
		if len(spy.seen) != 1 || !spy.seen[c.want] {
			t.Fatalf("no coarser %v: the network saw %v, want %v", c.noCoarser, spy.seen, c.want)
		}
	}
}

// A working grid over MaxWorkSide a side is refused with the sizes, before any work: 8 rows
// of 1 mm at 0.001 mm/px would be 8000 px.
func TestSpacingWorkGridBounded(t *testing.T) {
	g := data.NewGeometry([3]int{8, 4, 5}, [3]float64{1, 2, 1}, [3]float64{})
	g.Source = "tiny.nii"
	img := &data.Image{Geometry: g, Data: make([]float32, g.NumVoxels())}
	s, _ := data.NewSlicer(&img.Geometry, 2)
	mask := make([]int32, 8*4)
	mask[9] = 3
	p := &Propagator{Model: fixedFlow{0, 0}, Device: "cpu", Scale: 1, MinArea: 1, Spacing: 0.001}
	_, err := p.Segment(img, s, data.Window{Lo: 0, Up: 1}, &data.Annotation{Slice: 2, Mask: mask, IDs: []int32{3}})
	if err == nil || !strings.Contains(err.Error(), "8000×8000 px") || !strings.Contains(err.Error(), "tiny.nii") {
		t.Fatalf("an 8000-px working grid: %v", err)
	}
}
