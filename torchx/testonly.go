package torchx

// #include <stdlib.h>
// #include "torchx.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// Shim entry points that only the tests call (testonly_test.go gives them their exported
// names there): the shim keeps them so that its op tables are tested whole, but they are no
// part of the package's API.

// stack stacks ts along a new dim.
func stack(ts []Tensor, dim int64) Tensor {
	p, hs := handles(ts)
	return call1(ts, func(out *C.TxTensor) C.TxErr {
		return C.tx_stack(p, C.int(len(hs)), C.int64_t(dim), out)
	})
}

// slice is the view t[..., start:end:step, ...] along dim (end is clamped to the size).
func slice(t Tensor, dim, start, end, step int64) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr {
		return C.tx_slice(h(t), C.int64_t(dim), C.int64_t(start), C.int64_t(end), C.int64_t(step), out)
	})
}

// maxDim is the max along dim and where it is.
func maxDim(t Tensor, dim int64, keepdim bool) (values, indices Tensor) {
	var v, i C.TxTensor
	check(C.tx_max_dim(h(t), C.int64_t(dim), cbool(keepdim), &v, &i))
	keep(t)
	return wrap(v), wrap(i)
}

// bmm is the batched product of B×n×m and B×m×p tensors.
func bmm(a, b Tensor) Tensor {
	return call1([]Tensor{a, b}, func(out *C.TxTensor) C.TxErr { return C.tx_bmm(h(a), h(b), out) })
}

// unfold2d extracts sliding kh×kw patches: N×C×H×W → N×(C·kh·kw)×L (torch.nn.functional.unfold).
func unfold2d(x Tensor, kernel, dilation, padding, stride [2]int64) Tensor {
	return call1([]Tensor{x}, func(out *C.TxTensor) C.TxErr {
		return C.tx_unfold2d(h(x), ints(kernel[:]), ints(dilation[:]), ints(padding[:]), ints(stride[:]), out)
	})
}

// mseLoss is (a-b)² reduced.
func mseLoss(a, b Tensor, r Reduction) Tensor {
	return call1([]Tensor{a, b}, func(out *C.TxTensor) C.TxErr {
		return C.tx_mse_loss(h(a), h(b), C.TxReduction(r), out)
	})
}

// autocastEnabled reports whether autocast is on for device on this OS thread.
func autocastEnabled(device string) bool {
	d := C.CString(device)
	defer C.free(unsafe.Pointer(d))
	return C.tx_autocast_enabled(d) != 0
}

// isChannelsLast reports whether t is stored channels-last.
func isChannelsLast(t Tensor) bool {
	r := C.tx_is_channels_last(h(t)) != 0
	keep(t)
	return r
}

// cudnnBenchmark reports SetCUDNNBenchmark's setting.
func cudnnBenchmark() bool { return C.tx_cudnn_benchmark() != 0 }

// optimizerForeachSteps counts the steps, process-wide, that took the multi-tensor path.
func optimizerForeachSteps() int64 { return int64(C.tx_optim_foreach_steps()) }

// gradEnabled reports whether autograd records ops on this goroutine's OS thread.
func gradEnabled() bool { return C.tx_is_grad_enabled() != 0 }

// clone copies t (recorded by autograd).
func clone(t Tensor) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_clone(h(t), out) })
}

// requiresGrad reports whether autograd tracks t.
func requiresGrad(t Tensor) bool {
	var r C.int
	check(C.tx_requires_grad(h(t), &r))
	runtime.KeepAlive(t.T)
	return r != 0
}
