// Neural-network ops: convolution, normalisation, resampling, patches, dropout, losses.
#include <ATen/core/Reduction.h>

#include "common.h"

using torchx::opt;
using torchx::T;
using torchx::wrap;

// TxReduction is passed to ATen's losses as it is: the two numberings must agree.
static_assert(static_cast<int>(TX_REDUCTION_NONE) == static_cast<int>(at::Reduction::None) &&
                  static_cast<int>(TX_REDUCTION_MEAN) == static_cast<int>(at::Reduction::Mean) &&
                  static_cast<int>(TX_REDUCTION_SUM) == static_cast<int>(at::Reduction::Sum),
              "TxReduction must number as at::Reduction");

extern "C" {

TxErr tx_convolution(TxTensor x, TxTensor w, TxTensor b, const int64_t *stride,
                     const int64_t *padding, const int64_t *dilation, int nsp,
                     int transposed, const int64_t *output_padding, int64_t groups,
                     TxTensor *out) {
  TX_TRY
  std::vector<int64_t> zeros(nsp, 0);
  at::IntArrayRef op = output_padding == nullptr ? at::IntArrayRef(zeros)
                                                 : torchx::ints(output_padding, nsp);
  at::IntArrayRef st = torchx::ints(stride, nsp), pd = torchx::ints(padding, nsp),
                  dl = torchx::ints(dilation, nsp);
  // The functional ops (as torch.nn.functional calls them), not at::convolution: autocast
  // casts conv2d/conv3d/conv_transpose*, and an undefined bias means none (1.13 and 2.x).
  const at::Tensor &in = T(x), &wt = T(w);
  at::Tensor bias = opt(b), r;
  if (nsp == 2 && !transposed) r = at::conv2d(in, wt, bias, st, pd, dl, groups);
  else if (nsp == 3 && !transposed) r = at::conv3d(in, wt, bias, st, pd, dl, groups);
  else if (nsp == 2) r = at::conv_transpose2d(in, wt, bias, st, pd, op, groups, dl);
  else if (nsp == 3) r = at::conv_transpose3d(in, wt, bias, st, pd, op, groups, dl);
  else throw std::invalid_argument("torchx: convolution over " + std::to_string(nsp) + " spatial dims");
  *out = wrap(r);
  TX_CATCH
}

TxErr tx_batch_norm(TxTensor x, TxTensor w, TxTensor b, TxTensor rmean, TxTensor rvar,
                    int training, double momentum, double eps, TxTensor *out) {
  TX_TRY
  *out = wrap(at::batch_norm(T(x), opt(w), opt(b), opt(rmean), opt(rvar), training != 0,
                             momentum, eps, /*cudnn_enabled=*/true));
  TX_CATCH
}

TxErr tx_instance_norm(TxTensor x, TxTensor w, TxTensor b, double eps, TxTensor *out) {
  TX_TRY
  *out = wrap(at::instance_norm(T(x), opt(w), opt(b), at::Tensor(), at::Tensor(),
                                /*use_input_stats=*/true, 0.1, eps, /*cudnn_enabled=*/true));
  TX_CATCH
}

TxErr tx_group_norm(TxTensor x, int64_t groups, TxTensor w, TxTensor b, double eps,
                    TxTensor *out) {
  TX_TRY
  *out = wrap(at::group_norm(T(x), groups, opt(w), opt(b), eps, /*cudnn_enabled=*/true));
  TX_CATCH
}

TxErr tx_layer_norm(TxTensor x, const int64_t *shape, int nshape, TxTensor w, TxTensor b,
                    double eps, TxTensor *out) {
  TX_TRY
  *out = wrap(at::layer_norm(T(x), torchx::ints(shape, nshape), opt(w), opt(b), eps,
                             /*cudnn_enable=*/true));
  TX_CATCH
}

TxErr tx_interpolate(TxTensor x, const int64_t *size, int nsize, TxInterpMode mode,
                     int align_corners, TxTensor *out) {
  TX_TRY
  at::Tensor &in = T(x);
  at::IntArrayRef s = torchx::ints(size, nsize);
  if (in.dim() != nsize + 2) {
    throw std::invalid_argument("torchx: interpolate: input of rank " +
                                std::to_string(in.dim()) + " needs " +
                                std::to_string(in.dim() - 2) + " output sizes, got " +
                                std::to_string(nsize));
  }
  at::Tensor r;
  if (mode == TX_NEAREST) {
    if (nsize == 1) r = at::upsample_nearest1d(in, s, {});
    else if (nsize == 2) r = at::upsample_nearest2d(in, s, {}, {});
    else if (nsize == 3)
      r = at::upsample_nearest3d(in, s, {}, {}, {});
    else throw std::invalid_argument("torchx: interpolate: nearest needs 1-3 spatial dims");
  } else if (mode == TX_BILINEAR) {
    if (nsize != 2) throw std::invalid_argument("torchx: interpolate: bilinear needs a 4D input");
    r = at::upsample_bilinear2d(in, s, align_corners != 0, {}, {});
  } else if (mode == TX_TRILINEAR) {
    if (nsize != 3) throw std::invalid_argument("torchx: interpolate: trilinear needs a 5D input");
    r = at::upsample_trilinear3d(in, s, align_corners != 0, {}, {},
                                 {});
  } else {
    throw std::invalid_argument("torchx: interpolate: unknown mode " + std::to_string(static_cast<int>(mode)));
  }
  *out = wrap(r);
  TX_CATCH
}

TxErr tx_unfold2d(TxTensor x, const int64_t *kernel, const int64_t *dilation,
                  const int64_t *padding, const int64_t *stride, TxTensor *out) {
  TX_TRY
  *out = wrap(at::im2col(T(x), torchx::ints(kernel, 2), torchx::ints(dilation, 2),
                         torchx::ints(padding, 2), torchx::ints(stride, 2)));
  TX_CATCH
}

TxErr tx_one_hot(TxTensor t, int64_t num_classes, TxTensor *out) {
  TX_TRY
  *out = wrap(at::one_hot(T(t), num_classes));
  TX_CATCH
}

TxErr tx_dropout(TxTensor t, double p, int train, TxTensor *out) {
  TX_TRY
  *out = wrap(at::dropout(T(t), p, train != 0));
  TX_CATCH
}

TxErr tx_l1_loss(TxTensor a, TxTensor b, TxReduction reduction, TxTensor *out) {
  TX_TRY
  *out = wrap(at::l1_loss(T(a), T(b), reduction));
  TX_CATCH
}

TxErr tx_mse_loss(TxTensor a, TxTensor b, TxReduction reduction, TxTensor *out) {
  TX_TRY
  *out = wrap(at::mse_loss(T(a), T(b), reduction));
  TX_CATCH
}

TxErr tx_smooth_l1_loss(TxTensor a, TxTensor b, TxReduction reduction, double beta,
                        TxTensor *out) {
  TX_TRY
  *out = wrap(at::smooth_l1_loss(T(a), T(b), reduction, beta));
  TX_CATCH
}

TxErr tx_cross_entropy(TxTensor logits, TxTensor target, TxTensor weight,
                       TxReduction reduction, int64_t ignore_index, double label_smoothing,
                       TxTensor *out) {
  TX_TRY
  *out = wrap(at::cross_entropy_loss(T(logits), T(target), opt(weight), reduction, ignore_index,
                                     label_smoothing));
  TX_CATCH
}

}  // extern "C"
