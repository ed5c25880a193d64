package models

import (
	"math"
	"testing"

	"github.com/sli2vol/sli2vol/torchx"
)

// Batch norm counts its training batches, as torch.nn.BatchNorm2d's num_batches_tracked
// does, and not the evaluation ones.
func TestBatchNormCountsTrainingBatches(t *testing.T) {
	b := NewBatchNorm2d(3)
	x := torchx.Randn([]int64{2, 3, 4, 4}, torchx.Float32, "cpu")
	b.Forward(x)
	b.Forward(x)
	b.Training = false
	b.Forward(x)
	if n := torchx.Item(b.NumBatchesTracked); n != 2 {
		t.Fatalf("num_batches_tracked %v after two training and one evaluation batch, want 2", n)
	}
}

// Buffers lists a batch norm's three buffers, by name (num_batches_tracked, running_mean,
// running_var), and no parameter.
func TestBuffers(t *testing.T) {
	b := NewBatchNorm2d(3)
	got := Buffers(b)
	want := []Tensor{b.NumBatchesTracked, b.RunningMean, b.RunningVar}
	if len(got) != len(want) {
		t.Fatalf("%d buffers, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].T != want[i].T {
			t.Fatalf("buffer %d is not the %d-th by name", i, i)
		}
	}
}

// With Cumulative, the running statistics are the plain mean over the training batches since
// it was set of each batch's channel mean and unbiased variance (PyTorch's momentum=None),
// whatever they held before; switched back, the exponential average with Momentum resumes.
func TestBatchNormCumulative(t *testing.T) {
	b := NewBatchNorm2d(2)
	// Earlier statistics that the first cumulative batch must replace.
	b.Forward(torchx.AddScalar(torchx.Randn([]int64{2, 2, 3, 3}, torchx.Float32, "cpu"), 5))
	SetCumulative(b, true)
	var batches [][]float32
	for k := 0; k < 3; k++ {
		x := torchx.AddScalar(torchx.MulScalar(torchx.Randn([]int64{2, 2, 3, 3}, torchx.Float32, "cpu"), float64(k+1)), float64(k))
		batches = append(batches, torchx.Float32s(x))
		b.Forward(x)
	}
	// By hand: batch k, channel c holds x[n][c][i] at n*18 + c*9 + i.
	wantMean, wantVar := make([]float64, 2), make([]float64, 2)
	for _, v := range batches {
		for c := 0; c < 2; c++ {
			var xs []float64
			for n := 0; n < 2; n++ {
				for i := 0; i < 9; i++ {
					xs = append(xs, float64(v[n*18+c*9+i]))
				}
			}
			m := 0.0
			for _, x := range xs {
				m += x
			}
			m /= float64(len(xs))
			ss := 0.0
			for _, x := range xs {
				ss += (x - m) * (x - m)
			}
			wantMean[c] += m / 3
			wantVar[c] += ss / float64(len(xs)-1) / 3
		}
	}
	gotMean, gotVar := torchx.Float32s(b.RunningMean), torchx.Float32s(b.RunningVar)
	for c := 0; c < 2; c++ {
		if math.Abs(float64(gotMean[c])-wantMean[c]) > 1e-4 || math.Abs(float64(gotVar[c])-wantVar[c]) > 1e-4*wantVar[c] {
			t.Fatalf("channel %d: running mean/var %v/%v, want %v/%v", c, gotMean[c], gotVar[c], wantMean[c], wantVar[c])
		}
	}
	// Back to the exponential average: one batch moves the statistics by Momentum.
	SetCumulative(b, false)
	x := torchx.Full([]int64{2, 2, 3, 3}, 7, torchx.Float32, "cpu")
	b.Forward(x)
	got := torchx.Float32s(b.RunningMean)
	for c := 0; c < 2; c++ {
		want := 0.9*float64(gotMean[c]) + 0.1*7
		if math.Abs(float64(got[c])-want) > 1e-5 {
			t.Fatalf("channel %d after cumulative off: running mean %v, want %v", c, got[c], want)
		}
	}
}
