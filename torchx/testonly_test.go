package torchx

// The package's ops that only its tests use, under the names the tests know them by (see
// testonly.go for those that need cgo).

// Stack stacks ts along a new dim.
func Stack(ts []Tensor, dim int64) Tensor { return stack(ts, dim) }

// Slice is the view t[..., start:end:step, ...] along dim (end is clamped to the size).
func Slice(t Tensor, dim, start, end, step int64) Tensor { return slice(t, dim, start, end, step) }

// MaxDim is the max along dim and where it is.
func MaxDim(t Tensor, dim int64, keepdim bool) (values, indices Tensor) {
	return maxDim(t, dim, keepdim)
}

// Bmm is the batched product of B×n×m and B×m×p tensors.
func Bmm(a, b Tensor) Tensor { return bmm(a, b) }

// Unfold2d extracts sliding kh×kw patches: N×C×H×W → N×(C·kh·kw)×L (torch.nn.functional.unfold).
func Unfold2d(x Tensor, kernel, dilation, padding, stride [2]int64) Tensor {
	return unfold2d(x, kernel, dilation, padding, stride)
}

// MSELoss is (a-b)² reduced.
func MSELoss(a, b Tensor, r Reduction) Tensor { return mseLoss(a, b, r) }

// ConvTranspose2d: w C×O/g×kh×kw, as torch.nn.functional.conv_transpose2d.
func ConvTranspose2d(x, w, b Tensor, o ConvOpts) Tensor { return convolution(x, w, b, o, 2, true) }

// AutocastEnabled reports whether autocast is on for device on this OS thread.
func AutocastEnabled(device string) bool { return autocastEnabled(device) }

// IsChannelsLast reports whether t is stored channels-last.
func IsChannelsLast(t Tensor) bool { return isChannelsLast(t) }

// CUDNNBenchmark reports SetCUDNNBenchmark's setting.
func CUDNNBenchmark() bool { return cudnnBenchmark() }

// OptimizerForeachSteps counts the steps, process-wide, that took the multi-tensor path.
func OptimizerForeachSteps() int64 { return optimizerForeachSteps() }

// ClipGradNorm is ClipGradNormAsync that returns the norm before clipping.
func ClipGradNorm(params []Tensor, maxNorm float64) float64 {
	return clipGradNorm(params, maxNorm, true)
}

// GradEnabled reports whether autograd records ops on this goroutine's OS thread.
func GradEnabled() bool { return gradEnabled() }

// RequiresGrad reports whether autograd tracks t.
func RequiresGrad(t Tensor) bool { return requiresGrad(t) }

// Exp is e^t.
func Exp(t Tensor) Tensor { return unary(t, opExp) }

// Log is the natural logarithm.
func Log(t Tensor) Tensor { return unary(t, opLog) }

// Rsqrt is 1/sqrt(t).
func Rsqrt(t Tensor) Tensor { return unary(t, opRsqrt) }

// Abs is |t|.
func Abs(t Tensor) Tensor { return unary(t, opAbs) }

// Sign is -1, 0 or 1.
func Sign(t Tensor) Tensor { return unary(t, opSign) }

// Floor rounds down.
func Floor(t Tensor) Tensor { return unary(t, opFloor) }

// Sigmoid is 1/(1+e^-t).
func Sigmoid(t Tensor) Tensor { return unary(t, opSigmoid) }

// Tanh is the hyperbolic tangent.
func Tanh(t Tensor) Tensor { return unary(t, opTanh) }

// Gelu is the exact (erf) GELU.
func Gelu(t Tensor) Tensor { return unary(t, opGelu) }

// Maximum is the elementwise max.
func Maximum(a, b Tensor) Tensor { return binaryOp(a, b, opMaximum) }

// Minimum is the elementwise min.
func Minimum(a, b Tensor) Tensor { return binaryOp(a, b, opMinimum) }

// Eq is a==b as bool.
func Eq(a, b Tensor) Tensor { return binaryOp(a, b, opEq) }

// Gt is a>b as bool.
func Gt(a, b Tensor) Tensor { return binaryOp(a, b, opGt) }

// Lt is a<b as bool.
func Lt(a, b Tensor) Tensor { return binaryOp(a, b, opLt) }

// EqScalar is a==s as bool.
func EqScalar(a Tensor, s float64) Tensor { return scalar(a, s, opEq) }

// Amax is the max over dims (all dims when none are given).
func Amax(t Tensor, keepdim bool, dims ...int64) Tensor { return reduce(t, opAmax, keepdim, dims) }

// Amin is the min over dims (all dims when none are given).
func Amin(t Tensor, keepdim bool, dims ...int64) Tensor { return reduce(t, opAmin, keepdim, dims) }

// Clamp limits t to [lo, hi].
func Clamp(t Tensor, lo, hi float64) Tensor { return clamp(t, lo, hi, true, true) }

// LogSoftmax over dim.
func LogSoftmax(t Tensor, dim int64) Tensor { return softmax(t, dim, true) }
