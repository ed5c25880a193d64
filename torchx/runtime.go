package torchx

// #include "torchx.h"
import "C"

import "runtime"

// LibtorchVersion is the version of the libtorch the shim was compiled against.
func LibtorchVersion() string { return C.GoString(C.tx_libtorch_version()) }

// CUDAAvailable reports whether this libtorch has CUDA and sees a GPU.
func CUDAAvailable() bool { return C.tx_cuda_available() != 0 && C.tx_cuda_device_count() > 0 }

// CUDADeviceCount is the number of GPUs libtorch sees.
func CUDADeviceCount() int { return int(C.tx_cuda_device_count()) }

// CUDNNAvailable reports whether cuDNN is usable.
func CUDNNAvailable() bool { return C.tx_cudnn_available() != 0 }

// ManualSeed seeds libtorch's global generators (CPU and CUDA).
func ManualSeed(seed uint64) { C.tx_manual_seed(C.uint64_t(seed)) }

// SetNumThreads sets libtorch's intra-op thread count (n <= 0 leaves it).
func SetNumThreads(n int) { C.tx_set_num_threads(C.int(n)) }

// NumThreads is libtorch's intra-op thread count.
func NumThreads() int { return int(C.tx_get_num_threads()) }

// GradEnabled reports whether autograd records ops on this goroutine's OS thread.
func GradEnabled() bool { return C.tx_is_grad_enabled() != 0 }

// NoGrad runs f with autograd off: no graph is recorded and no activations kept, as in
// PyTorch's torch.no_grad(). The goroutine is locked to its OS thread meanwhile, because
// libtorch keeps the grad mode per thread.
func NoGrad(f func()) {
	runtime.LockOSThread()
	prev := C.tx_set_grad_enabled(0)
	defer func() {
		C.tx_set_grad_enabled(prev)
		runtime.UnlockOSThread()
	}()
	f()
}
