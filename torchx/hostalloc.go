package torchx

// #include "torchx.h"
import "C"

// The host allocator's policy, set once when the package loads (see csrc/hostalloc.cc for
// why): glibc keeps up to HostTrimThreshold bytes of freed heap instead of returning them to
// the kernel after every step, and maps blocks with mmap only from HostMmapThreshold bytes.
// Setting any of glibc's MALLOC_*_ variables (or glibc.malloc tunables) leaves glibc's
// defaults or the user's settings in place.
const (
	HostMmapThreshold = C.TX_HOST_MMAP_THRESHOLD
	HostTrimThreshold = C.TX_HOST_TRIM_THRESHOLD
)

var hostPolicyApplied = C.tx_host_alloc_policy(HostMmapThreshold, HostTrimThreshold) != 0

// HostAllocPolicyApplied reports whether the policy above is in force (not with a non-glibc
// C library or where the user tuned glibc's allocator).
func HostAllocPolicyApplied() bool { return hostPolicyApplied }

// hostFreeBytes is what the C allocator holds free in its heaps (for tests); -1 if unknown.
func hostFreeBytes() int64 { return int64(C.tx_host_free_bytes()) }
