// Tensor life, bulk data copies (one memcpy, never a cgo call per element), metadata,
// factories, device/dtype moves and autograd entry points.
#include <c10/core/GradMode.h>

#include <cmath>

#include "common.h"

using torchx::T;
using torchx::wrap;

namespace {

at::TensorOptions options(int8_t dtype, const char *device) {
  return at::TensorOptions()
      .dtype(static_cast<at::ScalarType>(dtype))
      .device(c10::Device(std::string(device == nullptr ? "cpu" : device)));
}

}  // namespace

extern "C" {

void tx_free(TxTensor t) { delete static_cast<at::Tensor *>(t); }

TxErr tx_from_data(const void *data, int8_t dtype, const int64_t *shape, int ndim,
                   TxTensor *out) {
  TX_TRY
  auto opts = at::TensorOptions().dtype(static_cast<at::ScalarType>(dtype));
  // from_blob borrows Go's memory; clone() makes the tensor own a copy before we return.
  *out = wrap(at::from_blob(const_cast<void *>(data), torchx::ints(shape, ndim), opts).clone());
  TX_CATCH
}

// Go's data straight onto a device. For a CUDA device it is staged in page-locked host
// memory and copied without blocking: a pageable copy makes the host wait for the GPU to
// drain its queue, so every upload of a training batch would stall the queuing of the step.
// The staging buffer may be freed at once: the caching host allocator does not hand it out
// again until the copy has run (it records an event on the copy's stream). Go's memory is
// read before this returns, so the caller may reuse it. Where page-locked memory cannot be
// had, the copy is an ordinary blocking one.
TxErr tx_from_data_on(const void *data, int8_t dtype, const int64_t *shape, int ndim,
                      const char *device, TxTensor *out) {
  TX_TRY
  auto opts = at::TensorOptions().dtype(static_cast<at::ScalarType>(dtype));
  at::Tensor src = at::from_blob(const_cast<void *>(data), torchx::ints(shape, ndim), opts);
  c10::Device dev(std::string(device == nullptr ? "cpu" : device));
  if (dev.is_cpu()) {
    *out = wrap(src.clone());
  } else if (dev.is_cuda()) {
    at::Tensor staged;
    try {
      staged = at::empty(src.sizes(), opts.pinned_memory(true));
    } catch (const std::exception &) {  // no page-locked memory to be had: a blocking copy
      staged = at::Tensor();
    }
    if (staged.defined()) {
      // A plain memcpy: ATen's copy_ would split a large one across the intra-op threads,
      // waking a pool that then spins beside the thread queuing GPU work.
      if (src.nbytes() > 0) std::memcpy(staged.data_ptr(), data, src.nbytes());
      *out = wrap(staged.to(at::TensorOptions().device(dev), /*non_blocking=*/true));
    } else {
      *out = wrap(src.to(dev));
    }
  } else {
    *out = wrap(src.to(dev));
  }
  TX_CATCH
}

TxErr tx_copy_out(TxTensor t, int8_t dtype, void *dst, int64_t nbytes) {
  TX_TRY
  at::Tensor c = T(t).detach().to(at::kCPU, static_cast<at::ScalarType>(dtype)).contiguous();
  int64_t want = c.numel() * static_cast<int64_t>(c.element_size());
  if (want != nbytes) {
    throw std::invalid_argument("torchx: copy_out: tensor has " + std::to_string(want) +
                                " bytes, destination " + std::to_string(nbytes));
  }
  if (nbytes > 0) std::memcpy(dst, c.data_ptr(), nbytes);
  TX_CATCH
}

TxErr tx_numel(TxTensor t, int64_t *out) {
  TX_TRY
  *out = T(t).numel();
  TX_CATCH
}

TxErr tx_dtype(TxTensor t, int8_t *out) {
  TX_TRY
  *out = static_cast<int8_t>(T(t).scalar_type());
  TX_CATCH
}

TxErr tx_device(TxTensor t, char *buf, int buflen) {
  TX_TRY
  std::string s = T(t).device().str();
  std::snprintf(buf, buflen, "%s", s.c_str());
  TX_CATCH
}

TxErr tx_empty_like_zeros(const int64_t *shape, int ndim, int8_t dtype, const char *device,
                          TxTensor *out) {
  TX_TRY
  *out = wrap(at::zeros(torchx::ints(shape, ndim), options(dtype, device)));
  TX_CATCH
}

TxErr tx_full(const int64_t *shape, int ndim, double value, int8_t dtype, const char *device,
              TxTensor *out) {
  TX_TRY
  *out = wrap(at::full(torchx::ints(shape, ndim), value, options(dtype, device)));
  TX_CATCH
}

TxErr tx_randn(const int64_t *shape, int ndim, int8_t dtype, const char *device,
               TxTensor *out) {
  TX_TRY
  *out = wrap(at::randn(torchx::ints(shape, ndim), options(dtype, device)));
  TX_CATCH
}

TxErr tx_rand(const int64_t *shape, int ndim, int8_t dtype, const char *device,
              TxTensor *out) {
  TX_TRY
  *out = wrap(at::rand(torchx::ints(shape, ndim), options(dtype, device)));
  TX_CATCH
}

TxErr tx_to(TxTensor t, const char *device, int8_t dtype, TxTensor *out) {
  TX_TRY
  at::Tensor &x = T(t);
  c10::Device dev = device == nullptr ? x.device() : c10::Device(std::string(device));
  at::ScalarType st = dtype < 0 ? x.scalar_type() : static_cast<at::ScalarType>(dtype);
  *out = wrap(x.to(dev, st));
  TX_CATCH
}

TxErr tx_clone(TxTensor t, TxTensor *out) {
  TX_TRY
  *out = wrap(T(t).clone());
  TX_CATCH
}

TxErr tx_contiguous(TxTensor t, TxTensor *out) {
  TX_TRY
  *out = wrap(T(t).contiguous());
  TX_CATCH
}

TxErr tx_detach(TxTensor t, TxTensor *out) {
  TX_TRY
  *out = wrap(T(t).detach());
  TX_CATCH
}

TxErr tx_set_requires_grad(TxTensor t, int on) {
  TX_TRY
  T(t).set_requires_grad(on != 0);
  TX_CATCH
}

TxErr tx_requires_grad(TxTensor t, int *out) {
  TX_TRY
  *out = T(t).requires_grad() ? 1 : 0;
  TX_CATCH
}

TxErr tx_grad(TxTensor t, TxTensor *out) {
  TX_TRY
  const at::Tensor &g = T(t).grad();
  *out = g.defined() ? wrap(g) : nullptr;
  TX_CATCH
}

TxErr tx_backward(TxTensor t) {
  TX_TRY
  T(t).backward();
  TX_CATCH
}

TxErr tx_copy_(TxTensor dst, TxTensor src) {
  TX_TRY
  c10::AutoGradMode off(false);
  T(dst).copy_(T(src));
  TX_CATCH
}

TxErr tx_add_scalar_(TxTensor t, double s) {
  TX_TRY
  c10::AutoGradMode off(false);
  // An integer tensor (a counter) takes a whole number as an integer scalar; a double
  // scalar would promote the result to float, which an in-place add refuses.
  if (c10::isIntegralType(T(t).scalar_type(), /*includeBool=*/false) && s == std::floor(s)) {
    T(t).add_(static_cast<int64_t>(s));
  } else {
    T(t).add_(s);
  }
  TX_CATCH
}

TxErr tx_item(TxTensor t, double *out) {
  TX_TRY
  *out = T(t).item<double>();
  TX_CATCH
}

}  // extern "C"
