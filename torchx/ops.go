package torchx

// #include "torchx.h"
import "C"

// Shape ops.

// Cat concatenates ts along dim.
func Cat(ts []Tensor, dim int64) Tensor {
	p, hs := handles(ts)
	return call1(ts, func(out *C.TxTensor) C.TxErr {
		return C.tx_cat(p, C.int(len(hs)), C.int64_t(dim), out)
	})
}

// Stack stacks ts along a new dim.
func Stack(ts []Tensor, dim int64) Tensor {
	p, hs := handles(ts)
	return call1(ts, func(out *C.TxTensor) C.TxErr {
		return C.tx_stack(p, C.int(len(hs)), C.int64_t(dim), out)
	})
}

// Narrow is the view t[..., start:start+length, ...] along dim.
func Narrow(t Tensor, dim, start, length int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_narrow(h(t), C.int64_t(dim), C.int64_t(start), C.int64_t(length), out)
	})
}

// Slice is the view t[..., start:end:step, ...] along dim (end is clamped to the size).
func Slice(t Tensor, dim, start, end, step int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_slice(h(t), C.int64_t(dim), C.int64_t(start), C.int64_t(end), C.int64_t(step), out)
	})
}

// Reshape returns t with a new shape (one size may be -1).
func Reshape(t Tensor, shape ...int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_reshape(h(t), ints(shape), C.int(len(shape)), out)
	})
}

// Permute reorders t's dims.
func Permute(t Tensor, dims ...int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_permute(h(t), ints(dims), C.int(len(dims)), out)
	})
}

// Unsqueeze inserts a size-1 dim.
func Unsqueeze(t Tensor, dim int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_unsqueeze(h(t), C.int64_t(dim), out) })
}

// Squeeze removes dim if its size is 1.
func Squeeze(t Tensor, dim int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_squeeze(h(t), C.int64_t(dim), out) })
}

// PadMode selects how Pad fills the border.
type PadMode int

// Pad modes, as in torch.nn.functional.pad.
const (
	PadConstant PadMode = iota
	PadReplicate
	PadReflect
)

// Pad pads the last len(pads)/2 dims; pads run from the last dim backwards
// (left, right, top, bottom, front, back) as in torch.nn.functional.pad.
func Pad(t Tensor, pads []int64, mode PadMode, value float64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_pad(h(t), ints(pads), C.int(len(pads)), C.int(mode), C.double(value), out)
	})
}

// Flip reverses t along dims (torch.flip).
func Flip(t Tensor, dims ...int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_flip(h(t), ints(dims), C.int(len(dims)), out)
	})
}

// Elementwise ops.

func unary(t Tensor, op C.int) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_unary(h(t), op, out) })
}

// Exp is e^t.
func Exp(t Tensor) Tensor { return unary(t, C.TX_EXP) }

// Log is the natural logarithm.
func Log(t Tensor) Tensor { return unary(t, C.TX_LOG) }

// Sqrt is the square root.
func Sqrt(t Tensor) Tensor { return unary(t, C.TX_SQRT) }

// Rsqrt is 1/sqrt(t).
func Rsqrt(t Tensor) Tensor { return unary(t, C.TX_RSQRT) }

// Abs is |t|.
func Abs(t Tensor) Tensor { return unary(t, C.TX_ABS) }

// Neg is -t.
func Neg(t Tensor) Tensor { return unary(t, C.TX_NEG) }

// Sign is -1, 0 or 1.
func Sign(t Tensor) Tensor { return unary(t, C.TX_SIGN) }

// Floor rounds down.
func Floor(t Tensor) Tensor { return unary(t, C.TX_FLOOR) }

// Round rounds half to even.
func Round(t Tensor) Tensor { return unary(t, C.TX_ROUND) }

// Sigmoid is 1/(1+e^-t).
func Sigmoid(t Tensor) Tensor { return unary(t, C.TX_SIGMOID) }

// Tanh is the hyperbolic tangent.
func Tanh(t Tensor) Tensor { return unary(t, C.TX_TANH) }

// Relu is max(t, 0).
func Relu(t Tensor) Tensor { return unary(t, C.TX_RELU) }

// Gelu is the exact (erf) GELU.
func Gelu(t Tensor) Tensor { return unary(t, C.TX_GELU) }

func binaryOp(a, b Tensor, op C.int) Tensor {
	return call1([]Tensor{a, b}, func(out *C.TxTensor) C.TxErr { return C.tx_binary(h(a), h(b), op, out) })
}

func scalar(a Tensor, s float64, op C.int) Tensor {
	return call1([]Tensor{a}, func(out *C.TxTensor) C.TxErr { return C.tx_scalar(h(a), C.double(s), op, out) })
}

// Add is a+b (broadcasting).
func Add(a, b Tensor) Tensor { return binaryOp(a, b, C.TX_ADD) }

// Sub is a-b.
func Sub(a, b Tensor) Tensor { return binaryOp(a, b, C.TX_SUB) }

// Mul is a*b.
func Mul(a, b Tensor) Tensor { return binaryOp(a, b, C.TX_MUL) }

// Div is a/b.
func Div(a, b Tensor) Tensor { return binaryOp(a, b, C.TX_DIV) }

// Maximum is the elementwise max.
func Maximum(a, b Tensor) Tensor { return binaryOp(a, b, C.TX_MAXIMUM) }

// Minimum is the elementwise min.
func Minimum(a, b Tensor) Tensor { return binaryOp(a, b, C.TX_MINIMUM) }

// Eq is a==b as bool.
func Eq(a, b Tensor) Tensor { return binaryOp(a, b, C.TX_EQ) }

// Gt is a>b as bool.
func Gt(a, b Tensor) Tensor { return binaryOp(a, b, C.TX_GT) }

// Lt is a<b as bool.
func Lt(a, b Tensor) Tensor { return binaryOp(a, b, C.TX_LT) }

// AddScalar is a+s.
func AddScalar(a Tensor, s float64) Tensor { return scalar(a, s, C.TX_ADD) }

// MulScalar is a*s.
func MulScalar(a Tensor, s float64) Tensor { return scalar(a, s, C.TX_MUL) }

// DivScalar is a/s.
func DivScalar(a Tensor, s float64) Tensor { return scalar(a, s, C.TX_DIV) }

// EqScalar is a==s as bool.
func EqScalar(a Tensor, s float64) Tensor { return scalar(a, s, C.TX_EQ) }

// GtScalar is a>s as bool.
func GtScalar(a Tensor, s float64) Tensor { return scalar(a, s, C.TX_GT) }

// Pow is t^exponent.
func Pow(t Tensor, exponent float64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_pow(h(t), C.double(exponent), out) })
}

// Clamp limits t to [lo, hi].
func Clamp(t Tensor, lo, hi float64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_clamp(h(t), C.double(lo), C.double(hi), 1, 1, out)
	})
}

// ClampMin limits t from below.
func ClampMin(t Tensor, lo float64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_clamp(h(t), C.double(lo), 0, 1, 0, out) })
}

// LeakyRelu is max(t,0) + slope*min(t,0).
func LeakyRelu(t Tensor, slope float64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_leaky_relu(h(t), C.double(slope), out) })
}

// Where picks a where cond is true, else b.
func Where(cond, a, b Tensor) Tensor {
	return call1([]Tensor{cond, a, b}, func(out *C.TxTensor) C.TxErr { return C.tx_where(h(cond), h(a), h(b), out) })
}

// Reductions.

func reduce(t Tensor, op C.int, keepdim bool, dims []int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_reduce(h(t), op, ints(dims), C.int(len(dims)), cbool(keepdim), out)
	})
}

// Sum over dims (all dims when none are given).
func Sum(t Tensor, keepdim bool, dims ...int64) Tensor { return reduce(t, C.TX_SUM, keepdim, dims) }

// Mean over dims (all dims when none are given).
func Mean(t Tensor, keepdim bool, dims ...int64) Tensor { return reduce(t, C.TX_MEAN, keepdim, dims) }

// Amax is the max over dims (all dims when none are given).
func Amax(t Tensor, keepdim bool, dims ...int64) Tensor { return reduce(t, C.TX_AMAX, keepdim, dims) }

// Amin is the min over dims (all dims when none are given).
func Amin(t Tensor, keepdim bool, dims ...int64) Tensor { return reduce(t, C.TX_AMIN, keepdim, dims) }

// MaxDim is the max along dim and where it is.
func MaxDim(t Tensor, dim int64, keepdim bool) (values, indices Tensor) {
	var v, i C.TxTensor
	check(C.tx_max_dim(h(t), C.int64_t(dim), cbool(keepdim), &v, &i))
	keep(t)
	return wrap(v), wrap(i)
}

// Argmax is the index of the max along dim.
func Argmax(t Tensor, dim int64, keepdim bool) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_argmax(h(t), C.int64_t(dim), cbool(keepdim), out)
	})
}

// Softmax over dim.
func Softmax(t Tensor, dim int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_softmax(h(t), C.int64_t(dim), 0, out) })
}

// LogSoftmax over dim.
func LogSoftmax(t Tensor, dim int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_softmax(h(t), C.int64_t(dim), 1, out) })
}

// Linear algebra.

// Matmul is torch.matmul (broadcasting batch dims).
func Matmul(a, b Tensor) Tensor {
	return call1([]Tensor{a, b}, func(out *C.TxTensor) C.TxErr { return C.tx_matmul(h(a), h(b), out) })
}

// Bmm is the batched product of B×n×m and B×m×p tensors.
func Bmm(a, b Tensor) Tensor {
	return call1([]Tensor{a, b}, func(out *C.TxTensor) C.TxErr { return C.tx_bmm(h(a), h(b), out) })
}
