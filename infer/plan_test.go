package infer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/data"
)

// Two annotated slices with the identity flow: each chain carries its own annotation
// unchanged, so the blend is hand-computable. Slices 0 and 4 of lia() (5 slices): a pixel in
// both masks stays labelled; a pixel only in the lower mask keeps its label while the lower
// annotation weighs more (slice 1: 3/4 against 1/4), ties at the midpoint (slice 2) go to
// background, and the upper annotation's pixel appears on slice 3.
func TestTwoAnnotationsBlendByDistance(t *testing.T) {
	img := lia()
	s, _ := data.NewSlicer(&img.Geometry, -1)
	h, w := s.Size()
	both, low, high := 1*w+1, 2*w+2, 4*w+5
	lower, upper := make([]int32, h*w), make([]int32, h*w)
	lower[both], lower[low] = 3, 3
	upper[both], upper[high] = 3, 5
	anns := []*data.Annotation{
		{Slice: 4, Mask: upper, IDs: []int32{3, 5}}, // out of order on purpose
		{Slice: 0, Mask: lower, IDs: []int32{3}},
	}
	p := &Propagator{Model: fixedFlow{0, 0}, Device: "cpu", Scale: 1, MinArea: 1}
	withEngines(t, p, func(t *testing.T, p *Propagator) { checkTwoAnnotations(t, p, img, s, anns, both, low, high) })
}

func checkTwoAnnotations(t *testing.T, p *Propagator, img *data.Image, s data.Slicer, anns []*data.Annotation, both, low, high int) {
	var calls, last, total int
	res, err := p.Run(img, s, data.Window{Lo: 0, Up: 1}, Request{Annotations: anns,
		Progress: func(done, n int) { calls, last, total = calls+1, done, n }})
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]map[int]int32{
		0: {both: 3, low: 3},
		1: {both: 3, low: 3},
		2: {both: 3},
		3: {both: 3, high: 5},
		4: {both: 3, high: 5},
	}
	for n, px := range want {
		got := data.Slice(s, res.Labels, n)
		for i := range got {
			if got[i] != px[i] {
				t.Fatalf("slice %d pixel %d = %d, want %d", n, i, got[i], px[i])
			}
		}
	}
	if res.First != 0 || res.Last != 4 {
		t.Fatalf("range %d..%d, want 0..4", res.First, res.Last)
	}
	// Slices 1..3 are visited by both chains; nothing lies outside the two annotations.
	if total != 6 || last != 6 || calls != 6 {
		t.Fatalf("progress: %d calls, last %d of %d; want 6 of 6", calls, last, total)
	}
}

// A chain that vanishes counts as background: with a shift flow the lower annotation's
// 1-pixel mask leaves the slice after one step, so between the annotations only the upper
// chain (weighted by its distance) can label pixels.
func TestVanishedChainIsBackground(t *testing.T) {
	img := lia()
	s, _ := data.NewSlicer(&img.Geometry, -1)
	h, w := s.Size()
	lower, upper := make([]int32, h*w), make([]int32, h*w)
	lower[2*w] = 7 // column 0: the left shift (out[x] = in[x+1]) empties it at once
	for y := 1; y <= 3; y++ {
		for x := 2; x <= 5; x++ {
			upper[y*w+x] = 7
		}
	}
	anns := []*data.Annotation{{Slice: 0, Mask: lower, IDs: []int32{7}}, {Slice: 4, Mask: upper, IDs: []int32{7}}}
	p := &Propagator{Model: fixedFlow{0, 1}, Device: "cpu", Scale: 1, MinArea: 1}
	withEngines(t, p, func(t *testing.T, p *Propagator) { checkVanishedChain(t, p, img, s, anns) })
}

func checkVanishedChain(t *testing.T, p *Propagator, img *data.Image, s data.Slicer, anns []*data.Annotation) {
	h, w := s.Size()
	res, err := p.Run(img, s, data.Window{Lo: 0, Up: 1}, Request{Annotations: anns})
	if err != nil {
		t.Fatal(err)
	}
	// The upper chain moves left one column per slice down: slice 3 holds columns 1..4
	// (weight 3/4 > 1/4: kept), slice 2 columns 0..3 at weight 1/2 (a tie: background),
	// slice 1 at weight 1/4: background.
	for n, cols := range map[int][2]int{3: {1, 4}, 2: {-1, -2}, 1: {-1, -2}} {
		got := data.Slice(s, res.Labels, n)
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				want := int32(0)
				if y >= 1 && y <= 3 && x >= cols[0] && x <= cols[1] {
					want = 7
				}
				if got[y*w+x] != want {
					t.Fatalf("slice %d (%d,%d) = %d, want %d", n, y, x, got[y*w+x], want)
				}
			}
		}
	}
}

func TestRequestRefusals(t *testing.T) {
	img := lia()
	s, _ := data.NewSlicer(&img.Geometry, -1)
	h, w := s.Size()
	m := make([]int32, h*w)
	m[0] = 1
	ok := &data.Annotation{Slice: 1, Mask: m, IDs: []int32{1}}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	cases := []struct {
		name string
		r    Request
		want string
	}{
		{"none", Request{}, "no annotated slice"},
		{"twice", Request{Annotations: []*data.Annotation{ok, ok}}, "slice 1 is annotated twice"},
		{"size", Request{Annotations: []*data.Annotation{{Slice: 1, Mask: m[:5], IDs: []int32{1}}}}, "has 5 pixels"},
		{"range", Request{Annotations: []*data.Annotation{{Slice: 9, Mask: m, IDs: []int32{1}}}}, "out of range"},
		{"empty", Request{Annotations: []*data.Annotation{{Slice: 1, Mask: make([]int32, h*w)}}}, "is empty"},
	}
	p := &Propagator{Model: fixedFlow{}, Device: "cpu", Scale: 1, MinArea: 1}
	for _, c := range cases {
		if _, err := p.Run(img, s, data.Window{Lo: 0, Up: 1}, c.r); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
	_, err := p.Run(img, s, data.Window{Lo: 0, Up: 1}, Request{Annotations: []*data.Annotation{ok}, Ctx: cancelled})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled request returned %v", err)
	}
}
