package torchx

// #include "torchx.h"
import "C"

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// LibtorchVersion is the version of the libtorch the shim was compiled against.
func LibtorchVersion() string { return C.GoString(C.tx_libtorch_version()) }

// CUDAAvailable reports whether this libtorch has CUDA and sees a GPU.
func CUDAAvailable() bool { return C.tx_cuda_available() != 0 && C.tx_cuda_device_count() > 0 }

// CUDADeviceCount is the number of GPUs libtorch sees.
func CUDADeviceCount() int { return int(C.tx_cuda_device_count()) }

// SetCUDADevice makes device index the current CUDA device of the calling OS thread (the
// training loops run pinned to one): data-parallel rank r of a node uses device r.
func SetCUDADevice(index int) error {
	return Try(func() { check(C.tx_cuda_set_device(C.int(index))) })
}

// CUDNNAvailable reports whether cuDNN is usable.
func CUDNNAvailable() bool { return C.tx_cudnn_available() != 0 }

// ManualSeed seeds libtorch's global generators (CPU and CUDA).
func ManualSeed(seed uint64) { C.tx_manual_seed(C.uint64_t(seed)) }

// SetNumThreads sets libtorch's intra-op thread count (n <= 0 leaves it). OpenMP keeps the
// count per OS thread, so it is remembered here and applied again by PinThread.
func SetNumThreads(n int) {
	if n > 0 {
		threads.Store(int64(n))
	}
	C.tx_set_num_threads(C.int(n))
}

var threads atomic.Int64

// PinThread locks the calling goroutine to its OS thread until the returned function is
// called, and applies the thread count set by SetNumThreads there. Long CPU work (a training
// loop, a whole prediction) runs pinned: libtorch's OpenMP thread teams belong to the OS
// thread that starts a parallel region, and a goroutine that Go moves between OS threads
// was measured to get gradients that differ in the last bits from run to run (the same
// UNETR++ step, same input, differed after 1–53 repetitions unpinned, never pinned).
func PinThread() (unpin func()) {
	runtime.LockOSThread()
	if n := threads.Load(); n > 0 {
		C.tx_set_num_threads(C.int(n))
	}
	return runtime.UnlockOSThread
}

// NumThreads is libtorch's intra-op thread count.
func NumThreads() int { return int(C.tx_get_num_threads()) }

// NoGrad runs f with autograd off: no graph is recorded and no activations kept, as in
// PyTorch's torch.no_grad(). The goroutine is locked to its OS thread meanwhile, because
// libtorch keeps the grad mode per thread.
func NoGrad(f func()) {
	runtime.LockOSThread()
	prev := C.tx_set_grad_enabled(cbool(false))
	defer func() {
		C.tx_set_grad_enabled(prev)
		runtime.UnlockOSThread()
	}()
	f()
}

// ResolveDevice turns a configured device (auto, cpu, cuda, cuda:N) into one libtorch
// accepts, refusing CUDA where this libtorch has none or the GPU index does not exist.
func ResolveDevice(d string) (string, error) {
	switch {
	case d == "" || d == "auto":
		if CUDAAvailable() {
			return "cuda:0", nil
		}
		return "cpu", nil
	case d == "cpu":
		return "cpu", nil
	case d == "cuda" || len(d) > 5 && d[:5] == "cuda:":
		if !CUDAAvailable() {
			return "", fmt.Errorf("device %s: this sli2vol's libtorch (%s) has no CUDA or sees no GPU; use --device cpu or rebuild with LIBTORCH=<a CUDA libtorch>", d, LibtorchVersion())
		}
		if d == "cuda" {
			return "cuda:0", nil
		}
		var n int
		if _, err := fmt.Sscanf(d, "cuda:%d", &n); err != nil || n < 0 {
			return "", fmt.Errorf("device %q: want cuda:N", d)
		}
		if n >= CUDADeviceCount() {
			return "", fmt.Errorf("device %s: only %d GPU(s) visible", d, CUDADeviceCount())
		}
		return d, nil
	}
	return "", fmt.Errorf("device %q: want auto, cpu, cuda or cuda:N", d)
}

// CUDADeviceName is the GPU's name and memory, as the CUDA runtime reports them.
func CUDADeviceName(index int) (string, error) {
	var buf [256]C.char
	var name string
	err := Try(func() {
		check(C.tx_cuda_device_name(C.int(index), &buf[0], C.int(len(buf))))
		name = C.GoString(&buf[0])
	})
	return name, err
}

// CUDAMemInfo is the free and total memory of GPU index, in bytes, as the driver reports them
// (memory the caching allocator holds for reuse counts as used).
func CUDAMemInfo(index int) (free, total int64, err error) {
	var f, t C.int64_t
	err = Try(func() { check(C.tx_cuda_mem_info(C.int(index), &f, &t)) })
	return int64(f), int64(t), err
}
