// Shape, elementwise and reduction ops.
#include "common.h"

using torchx::T;
using torchx::wrap;

namespace {

at::Tensor binary(const at::Tensor &a, const at::Tensor &b, TxBinaryOp op) {
  switch (op) {
    case TX_ADD: return at::add(a, b);
    case TX_SUB: return at::sub(a, b);
    case TX_MUL: return at::mul(a, b);
    case TX_DIV: return at::div(a, b);
    case TX_MAXIMUM: return at::maximum(a, b);
    case TX_MINIMUM: return at::minimum(a, b);
    case TX_EQ: return at::eq(a, b);
    case TX_GT: return at::gt(a, b);
    case TX_LT: return at::lt(a, b);
  }
  throw std::invalid_argument("torchx: unknown binary op " + std::to_string(static_cast<int>(op)));
}

at::Tensor scalar(const at::Tensor &a, double s, TxBinaryOp op) {
  switch (op) {
    case TX_ADD: return at::add(a, s);
    case TX_SUB: return at::sub(a, s);
    case TX_MUL: return at::mul(a, s);
    case TX_DIV: return at::div(a, s);
    case TX_MAXIMUM: return at::clamp_min(a, s);
    case TX_MINIMUM: return at::clamp_max(a, s);
    case TX_EQ: return at::eq(a, s);
    case TX_GT: return at::gt(a, s);
    case TX_LT: return at::lt(a, s);
  }
  throw std::invalid_argument("torchx: unknown scalar op " + std::to_string(static_cast<int>(op)));
}

}  // namespace

extern "C" {

TxErr tx_cat(TxTensor *ts, int n, int64_t dim, TxTensor *out) {
  TX_TRY
  *out = wrap(at::cat(torchx::list(ts, n), dim));
  TX_CATCH
}

TxErr tx_stack(TxTensor *ts, int n, int64_t dim, TxTensor *out) {
  TX_TRY
  *out = wrap(at::stack(torchx::list(ts, n), dim));
  TX_CATCH
}

TxErr tx_narrow(TxTensor t, int64_t dim, int64_t start, int64_t length, TxTensor *out) {
  TX_TRY
  *out = wrap(T(t).narrow(dim, start, length));
  TX_CATCH
}

TxErr tx_slice(TxTensor t, int64_t dim, int64_t start, int64_t end, int64_t step,
               TxTensor *out) {
  TX_TRY
  *out = wrap(T(t).slice(dim, start, end, step));
  TX_CATCH
}

TxErr tx_reshape(TxTensor t, const int64_t *shape, int ndim, TxTensor *out) {
  TX_TRY
  *out = wrap(T(t).reshape(torchx::ints(shape, ndim)));
  TX_CATCH
}

TxErr tx_permute(TxTensor t, const int64_t *dims, int ndim, TxTensor *out) {
  TX_TRY
  *out = wrap(T(t).permute(torchx::ints(dims, ndim)));
  TX_CATCH
}

TxErr tx_unsqueeze(TxTensor t, int64_t dim, TxTensor *out) {
  TX_TRY
  *out = wrap(T(t).unsqueeze(dim));
  TX_CATCH
}

TxErr tx_squeeze(TxTensor t, int64_t dim, TxTensor *out) {
  TX_TRY
  *out = wrap(T(t).squeeze(dim));
  TX_CATCH
}

TxErr tx_flip(TxTensor t, const int64_t *dims, int ndims, TxTensor *out) {
  TX_TRY
  *out = wrap(at::flip(T(t), torchx::ints(dims, ndims)));
  TX_CATCH
}

TxErr tx_pad(TxTensor t, const int64_t *pads, int npads, TxPadMode mode, double value,
             TxTensor *out) {
  TX_TRY
  at::Tensor &x = T(t);
  at::IntArrayRef p = torchx::ints(pads, npads);
  if (mode == TX_PAD_CONSTANT) {
    *out = wrap(at::constant_pad_nd(x, p, value));
    return nullptr;
  }
  // The replicate/reflect kernels take 2, 4 or 6 pads for 1D, 2D or 3D spatial dims, with
  // batch and channel dims in front, as torch.nn.functional.pad does.
  int nsp = npads / 2;
  if (npads % 2 != 0 || nsp < 1 || nsp > 3 || x.dim() < nsp + 1) {
    throw std::invalid_argument("torchx: pad: " + std::to_string(npads) +
                                " pads do not fit a tensor of rank " +
                                std::to_string(x.dim()));
  }
  bool unbatched = x.dim() == nsp + 1;
  at::Tensor in = unbatched ? x.unsqueeze(0) : x;
  at::Tensor r;
  if (mode == TX_PAD_REPLICATE) {
    r = nsp == 1 ? at::replication_pad1d(in, p)
        : nsp == 2 ? at::replication_pad2d(in, p)
                   : at::replication_pad3d(in, p);
  } else if (mode == TX_PAD_REFLECT) {
    r = nsp == 1 ? at::reflection_pad1d(in, p)
        : nsp == 2 ? at::reflection_pad2d(in, p)
                   : at::reflection_pad3d(in, p);
  } else {
    throw std::invalid_argument("torchx: pad: unknown mode " + std::to_string(static_cast<int>(mode)));
  }
  *out = wrap(unbatched ? r.squeeze(0) : r);
  TX_CATCH
}

TxErr tx_unary(TxTensor t, TxUnaryOp op, TxTensor *out) {
  TX_TRY
  at::Tensor &x = T(t);
  at::Tensor r;
  switch (op) {
    case TX_EXP: r = at::exp(x); break;
    case TX_LOG: r = at::log(x); break;
    case TX_SQRT: r = at::sqrt(x); break;
    case TX_ABS: r = at::abs(x); break;
    case TX_NEG: r = at::neg(x); break;
    case TX_SIGMOID: r = at::sigmoid(x); break;
    case TX_TANH: r = at::tanh(x); break;
    case TX_RELU: r = at::relu(x); break;
    case TX_GELU: r = at::gelu(x); break;
    case TX_RSQRT: r = at::rsqrt(x); break;
    case TX_SIGN: r = at::sign(x); break;
    case TX_FLOOR: r = at::floor(x); break;
    case TX_ROUND: r = at::round(x); break;
    default: throw std::invalid_argument("torchx: unknown unary op " + std::to_string(static_cast<int>(op)));
  }
  *out = wrap(r);
  TX_CATCH
}

TxErr tx_binary(TxTensor a, TxTensor b, TxBinaryOp op, TxTensor *out) {
  TX_TRY
  *out = wrap(binary(T(a), T(b), op));
  TX_CATCH
}

TxErr tx_scalar(TxTensor a, double s, TxBinaryOp op, TxTensor *out) {
  TX_TRY
  *out = wrap(scalar(T(a), s, op));
  TX_CATCH
}

TxErr tx_pow(TxTensor t, double exponent, TxTensor *out) {
  TX_TRY
  *out = wrap(at::pow(T(t), exponent));
  TX_CATCH
}

TxErr tx_clamp(TxTensor t, double lo, double hi, int has_lo, int has_hi, TxTensor *out) {
  TX_TRY
  at::Tensor &x = T(t);
  if (has_lo && has_hi) {
    *out = wrap(at::clamp(x, lo, hi));
  } else if (has_lo) {
    *out = wrap(at::clamp_min(x, lo));
  } else if (has_hi) {
    *out = wrap(at::clamp_max(x, hi));
  } else {
    *out = wrap(x.clone());
  }
  TX_CATCH
}

TxErr tx_leaky_relu(TxTensor t, double slope, TxTensor *out) {
  TX_TRY
  *out = wrap(at::leaky_relu(T(t), slope));
  TX_CATCH
}

TxErr tx_where(TxTensor cond, TxTensor a, TxTensor b, TxTensor *out) {
  TX_TRY
  *out = wrap(at::where(T(cond), T(a), T(b)));
  TX_CATCH
}

TxErr tx_reduce(TxTensor t, TxReduceOp op, const int64_t *dims, int ndims, int keepdim,
                TxTensor *out) {
  TX_TRY
  at::Tensor &x = T(t);
  std::vector<int64_t> d(dims, dims + ndims);
  if (ndims == 0) {
    for (int64_t i = 0; i < x.dim(); i++) d.push_back(i);
  }
  at::Tensor r;
  switch (op) {
    case TX_SUM: r = at::sum(x, d, keepdim != 0); break;
    case TX_MEAN: r = at::mean(x, d, keepdim != 0); break;
    case TX_AMAX: r = at::amax(x, d, keepdim != 0); break;
    case TX_AMIN: r = at::amin(x, d, keepdim != 0); break;
    default: throw std::invalid_argument("torchx: unknown reduction " + std::to_string(static_cast<int>(op)));
  }
  *out = wrap(r);
  TX_CATCH
}

TxErr tx_max_dim(TxTensor t, int64_t dim, int keepdim, TxTensor *values, TxTensor *indices) {
  TX_TRY
  auto r = at::max(T(t), dim, keepdim != 0);
  *values = wrap(std::get<0>(r));
  *indices = wrap(std::get<1>(r));
  TX_CATCH
}

TxErr tx_argmax(TxTensor t, int64_t dim, int keepdim, TxTensor *out) {
  TX_TRY
  *out = wrap(at::argmax(T(t), dim, keepdim != 0));
  TX_CATCH
}

TxErr tx_softmax(TxTensor t, int64_t dim, int log, TxTensor *out) {
  TX_TRY
  *out = wrap(log ? at::log_softmax(T(t), dim) : at::softmax(T(t), dim));
  TX_CATCH
}

TxErr tx_matmul(TxTensor a, TxTensor b, TxTensor *out) {
  TX_TRY
  *out = wrap(at::matmul(T(a), T(b)));
  TX_CATCH
}

TxErr tx_bmm(TxTensor a, TxTensor b, TxTensor *out) {
  TX_TRY
  *out = wrap(at::bmm(T(a), T(b)));
  TX_CATCH
}

}  // extern "C"
