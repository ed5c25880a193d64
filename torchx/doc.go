// Package torchx is sli2vol's layer over gotorch: the libtorch ops, optimizers and state-dict
// I/O that gotorch lacks, implemented by a small C++ shim (csrc/, built into
// build/lib/libtorchx.so) and exposed here on gotorch's own Tensor type, so tensors pass
// freely between the two packages.
//
// Errors. Every C++ exception is caught in the shim and comes back as a Go panic carrying an
// *Error with libtorch's message (never a process abort). Ops panic, as PyTorch raises;
// Try turns a panic from torchx or gotorch back into an ordinary error at an API boundary.
//
// Memory. We follow gotorch's finalizer pattern: every tensor handle carries a Go finalizer
// that frees the C++ tensor, and training or inference loops call GC once per step so that
// the previous step's tensors are freed. We do not use gotorch.GC's wait-group, because it
// blocks forever on a tensor that outlives a step (propagation keeps the previous slice's
// features). Free releases a large tensor at once where waiting for GC would double the peak.
// Tidy (and TidyAll, TidyDo) frees every tensor made inside a function when it returns, except
// its results: model blocks and training steps use it so that temporaries go as soon as in
// Python, not at the next GC; GC then skips the collection when no tensor was left to it.
//
// GPU. On CUDA the affinity runs per window row on small maps (fewer kernel launches) and the
// optimizers update all parameters with multi-tensor ops, as PyTorch's do; the arithmetic is
// the same as on the CPU paths (AffinityStrategy, ForeachMode). FromFloat32On uploads through
// page-locked memory without making the host wait for the GPU.
//
// Host memory. Loading the package sets glibc's allocator to keep up to 1 GiB of freed heap
// and to map blocks with mmap only from 32 MiB (HostTrimThreshold, HostMmapThreshold): a
// scope frees a step's tensors together, and glibc's default would hand that memory back to
// the kernel after every step for the next one to fault in again. Setting any of glibc's
// MALLOC_*_ variables leaves the allocator as the user set it.
//
// Threads. libtorch's grad mode is per OS thread; NoGrad locks the goroutine to its thread for
// the duration of the function it runs.
package torchx
