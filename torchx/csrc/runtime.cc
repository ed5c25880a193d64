// Process-wide libtorch settings: version, devices, seeds, threads, grad mode.
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/GradMode.h>
#include <torch/version.h>

#include "common.h"

extern "C" {

const char *tx_libtorch_version(void) { return TORCH_VERSION; }

int tx_cuda_available(void) { return at::hasCUDA() ? 1 : 0; }

int tx_cuda_device_count(void) {
  try {
    return at::hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0;
  } catch (...) {
    return 0;
  }
}

int tx_cudnn_available(void) {
  try {
    return at::hasCUDA() && at::detail::getCUDAHooks().hasCuDNN() ? 1 : 0;
  } catch (...) {
    return 0;
  }
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
