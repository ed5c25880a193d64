package models

import (
	"math"
	"strings"
	"testing"

	"github.com/sli2vol/sli2vol/torchx"
)

// Interpolate makes every floating tensor w·dst + (1−w)·from, element by element as computed
// here in Go from the values read before, keeps dst's counter, and leaves from as it was.
func TestInterpolate(t *testing.T) {
	dst, from := NewBatchNorm2d(3), NewBatchNorm2d(3)
	set := func(b *BatchNorm, w, bias, mean, v []float32, n int64) {
		torchx.CopyInto(b.Weight, torchx.FromFloat32(w, 3))
		torchx.CopyInto(b.Bias, torchx.FromFloat32(bias, 3))
		torchx.CopyInto(b.RunningMean, torchx.FromFloat32(mean, 3))
		torchx.CopyInto(b.RunningVar, torchx.FromFloat32(v, 3))
		torchx.CopyInto(b.NumBatchesTracked, torchx.FromInt64([]int64{n}))
	}
	set(dst, []float32{1, 2, 3}, []float32{-1, 0, 1}, []float32{0.5, 0.5, 0.5}, []float32{2, 4, 8}, 7)
	set(from, []float32{5, 6, 7}, []float32{1, 1, 1}, []float32{0, 1, 2}, []float32{1, 1, 1}, 100)
	before := map[string][]float32{}
	for n, x := range StateDict(dst) {
		if torchx.DTypeOf(x) == torchx.Float32 {
			before[n] = torchx.Float32s(x)
		}
	}
	fromBefore := map[string][]float32{}
	for n, x := range StateDict(from) {
		if torchx.DTypeOf(x) == torchx.Float32 {
			fromBefore[n] = torchx.Float32s(x)
		}
	}
	const w = 0.25
	if err := Interpolate(dst, from, w); err != nil {
		t.Fatal(err)
	}
	after, fromAfter := StateDict(dst), StateDict(from)
	for n, d := range before {
		got := torchx.Float32s(after[n])
		for i := range d {
			want := w*float64(d[i]) + (1-w)*float64(fromBefore[n][i])
			if math.Abs(float64(got[i])-want) > 1e-6 {
				t.Errorf("%s[%d] = %v, want %v", n, i, got[i], want)
			}
			if f := torchx.Float32s(fromAfter[n])[i]; f != fromBefore[n][i] {
				t.Errorf("from's %s[%d] changed: %v → %v", n, i, fromBefore[n][i], f)
			}
		}
	}
	if n := torchx.Item(dst.NumBatchesTracked); n != 7 {
		t.Errorf("num_batches_tracked %v, want dst's 7 (a counter is not interpolated)", n)
	}
}

// Interpolating different architectures, or with a weight outside [0, 1], is an error and
// changes nothing.
func TestInterpolateRefuses(t *testing.T) {
	a, b := NewBatchNorm2d(3), NewBatchNorm2d(4)
	w0 := torchx.Float32s(a.Weight)
	for _, c := range []struct {
		name string
		from Module
		w    float64
		want string
	}{
		{"shape", b, 0.5, "shape"},
		{"weight above 1", NewBatchNorm2d(3), 1.5, "outside"},
		{"weight NaN", NewBatchNorm2d(3), math.NaN(), "outside"},
		{"other names", NewConv2d(3, 3, 1, 1, 0, false), 0.5, "missing"},
	} {
		err := Interpolate(a, c.from, c.w)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
	for i, v := range torchx.Float32s(a.Weight) {
		if v != w0[i] {
			t.Fatalf("weight %d changed by a refused interpolation", i)
		}
	}
}
