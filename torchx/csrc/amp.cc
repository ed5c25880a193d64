// Mixed precision and memory-format switches: autocast (per thread, like grad mode),
// channels-last tensors, cuDNN's algorithm benchmark. The autocast API moved in libtorch 2.4
// (per-device functions replaced set_enabled / set_autocast_gpu_dtype); both are handled.
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "common.h"

namespace {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
void set_autocast(c10::DeviceType dev, bool on, at::ScalarType dt) {
  at::autocast::set_autocast_dtype(dev, dt);
  at::autocast::set_autocast_enabled(dev, on);
}
bool autocast_enabled(c10::DeviceType dev) { return at::autocast::is_autocast_enabled(dev); }
#else
void set_autocast(c10::DeviceType dev, bool on, at::ScalarType dt) {
  if (dev == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dt);
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_autocast_cpu_dtype(dt);
    at::autocast::set_cpu_enabled(on);
  }
}
bool autocast_enabled(c10::DeviceType dev) {
  return dev == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
#endif

}  // namespace

extern "C" {

TxErr tx_autocast(const char *device, int on, int8_t dtype) {
  TX_TRY
  c10::Device d{std::string(device)};
  if (d.type() != c10::DeviceType::CUDA && d.type() != c10::DeviceType::CPU) {
    throw std::invalid_argument("torchx: autocast on " + d.str() + " is not supported");
  }
  if (on) {
    at::autocast::increment_nesting();
    set_autocast(d.type(), true, static_cast<at::ScalarType>(dtype));
  } else {
    set_autocast(d.type(), false, static_cast<at::ScalarType>(dtype));
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  }
  TX_CATCH
}

int tx_autocast_enabled(const char *device) {
  try {
    return autocast_enabled(c10::Device(std::string(device)).type()) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

TxErr tx_channels_last(TxTensor t, TxTensor *out) {
  TX_TRY
  at::Tensor &x = torchx::T(t);
  *out = torchx::wrap(x.dim() == 4 ? x.contiguous(at::MemoryFormat::ChannelsLast) : x);
  TX_CATCH
}

int tx_is_channels_last(TxTensor t) {
  try {
    return torchx::T(t).is_contiguous(at::MemoryFormat::ChannelsLast) ? 1 : 0;
  } catch (...) {
    return 0;
  }
}

void tx_set_cudnn_benchmark(int on) { at::globalContext().setBenchmarkCuDNN(on != 0); }

int tx_cudnn_benchmark(void) { return at::globalContext().benchmarkCuDNN() ? 1 : 0; }

}  // extern "C"
