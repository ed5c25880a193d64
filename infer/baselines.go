package infer

import (
	"github.com/sli2vol/sli2vol/data"
	"github.com/sli2vol/sli2vol/models"
	"github.com/sli2vol/sli2vol/torchx"
)

// FeatureAffinity is the untrained baseline: the affinity of the bottleneck's own channels
// (GEIG or edge profile), no network — what the learned encoder has to beat.
type FeatureAffinity struct {
	Input  models.Bottleneck
	Radius int
}

// SliceFeatures implements Network.
func (f *FeatureAffinity) SliceFeatures(s torchx.Tensor) torchx.Tensor { return f.Input.Forward(s) }

// PLFeatures implements Network.
func (f *FeatureAffinity) PLFeatures(m torchx.Tensor) torchx.Tensor { return f.Input.Forward(m) }

// Affinity implements Network (Eq. 2 on the raw channels).
func (f *FeatureAffinity) Affinity(q, k torchx.Tensor) torchx.Tensor {
	return torchx.Softmax(torchx.Correlation(q, k, f.Radius), 1)
}

// Propagate implements Network (Eq. 4).
func (f *FeatureAffinity) Propagate(a, src torchx.Tensor) torchx.Tensor {
	return torchx.Aggregate(a, src, f.Radius)
}

// CopyMask is the trivial baseline: the annotated mask on every slice of the volume (not
// limited to the structure's true extent, which would use the answer).
func CopyMask(p *Prepared, mask []int32) []int32 {
	out := make([]int32, p.Image.NumVoxels())
	for n := 0; n < p.Slicer.Len(); n++ {
		data.SetSlice(p.Slicer, out, n, mask)
	}
	return out
}
