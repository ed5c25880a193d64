package models

import (
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
