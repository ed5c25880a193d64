package infer

import (
	"fmt"
	"math"
	"math/rand"
	"testing"

	"github.com/sli2vol/sli2vol/torchx"
)

func TestWindowStarts(t *testing.T) {
	for _, tc := range []struct {
		size, patch int
		want        string
	}{
		{4, 4, "[0]"},
		{3, 4, "[0]"},
		{10, 4, "[0 2 4 6]"},   // step ≤ 2: ceil(6/2)+1 = 4 windows, 2 apart
		{11, 4, "[0 2 4 5 7]"}, // 5 windows 1.75 apart, rounded
		{12, 8, "[0 4]"},       // exactly one half-patch step
		{13, 8, "[0 3 5]"},     // 3 windows 2.5 apart
	} {
		if got := fmt.Sprint(WindowStarts(tc.size, tc.patch, 0.5)); got != tc.want {
			t.Errorf("WindowStarts(%d, %d) = %s, want %s", tc.size, tc.patch, got, tc.want)
		}
	}
}

// A network whose class-1 logit is its input and class-0 logit is 0 gives every window the
// same probability σ(x) at a voxel, so the Gaussian-weighted average must be σ(x) exactly at
// every voxel of a volume that is not a multiple of the patch (and shorter than it on one
// axis): a voxel missed, misplaced or mis-weighted would show.
func TestSlidingWindowCoversEveryVoxel(t *testing.T) {
	shape := [3]int{7, 19, 13} // D < patch D; H, W not multiples
	r := rand.New(rand.NewSource(1))
	img := make([]float32, shape[0]*shape[1]*shape[2])
	for i := range img {
		img[i] = float32(r.NormFloat64() * 3)
	}
	net := func(x torchx.Tensor) torchx.Tensor {
		return torchx.Cat([]torchx.Tensor{torchx.MulScalar(x, 0), x}, 1)
	}
	calls := 0
	counted := func(x torchx.Tensor) torchx.Tensor {
		calls++
		if s := x.Shape(); s[2] != 8 || s[3] != 8 || s[4] != 8 {
			t.Fatalf("window shape %v", s)
		}
		return net(x)
	}
	for _, mirror := range []bool{false, true} {
		calls = 0
		sw := SlidingWindow{Patch: [3]int{8, 8, 8}, Overlap: 0.5, Mirror: mirror, Batch: 3}
		p, err := sw.Probabilities(img, shape, 2, counted)
		if err != nil {
			t.Fatal(err)
		}
		if s := p.Shape(); s[0] != 2 || s[1] != 7 || s[2] != 19 || s[3] != 13 {
			t.Fatalf("probabilities shape %v", s)
		}
		v := torchx.Float32s(p)
		n := len(img)
		for i, x := range img {
			want := 1 / (1 + math.Exp(-float64(x)))
			if math.Abs(float64(v[n+i])-want) > 1e-5 || math.Abs(float64(v[i])-(1-want)) > 1e-5 {
				t.Fatalf("mirror %v voxel %d: p = %v, want σ(%v) = %v", mirror, i, v[n+i], x, want)
			}
		}
		// Windows: 1 × 4 (19: starts 0,4,7,11) × 3 (13: 0,3,5) = 12, in batches of 3.
		wantCalls := 4
		if mirror {
			wantCalls *= 8
		}
		if calls != wantCalls {
			t.Fatalf("mirror %v: %d network calls, want %d", mirror, calls, wantCalls)
		}
	}
	// A constant network labels every voxel with its class.
	constNet := func(x torchx.Tensor) torchx.Tensor {
		s := x.Shape()
		return torchx.Cat([]torchx.Tensor{torchx.Zeros([]int64{s[0], 2, s[2], s[3], s[4]}, torchx.Float32, "cpu"),
			torchx.Full([]int64{s[0], 1, s[2], s[3], s[4]}, 5, torchx.Float32, "cpu")}, 1)
	}
	lbl, err := SlidingWindow{Patch: [3]int{8, 8, 8}, Overlap: 0.5, Batch: 2}.Predict(img, shape, 3, constNet)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range lbl {
		if l != 2 {
			t.Fatalf("voxel %d labelled %d, want 2", i, l)
		}
	}
}
