package torchx

// #include "torchx.h"
import "C"

import "fmt"

// ConvOpts are a convolution's hyper-parameters. Zero values mean PyTorch's defaults
// (stride 1, padding 0, dilation 1, groups 1); a single value applies to every spatial dim.
type ConvOpts struct {
	Stride, Padding, Dilation, OutputPadding []int64
	Groups                                   int64
}

func spatial(name string, v []int64, nsp int, def int64) []int64 {
	switch len(v) {
	case 0:
		out := make([]int64, nsp)
		for i := range out {
			out[i] = def
		}
		return out
	case 1:
		out := make([]int64, nsp)
		for i := range out {
			out[i] = v[0]
		}
		return out
	case nsp:
		return v
	}
	panic(&Error{Msg: fmt.Sprintf("convolution %s has %d values for %d spatial dims", name, len(v), nsp)})
}

func convolution(x, w, b Tensor, o ConvOpts, nsp int, transposed bool) Tensor {
	stride := spatial("stride", o.Stride, nsp, 1)
	pad := spatial("padding", o.Padding, nsp, 0)
	dil := spatial("dilation", o.Dilation, nsp, 1)
	outPad := spatial("output_padding", o.OutputPadding, nsp, 0)
	groups := o.Groups
	if groups == 0 {
		groups = 1
	}
	return call1([]Tensor{x, w, b}, func(out *C.TxTensor) C.TxErr {
		return C.tx_convolution(h(x), h(w), h(b), ints(stride), ints(pad), ints(dil), C.int(nsp),
			cbool(transposed), ints(outPad), C.int64_t(groups), out)
	})
}

// Conv2d: x N×C×H×W, w O×C/g×kh×kw, b (O) or undefined.
func Conv2d(x, w, b Tensor, o ConvOpts) Tensor { return convolution(x, w, b, o, 2, false) }

// Conv3d: x N×C×D×H×W, w O×C/g×kd×kh×kw.
func Conv3d(x, w, b Tensor, o ConvOpts) Tensor { return convolution(x, w, b, o, 3, false) }

// ConvTranspose3d: w C×O/g×kd×kh×kw.
func ConvTranspose3d(x, w, b Tensor, o ConvOpts) Tensor { return convolution(x, w, b, o, 3, true) }

// BatchNorm normalises over all dims but the channel dim (1). In training it uses the batch
// statistics and updates runningMean/runningVar in place (when defined) with momentum.
func BatchNorm(x, weight, bias, runningMean, runningVar Tensor, training bool, momentum, eps float64) Tensor {
	return call1([]Tensor{x, weight, bias, runningMean, runningVar}, func(out *C.TxTensor) C.TxErr {
		return C.tx_batch_norm(h(x), h(weight), h(bias), h(runningMean), h(runningVar),
			cbool(training), C.double(momentum), C.double(eps), out)
	})
}

// InstanceNorm normalises each sample and channel over its spatial dims (no running stats).
func InstanceNorm(x, weight, bias Tensor, eps float64) Tensor {
	return call1([]Tensor{x, weight, bias}, func(out *C.TxTensor) C.TxErr {
		return C.tx_instance_norm(h(x), h(weight), h(bias), C.double(eps), out)
	})
}

// GroupNorm normalises groups of channels per sample.
func GroupNorm(x Tensor, groups int64, weight, bias Tensor, eps float64) Tensor {
	return call1([]Tensor{x, weight, bias}, func(out *C.TxTensor) C.TxErr {
		return C.tx_group_norm(h(x), C.int64_t(groups), h(weight), h(bias), C.double(eps), out)
	})
}

// LayerNorm normalises over the trailing dims given by shape.
func LayerNorm(x Tensor, shape []int64, weight, bias Tensor, eps float64) Tensor {
	return call1([]Tensor{x, weight, bias}, func(out *C.TxTensor) C.TxErr {
		return C.tx_layer_norm(h(x), ints(shape), C.int(len(shape)), h(weight), h(bias), C.double(eps), out)
	})
}

// InterpMode is an interpolation kernel.
type InterpMode int

// Interpolation modes of torch.nn.functional.interpolate.
const (
	Nearest   InterpMode = C.TX_NEAREST
	Bilinear  InterpMode = C.TX_BILINEAR
	Trilinear InterpMode = C.TX_TRILINEAR
)

// Interpolate resizes the spatial dims of x (N×C×...) to size.
func Interpolate(x Tensor, size []int64, mode InterpMode, alignCorners bool) Tensor {
	return call1([]Tensor{x}, func(out *C.TxTensor) C.TxErr {
		return C.tx_interpolate(h(x), ints(size), C.int(len(size)), C.TxInterpMode(mode), cbool(alignCorners), out)
	})
}

// OneHot turns int64 class ids into a trailing one-hot dim of numClasses (int64).
func OneHot(t Tensor, numClasses int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_one_hot(h(t), C.int64_t(numClasses), out) })
}

// Dropout zeroes elements with probability p and scales the rest by 1/(1-p) when train.
func Dropout(t Tensor, p float64, train bool) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_dropout(h(t), C.double(p), cbool(train), out) })
}

// Reduction of a loss over its elements.
type Reduction int

// Loss reductions (the numbering of at::Reduction).
const (
	ReduceNone Reduction = C.TX_REDUCTION_NONE
	ReduceMean Reduction = C.TX_REDUCTION_MEAN
	ReduceSum  Reduction = C.TX_REDUCTION_SUM
)

// L1Loss is |a-b| reduced.
func L1Loss(a, b Tensor, r Reduction) Tensor {
	return call1([]Tensor{a, b}, func(out *C.TxTensor) C.TxErr { return C.tx_l1_loss(h(a), h(b), C.TxReduction(r), out) })
}

// SmoothL1Loss is the Huber-type loss with threshold beta.
func SmoothL1Loss(a, b Tensor, r Reduction, beta float64) Tensor {
	return call1([]Tensor{a, b}, func(out *C.TxTensor) C.TxErr {
		return C.tx_smooth_l1_loss(h(a), h(b), C.TxReduction(r), C.double(beta), out)
	})
}

// CrossEntropy of logits N×C×... against int64 class ids N×... (weight may be undefined).
func CrossEntropy(logits, target, weight Tensor, r Reduction, ignoreIndex int64, labelSmoothing float64) Tensor {
	return call1([]Tensor{logits, target, weight}, func(out *C.TxTensor) C.TxErr {
		return C.tx_cross_entropy(h(logits), h(target), h(weight), C.TxReduction(r), C.int64_t(ignoreIndex),
			C.double(labelSmoothing), out)
	})
}
