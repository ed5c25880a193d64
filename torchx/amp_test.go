package torchx

import (
	"math"
	"testing"
)

func relErr(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num += math.Abs(float64(a[i] - b[i]))
		den += math.Abs(float64(b[i]))
	}
	return num / den
}

// Under autocast a convolution runs in bfloat16 (its output dtype says so) and stays within
// bfloat16's precision of the float32 result; on CUDA softmax stays float32; autocast ends
// with f.
func testAutocast(t *testing.T, dev string) {
	ManualSeed(1)
	x := To(Randn([]int64{2, 8, 16, 16}, Float32, "cpu"), dev, -1)
	w := To(MulScalar(Randn([]int64{8, 8, 3, 3}, Float32, "cpu"), 0.1), dev, -1)
	ref := Float32s(Conv2d(x, w, Tensor{}, ConvOpts{Padding: []int64{1}}))
	var y, s Tensor
	Autocast(dev, BFloat16, func() {
		if !AutocastEnabled(dev) {
			t.Fatal("autocast not on inside")
		}
		y = Conv2d(x, w, Tensor{}, ConvOpts{Padding: []int64{1}})
		s = Softmax(y, 1)
	})
	if AutocastEnabled(dev) {
		t.Fatal("autocast still on after")
	}
	// CUDA autocast keeps softmax in float32; CPU autocast (libtorch 1.13) does not list it.
	if DTypeOf(y) != BFloat16 || (dev != "cpu" && DTypeOf(s) != Float32) {
		t.Fatalf("%s: conv dtype %d, softmax dtype %d under autocast", dev, DTypeOf(y), DTypeOf(s))
	}
	// bfloat16 keeps 8 bits of mantissa: relative error ~ 2⁻⁸ per element.
	if e := relErr(Float32s(y), ref); e > 1e-2 {
		t.Fatalf("%s: bf16 conv relative error %.4f", dev, e)
	}
}

func TestAutocastCPU(t *testing.T) { testAutocast(t, "cpu") }

func TestAutocastCUDA(t *testing.T) {
	needCUDA(t)
	testAutocast(t, "cuda")
}

// Channels-last changes memory order only: the same values, and a conv gives the same result.
func TestChannelsLastAndCUDNNBenchmark(t *testing.T) {
	ManualSeed(2)
	x := Randn([]int64{2, 3, 5, 7}, Float32, "cpu")
	w := Randn([]int64{4, 3, 3, 3}, Float32, "cpu")
	cl := ChannelsLast(x)
	if !IsChannelsLast(cl) || IsChannelsLast(x) {
		t.Fatal("channels-last flag wrong")
	}
	assertClose(t, "values", Float64s(cl), Float64s(x), 0)
	a := Float32s(Conv2d(x, w, Tensor{}, ConvOpts{}))
	b := Float32s(Conv2d(cl, ChannelsLast(w), Tensor{}, ConvOpts{}))
	if e := relErr(b, a); e > 1e-6 {
		t.Fatalf("channels-last conv differs: %g", e)
	}
	if v := ChannelsLast(Zeros([]int64{3, 4}, Float32, "cpu")); len(v.Shape()) != 2 {
		t.Fatal("2D tensor changed")
	}
	SetCUDNNBenchmark(true)
	if !CUDNNBenchmark() {
		t.Fatal("cuDNN benchmark flag not set")
	}
	SetCUDNNBenchmark(false)
}
