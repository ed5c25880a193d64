package torchx

// #include <stdlib.h>
// #include "torchx.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// Autocast runs f with automatic mixed precision on device ("cpu" or "cuda…") in dtype
// (BFloat16 or Float16): convolutions and matrix products run in dtype, precision-sensitive
// ops (softmax, losses) in float32, as torch.autocast does. Like grad mode, autocast is per
// OS thread, so the goroutine is locked to its thread meanwhile. Run backward after f returns.
func Autocast(device string, dt DType, f func()) {
	d := C.CString(device)
	defer C.free(unsafe.Pointer(d))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	check(C.tx_autocast(d, cbool(true), C.int8_t(dt)))
	defer C.tx_autocast(d, cbool(false), C.int8_t(dt))
	f()
}

// ChannelsLast returns a 4D tensor in channels-last (NHWC) memory order, which cuDNN's
// tensor-core convolutions prefer; other tensors come back unchanged.
func ChannelsLast(t Tensor) Tensor {
	return call1([]Tensor{t}, func(out *C.TxTensor) C.TxErr { return C.tx_channels_last(h(t), out) })
}

// SetCUDNNBenchmark lets cuDNN time its algorithms for each new input shape and keep the
// fastest (fixed-size training crops benefit; results stay deterministic only without it).
func SetCUDNNBenchmark(on bool) { C.tx_set_cudnn_benchmark(cbool(on)) }
