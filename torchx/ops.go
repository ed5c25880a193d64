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

// Clone copies t into its own storage (recorded by autograd): a view kept past the tensor it
// views would keep all of that tensor's memory.
func Clone(t Tensor) Tensor { return clone(t) }

// Narrow is the view t[..., start:start+length, ...] along dim.
func Narrow(t Tensor, dim, start, length int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_narrow(h(t), C.int64_t(dim), C.int64_t(start), C.int64_t(length), out)
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
	PadConstant  PadMode = C.TX_PAD_CONSTANT
	PadReplicate PadMode = C.TX_PAD_REPLICATE
	PadReflect   PadMode = C.TX_PAD_REFLECT
)

// Pad pads the last len(pads)/2 dims; pads run from the last dim backwards
// (left, right, top, bottom, front, back) as in torch.nn.functional.pad.
func Pad(t Tensor, pads []int64, mode PadMode, value float64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_pad(h(t), ints(pads), C.int(len(pads)), C.TxPadMode(mode), C.double(value), out)
	})
}

// Flip reverses t along dims (torch.flip).
func Flip(t Tensor, dims ...int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_flip(h(t), ints(dims), C.int(len(dims)), out)
	})
}

// Elementwise ops.

// unaryCode, binaryCode and reduceCode are the shim's op codes (torchx.h). The ops that only
// the tests use have their wrappers in testonly_test.go.
type (
	unaryCode  C.TxUnaryOp
	binaryCode C.TxBinaryOp
	reduceCode C.TxReduceOp
)

const (
	opExp     unaryCode = C.TX_EXP
	opLog     unaryCode = C.TX_LOG
	opSqrt    unaryCode = C.TX_SQRT
	opAbs     unaryCode = C.TX_ABS
	opNeg     unaryCode = C.TX_NEG
	opSigmoid unaryCode = C.TX_SIGMOID
	opTanh    unaryCode = C.TX_TANH
	opRelu    unaryCode = C.TX_RELU
	opGelu    unaryCode = C.TX_GELU
	opRsqrt   unaryCode = C.TX_RSQRT
	opSign    unaryCode = C.TX_SIGN
	opFloor   unaryCode = C.TX_FLOOR
	opRound   unaryCode = C.TX_ROUND

	opAdd     binaryCode = C.TX_ADD
	opSub     binaryCode = C.TX_SUB
	opMul     binaryCode = C.TX_MUL
	opDiv     binaryCode = C.TX_DIV
	opMaximum binaryCode = C.TX_MAXIMUM
	opMinimum binaryCode = C.TX_MINIMUM
	opEq      binaryCode = C.TX_EQ
	opGt      binaryCode = C.TX_GT
	opLt      binaryCode = C.TX_LT

	opSum  reduceCode = C.TX_SUM
	opMean reduceCode = C.TX_MEAN
	opAmax reduceCode = C.TX_AMAX
	opAmin reduceCode = C.TX_AMIN
)

func unary(t Tensor, op unaryCode) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_unary(h(t), C.TxUnaryOp(op), out) })
}

// Sqrt is the square root.
func Sqrt(t Tensor) Tensor { return unary(t, opSqrt) }

// Neg is -t.
func Neg(t Tensor) Tensor { return unary(t, opNeg) }

// Round rounds half to even.
func Round(t Tensor) Tensor { return unary(t, opRound) }

// Relu is max(t, 0).
func Relu(t Tensor) Tensor { return unary(t, opRelu) }

func binaryOp(a, b Tensor, op binaryCode) Tensor {
	return call1([]Tensor{a, b}, func(out *C.TxTensor) C.TxErr {
		return C.tx_binary(h(a), h(b), C.TxBinaryOp(op), out)
	})
}

func scalar(a Tensor, s float64, op binaryCode) Tensor {
	return call1([]Tensor{a}, func(out *C.TxTensor) C.TxErr {
		return C.tx_scalar(h(a), C.double(s), C.TxBinaryOp(op), out)
	})
}

// Add is a+b (broadcasting).
func Add(a, b Tensor) Tensor { return binaryOp(a, b, opAdd) }

// Sub is a-b.
func Sub(a, b Tensor) Tensor { return binaryOp(a, b, opSub) }

// Mul is a*b.
func Mul(a, b Tensor) Tensor { return binaryOp(a, b, opMul) }

// Div is a/b.
func Div(a, b Tensor) Tensor { return binaryOp(a, b, opDiv) }

// AddScalar is a+s.
func AddScalar(a Tensor, s float64) Tensor { return scalar(a, s, opAdd) }

// MulScalar is a*s.
func MulScalar(a Tensor, s float64) Tensor { return scalar(a, s, opMul) }

// DivScalar is a/s.
func DivScalar(a Tensor, s float64) Tensor { return scalar(a, s, opDiv) }

// GtScalar is a>s as bool.
func GtScalar(a Tensor, s float64) Tensor { return scalar(a, s, opGt) }

// Pow is t^exponent.
func Pow(t Tensor, exponent float64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_pow(h(t), C.double(exponent), out) })
}

// clamp limits t to lo (when hasLo) and hi (when hasHi).
func clamp(t Tensor, lo, hi float64, hasLo, hasHi bool) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_clamp(h(t), C.double(lo), C.double(hi), cbool(hasLo), cbool(hasHi), out)
	})
}

// ClampMin limits t from below.
func ClampMin(t Tensor, lo float64) Tensor { return clamp(t, lo, 0, true, false) }

// LeakyRelu is max(t,0) + slope*min(t,0).
func LeakyRelu(t Tensor, slope float64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_leaky_relu(h(t), C.double(slope), out) })
}

// Where picks a where cond is true, else b.
func Where(cond, a, b Tensor) Tensor {
	return call1([]Tensor{cond, a, b}, func(out *C.TxTensor) C.TxErr { return C.tx_where(h(cond), h(a), h(b), out) })
}

// Reductions.

func reduce(t Tensor, op reduceCode, keepdim bool, dims []int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_reduce(h(t), C.TxReduceOp(op), ints(dims), C.int(len(dims)), cbool(keepdim), out)
	})
}

// Sum over dims (all dims when none are given).
func Sum(t Tensor, keepdim bool, dims ...int64) Tensor { return reduce(t, opSum, keepdim, dims) }

// Mean over dims (all dims when none are given).
func Mean(t Tensor, keepdim bool, dims ...int64) Tensor { return reduce(t, opMean, keepdim, dims) }

// Argmax is the index of the max along dim.
func Argmax(t Tensor, dim int64, keepdim bool) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_argmax(h(t), C.int64_t(dim), cbool(keepdim), out)
	})
}

// softmax is the softmax over dim, or its logarithm when log.
func softmax(t Tensor, dim int64, log bool) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_softmax(h(t), C.int64_t(dim), cbool(log), out)
	})
}

// Softmax over dim.
func Softmax(t Tensor, dim int64) Tensor { return softmax(t, dim, false) }

// Linear algebra.

// Matmul is torch.matmul (broadcasting batch dims).
func Matmul(a, b Tensor) Tensor {
	return call1([]Tensor{a, b}, func(out *C.TxTensor) C.TxErr { return C.tx_matmul(h(a), h(b), out) })
}
