package models

import (
	"math"

	"github.com/sli2vol/sli2vol/torchx"
)

// Conv2d is torch.nn.Conv2d with square kernels and equal stride/padding on both axes.
type Conv2d struct {
	Weight, Bias Tensor // Bias undefined when the layer has none
	Stride, Pad  int64
}

// NewConv2d initialises the weight Xavier-normal (as the published Sli2Vol code does) and
// the bias as PyTorch does, U(±1/√fan_in). Tensors are created on the CPU from libtorch's
// seeded generator, so the same seed gives the same weights on every device.
func NewConv2d(in, out, k, stride, pad int, bias bool) *Conv2d {
	fanIn, fanOut := float64(in*k*k), float64(out*k*k)
	std := math.Sqrt(2 / (fanIn + fanOut))
	c := &Conv2d{
		Weight: newParam(torchx.MulScalar(torchx.Randn([]int64{int64(out), int64(in), int64(k), int64(k)}, torchx.Float32, "cpu"), std)),
		Stride: int64(stride), Pad: int64(pad),
	}
	if bias {
		b := 1 / math.Sqrt(fanIn)
		c.Bias = newParam(torchx.AddScalar(torchx.MulScalar(torchx.Rand([]int64{int64(out)}, torchx.Float32, "cpu"), 2*b), -b))
	}
	return c
}

func newParam(t Tensor) Tensor {
	t = torchx.Detach(t)
	torchx.SetRequiresGrad(t, true)
	return t
}

// Visit implements Module.
func (c *Conv2d) Visit(prefix string, v *Visitor) {
	v.param(prefix, "weight", &c.Weight)
	v.param(prefix, "bias", &c.Bias)
}

// Forward convolves x (N×C×H×W).
func (c *Conv2d) Forward(x Tensor) Tensor {
	return torchx.Conv2d(x, c.Weight, c.Bias, torchx.ConvOpts{Stride: []int64{c.Stride}, Padding: []int64{c.Pad}})
}

// BatchNorm is torch.nn.BatchNorm1d/2d/3d (momentum 0.1, eps 1e-5, affine, running stats):
// the normalisation does not depend on the number of spatial dims, only the init differs.
type BatchNorm struct {
	Weight, Bias            Tensor
	RunningMean, RunningVar Tensor
	NumBatchesTracked       Tensor
	Training                bool
	Momentum, Eps           float64
	// Cross, when set, computes training batches' statistics over several processes' batches
	// (SyncBatchNorm in data-parallel training); nil: this batch alone.
	Cross CrossBatchNorm
	// Cumulative makes the running statistics the plain mean of the training batches' since
	// it was set (PyTorch's momentum=None) instead of an exponential average: the first batch
	// replaces the old statistics. Test-time re-estimation on one volume (infer.adapt_norm).
	Cumulative bool
	averaged   int // batches averaged since SetCumulative
}

// CrossBatchNorm is batch normalisation in training over the batches of several processes
// (dist.SyncBatchNorm): the global statistics normalise x and update the running ones.
type CrossBatchNorm interface {
	BatchNorm(x, weight, bias, runningMean, runningVar Tensor, momentum, eps float64) Tensor
}

// NewBatchNorm2d initialises γ ~ N(1, 0.02) and β = 0, as the published code does.
func NewBatchNorm2d(c int) *BatchNorm {
	n := []int64{int64(c)}
	return newBatchNorm(c, newParam(torchx.AddScalar(torchx.MulScalar(torchx.Randn(n, torchx.Float32, "cpu"), 0.02), 1)))
}

// NewBatchNorm3d initialises γ = 1 and β = 0, as torch.nn.BatchNorm3d does.
func NewBatchNorm3d(c int) *BatchNorm {
	return newBatchNorm(c, newParam(torchx.Full([]int64{int64(c)}, 1, torchx.Float32, "cpu")))
}

func newBatchNorm(c int, weight Tensor) *BatchNorm {
	n := []int64{int64(c)}
	return &BatchNorm{
		Weight:            weight,
		Bias:              newParam(torchx.Zeros(n, torchx.Float32, "cpu")),
		RunningMean:       torchx.Zeros(n, torchx.Float32, "cpu"),
		RunningVar:        torchx.Full(n, 1, torchx.Float32, "cpu"),
		NumBatchesTracked: torchx.Zeros(nil, torchx.Int64, "cpu"),
		Training:          true,
		Momentum:          0.1,
		Eps:               1e-5,
	}
}

// Visit implements Module.
func (b *BatchNorm) Visit(prefix string, v *Visitor) {
	v.param(prefix, "weight", &b.Weight)
	v.param(prefix, "bias", &b.Bias)
	v.buffer(prefix, "running_mean", &b.RunningMean)
	v.buffer(prefix, "running_var", &b.RunningVar)
	v.buffer(prefix, "num_batches_tracked", &b.NumBatchesTracked)
	v.mode(&b.Training)
	if v.BatchNorm != nil {
		v.BatchNorm(b)
	}
}

// Forward normalises x; in training it updates the running statistics in place.
func (b *BatchNorm) Forward(x Tensor) Tensor {
	momentum := b.Momentum
	if b.Training {
		torchx.AddScalarInPlace(b.NumBatchesTracked, 1)
		if b.Cumulative {
			b.averaged++
			momentum = 1 / float64(b.averaged)
		}
		if b.Cross != nil {
			return b.Cross.BatchNorm(x, b.Weight, b.Bias, b.RunningMean, b.RunningVar, momentum, b.Eps)
		}
	}
	return torchx.BatchNorm(x, b.Weight, b.Bias, b.RunningMean, b.RunningVar, b.Training, momentum, b.Eps)
}

// SetBatchNormTraining switches m's batch-norm layers alone between training (batch
// statistics, running ones updated) and evaluation (running statistics, left as they are).
func SetBatchNormTraining(m Module, on bool) {
	m.Visit("", &Visitor{BatchNorm: func(b *BatchNorm) { b.Training = on }})
}

// SetCumulative switches every batch-norm layer of m to cumulative running statistics
// (BatchNorm.Cumulative), starting a new average, or back to the exponential one.
func SetCumulative(m Module, on bool) {
	m.Visit("", &Visitor{BatchNorm: func(b *BatchNorm) { b.Cumulative, b.averaged = on, 0 }})
}
