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
