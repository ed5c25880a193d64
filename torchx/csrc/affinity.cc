// Fused local affinity (Sli2Vol / Sli2Vol+ Eq. 2 and Eq. 4) as autograd functions over ATen
// ops, so one implementation runs on CPU and CUDA:
//
//   correlation(q, k, R)[b, d, y, x] = Σ_c q[b,c,y,x] · k[b,c,y+dy,x+dx]
//   aggregate(A, m, R)[b, c, y, x]   = Σ_d A[b,d,y,x] · m[b,c,y+dy,x+dx]
//
// with d = (dy+R)·(2R+1) + (dx+R) (the kernel order of unfold) and zeros outside the slice.
// One displacement at a time over the overlapping region: memory stays O(B·(2R+1)²·H·W) plus
// one B×C×H×W temporary, never the B×C×(2R+1)²×H×W that unfold would build (5.7 GB for one
// 128-channel 256² map).
#include <torch/csrc/autograd/custom_function.h>

#include "common.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The target pixels (y, x) whose displaced neighbour (y+dy, x+dx) is inside an H×W slice.
struct Region {
  int64_t y0, y1, x0, x1;
  bool empty() const { return y0 >= y1 || x0 >= x1; }
};

Region region(int64_t H, int64_t W, int64_t dy, int64_t dx) {
  return Region{std::max<int64_t>(0, -dy), std::min(H, H - dy), std::max<int64_t>(0, -dx),
                std::min(W, W - dx)};
}

at::Tensor at_target(const at::Tensor &t, const Region &r) {
  return t.slice(2, r.y0, r.y1).slice(3, r.x0, r.x1);
}

at::Tensor at_source(const at::Tensor &t, const Region &r, int64_t dy, int64_t dx) {
  return t.slice(2, r.y0 + dy, r.y1 + dy).slice(3, r.x0 + dx, r.x1 + dx);
}

void check_pair(const at::Tensor &a, const at::Tensor &b, const char *what, int64_t R) {
  TORCH_CHECK(R >= 0, what, ": radius must be >= 0, got ", R);
  TORCH_CHECK(a.dim() == 4 && b.dim() == 4, what, ": want 4D B×C×H×W tensors, got ", a.sizes(),
              " and ", b.sizes());
  TORCH_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(2) && a.size(3) == b.size(3), what,
              ": batch and spatial sizes differ: ", a.sizes(), " vs ", b.sizes());
  TORCH_CHECK(a.device() == b.device(), what, ": tensors on ", a.device(), " and ", b.device());
}

at::Tensor correlation_forward(const at::Tensor &q, const at::Tensor &k, int64_t R) {
  const int64_t B = q.size(0), H = q.size(2), W = q.size(3), S = 2 * R + 1;
  at::Tensor out = at::zeros({B, S * S, H, W}, q.options());
  for (int64_t dy = -R; dy <= R; dy++) {
    for (int64_t dx = -R; dx <= R; dx++) {
      Region r = region(H, W, dy, dx);
      if (r.empty()) continue;
      int64_t d = (dy + R) * S + (dx + R);
      at::Tensor o = out.select(1, d).slice(1, r.y0, r.y1).slice(2, r.x0, r.x1);
      at::sum_out(o, at::mul(at_target(q, r), at_source(k, r, dy, dx)), {1});
    }
  }
  return out;
}

// Gradients of correlation(a, b): da[y,x] += G_d[y,x]·b[y+dy,x+dx], db[y+dy,x+dx] += G_d[y,x]·a[y,x].
void correlation_backward(const at::Tensor &G, const at::Tensor &a, const at::Tensor &b,
                          int64_t R, at::Tensor *da, at::Tensor *db) {
  const int64_t H = a.size(2), W = a.size(3), S = 2 * R + 1;
  if (da) *da = at::zeros_like(a);
  if (db) *db = at::zeros_like(b);
  for (int64_t dy = -R; dy <= R; dy++) {
    for (int64_t dx = -R; dx <= R; dx++) {
      Region r = region(H, W, dy, dx);
      if (r.empty()) continue;
      int64_t d = (dy + R) * S + (dx + R);
      at::Tensor g = at_target(G.narrow(1, d, 1), r);  // B×1×h×w, broadcast over channels
      if (da) at_target(*da, r).addcmul_(g, at_source(b, r, dy, dx));
      if (db) at_source(*db, r, dy, dx).addcmul_(g, at_target(a, r));
    }
  }
}

at::Tensor aggregate_forward(const at::Tensor &A, const at::Tensor &m, int64_t R) {
  const int64_t H = m.size(2), W = m.size(3), S = 2 * R + 1;
  at::Tensor out = at::zeros_like(m);
  for (int64_t dy = -R; dy <= R; dy++) {
    for (int64_t dx = -R; dx <= R; dx++) {
      Region r = region(H, W, dy, dx);
      if (r.empty()) continue;
      int64_t d = (dy + R) * S + (dx + R);
      at_target(out, r).addcmul_(at_target(A.narrow(1, d, 1), r), at_source(m, r, dy, dx));
    }
  }
  return out;
}

struct Correlation : public torch::autograd::Function<Correlation> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &q, const at::Tensor &k,
                            int64_t R) {
    ctx->save_for_backward({q, k});
    ctx->saved_data["R"] = R;
    return correlation_forward(q.contiguous(), k.contiguous(), R);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    int64_t R = ctx->saved_data["R"].toInt();
    at::Tensor dq, dk;
    bool need_q = ctx->needs_input_grad(0), need_k = ctx->needs_input_grad(1);
    correlation_backward(grads[0], saved[0], saved[1], R, need_q ? &dq : nullptr,
                         need_k ? &dk : nullptr);
    return {dq, dk, at::Tensor()};
  }
};

struct Aggregate : public torch::autograd::Function<Aggregate> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &A, const at::Tensor &m,
                            int64_t R) {
    ctx->save_for_backward({A, m});
    ctx->saved_data["R"] = R;
    return aggregate_forward(A.contiguous(), m.contiguous(), R);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    int64_t R = ctx->saved_data["R"].toInt();
    const at::Tensor &G = grads[0];
    at::Tensor dA, dm;
    // dA[d,y,x] = Σ_c G[c,y,x]·m[c,y+dy,x+dx] is the correlation of G with m;
    // dm[y+dy,x+dx] += A_d[y,x]·G[y,x] is correlation's key gradient with A as its grad.
    if (ctx->needs_input_grad(0)) dA = correlation_forward(G.contiguous(), saved[1], R);
    if (ctx->needs_input_grad(1)) correlation_backward(saved[0], G, saved[1], R, nullptr, &dm);
    return {dA, dm, at::Tensor()};
  }
};

}  // namespace

extern "C" {

TxErr tx_correlation(TxTensor q, TxTensor k, int64_t radius, TxTensor *out) {
  TX_TRY
  check_pair(torchx::T(q), torchx::T(k), "correlation", radius);
  TORCH_CHECK(torchx::T(q).size(1) == torchx::T(k).size(1),
              "correlation: query and key channels differ: ", torchx::T(q).sizes(), " vs ",
              torchx::T(k).sizes());
  *out = torchx::wrap(Correlation::apply(torchx::T(q), torchx::T(k), radius));
  TX_CATCH
}

TxErr tx_aggregate(TxTensor a, TxTensor m, int64_t radius, TxTensor *out) {
  TX_TRY
  check_pair(torchx::T(a), torchx::T(m), "aggregate", radius);
  const int64_t S = 2 * radius + 1;
  TORCH_CHECK(torchx::T(a).size(1) == S * S, "aggregate: affinity has ", torchx::T(a).size(1),
              " channels, radius ", radius, " needs ", S * S);
  *out = torchx::wrap(Aggregate::apply(torchx::T(a), torchx::T(m), radius));
  TX_CATCH
}

}  // extern "C"
