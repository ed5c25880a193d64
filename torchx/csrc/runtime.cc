// Process-wide libtorch settings: version, devices, seeds, threads, grad mode.
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#ifdef TORCHX_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

#include "common.h"

extern "C" {

const char *tx_libtorch_version(void) { return TORCH_VERSION; }

// torch::cuda's functions are the stable face of CUDA discovery across libtorch 1.13–2.x.
int tx_cuda_available(void) {
  try {
    return torch::cuda::is_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

int tx_cuda_device_count(void) {
  try {
    return static_cast<int>(torch::cuda::device_count());
  } catch (...) {
    return 0;
  }
}

int tx_cudnn_available(void) {
  try {
    return torch::cuda::cudnn_is_available() ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

// The calling thread's current CUDA device: where tensors without an explicit index, cuBLAS
// handles and NCCL's communicators go (rank r of a node uses device r).
TxErr tx_cuda_set_device(int index) {
  TX_TRY
#ifdef TORCHX_WITH_CUDA
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(index));
#else
  (void)index;
  throw std::runtime_error("torchx: built without CUDA");
#endif
  TX_CATCH
}

TxErr tx_cuda_device_name(int index, char *buf, int buflen) {
  TX_TRY
#ifdef TORCHX_WITH_CUDA
  const cudaDeviceProp *p = at::cuda::getDeviceProperties(index);
  std::snprintf(buf, buflen, "%s (%.1f GiB)", p->name,
                static_cast<double>(p->totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
#else
  (void)index;
  std::snprintf(buf, buflen, "%s", "");
  throw std::runtime_error("torchx: built without CUDA");
#endif
  TX_CATCH
}

// Free and total memory of a GPU as the driver sees them (memory the caching allocator keeps
// for reuse counts as used): what an automatic working-set size starts from.
TxErr tx_cuda_mem_info(int index, int64_t *free_bytes, int64_t *total_bytes) {
  TX_TRY
#ifdef TORCHX_WITH_CUDA
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(index));
  size_t f = 0, t = 0;
  C10_CUDA_CHECK(cudaMemGetInfo(&f, &t));
  *free_bytes = static_cast<int64_t>(f);
  *total_bytes = static_cast<int64_t>(t);
#else
  (void)index;
  *free_bytes = *total_bytes = 0;
  throw std::runtime_error("torchx: built without CUDA");
#endif
  TX_CATCH
}

void tx_manual_seed(uint64_t seed) { at::manual_seed(seed); }

void tx_set_num_threads(int n) {
  if (n > 0) at::set_num_threads(n);
}

int tx_get_num_threads(void) { return at::get_num_threads(); }

int tx_set_grad_enabled(int enabled) {
  bool prev = c10::GradMode::is_enabled();
  c10::GradMode::set_enabled(enabled != 0);
  return prev ? 1 : 0;
}

int tx_is_grad_enabled(void) { return c10::GradMode::is_enabled() ? 1 : 0; }

}  // extern "C"
