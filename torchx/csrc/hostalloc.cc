// The host allocator's policy for libtorch's CPU tensors (glibc malloc).
//
// glibc returns the free memory at the top of its heap to the kernel once it exceeds a trim
// threshold, and maps large blocks with mmap below a threshold it raises as it sees large
// frees. Go frees a step's tensors together when the step's scope ends, so each step leaves
// one large free block at the top of the heap, glibc trims it, and the next step faults the
// same pages in again (zeroed by the kernel): measured on a 48² CPU step, 20 % of the step.
// C++ and Python free tensors one at a time as references drop and rarely leave that block.
// Keeping up to a gigabyte of freed heap and fixing the mmap threshold at glibc's own ceiling
// (32 MiB on 64-bit) makes the steps reuse their memory; the peak RSS does not change, the
// RSS after a step stays at its peak instead of falling and rising again.
#include <cstdlib>
#include <cstring>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "common.h"

namespace {

bool user_tuned() {
  for (const char *v : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_"}) {
    if (std::getenv(v) != nullptr) return true;
  }
  const char *t = std::getenv("GLIBC_TUNABLES");
  return t != nullptr && std::strstr(t, "glibc.malloc.") != nullptr;
}

}  // namespace

extern "C" {

// Applies the policy unless the user set glibc's malloc variables; 1 when applied.
int tx_host_alloc_policy(int64_t mmap_threshold, int64_t trim_threshold) {
#ifdef __GLIBC__
  if (user_tuned()) return 0;
  if (mallopt(M_MMAP_THRESHOLD, static_cast<int>(mmap_threshold)) == 0) return 0;
  if (mallopt(M_TRIM_THRESHOLD, static_cast<int>(trim_threshold)) == 0) return 0;
  return 1;
#else
  (void)mmap_threshold;
  (void)trim_threshold;
  return 0;
#endif
}

// Bytes the allocator holds free (in its heaps, not mapped blocks), for tests; -1 without glibc.
int64_t tx_host_free_bytes(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 m = mallinfo2();
  return static_cast<int64_t>(m.fordblks);
#elif defined(__GLIBC__)
  struct mallinfo m = mallinfo();
  return static_cast<int64_t>(static_cast<unsigned int>(m.fordblks));
#else
  return -1;
#endif
}

}  // extern "C"
