package models

import (
	"math"

	"github.com/sli2vol/sli2vol/torchx"
)

// The layers UNETR++ is built from: 3D (transposed) convolutions with per-axis kernels,
// Linear, LayerNorm and GroupNorm. Their default initialisations are PyTorch's, so a network
// built here starts where torch.nn would.

// Conv3d is torch.nn.Conv3d (or ConvTranspose3d when Transposed) with per-axis kernel and
// stride; padding is MONAI's get_conv_layer rule, ⌊(k − s + 1)/2⌋, which is "same" for
// stride 1 and none for kernel = stride.
type Conv3d struct {
	Weight, Bias Tensor // Bias undefined when the layer has none
	Stride, Pad  [3]int64
	Transposed   bool
}

// NewConv3d initialises as PyTorch does (kaiming_uniform with a = √5, which is
// U(±1/√fan_in), for weight and bias); fan_in counts the input channels of the forward
// convolution, which for a transposed conv is the weight's dim 1.
func NewConv3d(in, out int, kernel, stride [3]int, bias, transposed bool) *Conv3d {
	k := int64(kernel[0] * kernel[1] * kernel[2])
	shape := []int64{int64(out), int64(in), int64(kernel[0]), int64(kernel[1]), int64(kernel[2])}
	fanIn := float64(int64(in) * k)
	if transposed {
		shape[0], shape[1] = int64(in), int64(out)
		fanIn = float64(int64(out) * k)
	}
	c := &Conv3d{Weight: newParam(uniform(shape, 1/math.Sqrt(fanIn))), Transposed: transposed}
	for i := range 3 {
		c.Stride[i] = int64(stride[i])
		if !transposed {
			c.Pad[i] = int64((kernel[i] - stride[i] + 1) / 2)
		}
	}
	if bias {
		c.Bias = newParam(uniform([]int64{int64(out)}, 1/math.Sqrt(fanIn)))
	}
	return c
}

// uniform draws U(−b, b) from libtorch's seeded CPU generator.
func uniform(shape []int64, b float64) Tensor {
	return torchx.AddScalar(torchx.MulScalar(torchx.Rand(shape, torchx.Float32, "cpu"), 2*b), -b)
}

// Visit implements Module.
func (c *Conv3d) Visit(prefix string, v *Visitor) {
	v.param(prefix, "weight", &c.Weight)
	v.param(prefix, "bias", &c.Bias)
}

// Forward convolves x (N×C×D×H×W).
func (c *Conv3d) Forward(x Tensor) Tensor {
	o := torchx.ConvOpts{Stride: c.Stride[:], Padding: c.Pad[:]}
	if c.Transposed {
		return torchx.ConvTranspose3d(x, c.Weight, c.Bias, o)
	}
	return torchx.Conv3d(x, c.Weight, c.Bias, o)
}

// Linear is torch.nn.Linear: y = x·Wᵀ + b over the last dim.
type Linear struct {
	Weight, Bias Tensor
}

// NewLinear initialises as PyTorch does: U(±1/√in) for weight and bias.
func NewLinear(in, out int, bias bool) *Linear {
	b := 1 / math.Sqrt(float64(in))
	l := &Linear{Weight: newParam(uniform([]int64{int64(out), int64(in)}, b))}
	if bias {
		l.Bias = newParam(uniform([]int64{int64(out)}, b))
	}
	return l
}

// NewLinearTruncNormal initialises the weight N(0, 0.02²) and the bias 0, which is what
// UNETR++'s encoder does (timm's trunc_normal_ with std 0.02 truncates at ±2, i.e. ±100σ,
// so it is a plain normal in practice).
func NewLinearTruncNormal(in, out int, bias bool) *Linear {
	l := &Linear{Weight: newParam(torchx.MulScalar(torchx.Randn([]int64{int64(out), int64(in)}, torchx.Float32, "cpu"), 0.02))}
	if bias {
		l.Bias = newParam(torchx.Zeros([]int64{int64(out)}, torchx.Float32, "cpu"))
	}
	return l
}

// Visit implements Module.
func (l *Linear) Visit(prefix string, v *Visitor) {
	v.param(prefix, "weight", &l.Weight)
	v.param(prefix, "bias", &l.Bias)
}

// Forward applies the layer to the last dim of x.
func (l *Linear) Forward(x Tensor) Tensor {
	y := torchx.Matmul(x, torchx.Permute(l.Weight, 1, 0))
	if torchx.Defined(l.Bias) {
		y = torchx.Add(y, l.Bias)
	}
	return y
}

// LayerNorm is torch.nn.LayerNorm over the last dim (eps 1e-5, γ = 1, β = 0).
type LayerNorm struct {
	Weight, Bias Tensor
	Eps          float64
}

// NewLayerNorm builds a LayerNorm over c features.
func NewLayerNorm(c int) *LayerNorm {
	n := []int64{int64(c)}
	return &LayerNorm{
		Weight: newParam(torchx.Full(n, 1, torchx.Float32, "cpu")),
		Bias:   newParam(torchx.Zeros(n, torchx.Float32, "cpu")),
		Eps:    1e-5,
	}
}

// Visit implements Module.
func (l *LayerNorm) Visit(prefix string, v *Visitor) {
	v.param(prefix, "weight", &l.Weight)
	v.param(prefix, "bias", &l.Bias)
}

// Forward normalises the last dim of x.
func (l *LayerNorm) Forward(x Tensor) Tensor {
	return torchx.LayerNorm(x, l.Weight.Shape(), l.Weight, l.Bias, l.Eps)
}

// GroupNorm is torch.nn.GroupNorm (eps 1e-5, affine, γ = 1, β = 0).
type GroupNorm struct {
	Groups       int64
	Weight, Bias Tensor
	Eps          float64
}

// NewGroupNorm builds a GroupNorm of c channels in groups groups.
func NewGroupNorm(groups, c int) *GroupNorm {
	n := []int64{int64(c)}
	return &GroupNorm{
		Groups: int64(groups),
		Weight: newParam(torchx.Full(n, 1, torchx.Float32, "cpu")),
		Bias:   newParam(torchx.Zeros(n, torchx.Float32, "cpu")),
		Eps:    1e-5,
	}
}

// Visit implements Module.
func (g *GroupNorm) Visit(prefix string, v *Visitor) {
	v.param(prefix, "weight", &g.Weight)
	v.param(prefix, "bias", &g.Bias)
}

// Forward normalises x (N×C×…).
func (g *GroupNorm) Forward(x Tensor) Tensor {
	return torchx.GroupNorm(x, g.Groups, g.Weight, g.Bias, g.Eps)
}

// Dropout3d zeroes whole channels of x (N×C×D×H×W) with probability p and scales the rest
// by 1/(1−p), as torch.nn.Dropout3d does; the identity outside training.
func Dropout3d(x Tensor, p float64, training bool) Tensor {
	if !training || p == 0 {
		return x
	}
	s := x.Shape()
	keep := torchx.Dropout(torchx.Full([]int64{s[0], s[1], 1, 1, 1}, 1, torchx.DTypeOf(x), torchx.DeviceOf(x)), p, true)
	return torchx.Mul(x, keep)
}
