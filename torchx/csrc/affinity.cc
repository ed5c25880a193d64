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

#include <atomic>

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

// The same three operations one window row (dy) at a time: 2R+1 rounds of a few large ops
// instead of (2R+1)² rounds of small ones, for one B×C×H×W×(2R+1) temporary. The zero-padded
// map's x-window is a strided view (unfold), so only the product is materialised.
//
// Measured on an H200 (R=6, 128 channels): at 96², batch 4, a GPU is bound by kernel
// launches and a training step is 6 % faster by rows; at 256², batch 4, each per-shift op is
// large enough and rows are 14 % slower (affinity forward + backward, 100 vs 88 ms). On the
// CPU rows are ~9× slower (strided reductions). So auto takes rows on CUDA for maps of up to
// 2^23 elements (B·C·H·W; the crossover lies between 4.7 M and 33.5 M and was not measured
// closer) and shifts otherwise.
std::atomic<TxAffinityStrategy> g_strategy{TX_AFFINITY_AUTO};
constexpr int64_t kRowsMaxElements = int64_t(1) << 23;

bool use_rows(const at::Tensor &t) {
  TxAffinityStrategy s = g_strategy.load();
  return s == TX_AFFINITY_ROWS ||
         (s == TX_AFFINITY_AUTO && t.is_cuda() && t.numel() <= kRowsMaxElements);
}

// The padded map's window row dy (0..S-1) as a B×C×H×W×S view: [.., y, x, j] = m[y+dy-R, x+j-R].
at::Tensor window_row(const at::Tensor &padded, int64_t dy, int64_t H, int64_t S) {
  return padded.narrow(2, dy, H).unfold(3, S, 1);
}

at::Tensor pad(const at::Tensor &t, int64_t R) { return at::constant_pad_nd(t, {R, R, R, R}, 0); }

// The affinity's window row dy as B×1×H×W×S: [.., y, x, j] = A[(dy·S + j), y, x].
at::Tensor affinity_row(const at::Tensor &A, int64_t dy, int64_t S) {
  return A.narrow(1, dy * S, S).permute({0, 2, 3, 1}).unsqueeze(1);
}

at::Tensor correlation_forward_rows(const at::Tensor &q, const at::Tensor &k, int64_t R) {
  const int64_t B = q.size(0), H = q.size(2), W = q.size(3), S = 2 * R + 1;
  at::Tensor out = at::empty({B, S * S, H, W}, q.options());
  at::Tensor kp = pad(k, R), qe = q.unsqueeze(-1);
  for (int64_t dy = 0; dy < S; dy++) {
    // Σ_c q[c,y,x]·k[c,y+dy,x+j] → B×H×W×S, written into channels dy·S … dy·S+S-1.
    out.narrow(1, dy * S, S).copy_(at::sum(qe * window_row(kp, dy, H, S), {1}).permute({0, 3, 1, 2}));
  }
  return out;
}

void correlation_backward_rows(const at::Tensor &G, const at::Tensor &a, const at::Tensor &b,
                               int64_t R, at::Tensor *da, at::Tensor *db) {
  const int64_t B = a.size(0), C = a.size(1), H = a.size(2), W = a.size(3), S = 2 * R + 1;
  at::Tensor bp = da ? pad(b, R) : at::Tensor();
  // db accumulates on the padded grid: dbp[y+dy, x+j] += Σ G[dy·S+j, y, x]·a[y, x].
  at::Tensor dbp = db ? at::zeros({B, C, H + 2 * R, W + 2 * R}, b.options()) : at::Tensor();
  if (da) *da = at::zeros_like(a);
  const int64_t Wp = W + 2 * (S - 1);
  for (int64_t dy = 0; dy < S; dy++) {
    at::Tensor g = affinity_row(G, dy, S);  // B×1×H×W×S
    if (da) da->add_(at::sum(g * window_row(bp, dy, H, S), {-1}));
    if (db) {
      // T[.., y, j, x] = G[dy·S+j, y, x]·a[y, x], padded by S-1 columns on both sides. The
      // sum over j of T[j, x'-j] (x' the padded column) is a diagonal of each (j, x) plane:
      // element offset j·Wp + x' − j + (S−1), a strided view with steps 1 along x' and Wp−1
      // along j, so one view and one sum give the whole row.
      at::Tensor T = at::constant_pad_nd((g * a.unsqueeze(-1)).permute({0, 1, 2, 4, 3}),
                                         {S - 1, S - 1}, 0)
                         .contiguous();  // B×C×H×S×Wp
      at::Tensor diag = T.as_strided({B, C, H, W + S - 1, S},
                                     {C * H * S * Wp, H * S * Wp, S * Wp, 1, Wp - 1},
                                     T.storage_offset() + (S - 1));
      dbp.narrow(2, dy, H).add_(at::sum(diag, {-1}));
    }
  }
  if (db) *db = dbp.slice(2, R, R + H).slice(3, R, R + W).contiguous();
}

at::Tensor aggregate_forward_rows(const at::Tensor &A, const at::Tensor &m, int64_t R) {
  const int64_t H = m.size(2), S = 2 * R + 1;
  at::Tensor out = at::zeros_like(m), mp = pad(m, R);
  for (int64_t dy = 0; dy < S; dy++) {
    out.add_(at::sum(affinity_row(A, dy, S) * window_row(mp, dy, H, S), {-1}));
  }
  return out;
}

at::Tensor correlation_any(const at::Tensor &q, const at::Tensor &k, int64_t R) {
  return use_rows(q) ? correlation_forward_rows(q, k, R) : correlation_forward(q, k, R);
}

void correlation_backward_any(const at::Tensor &G, const at::Tensor &a, const at::Tensor &b,
                              int64_t R, at::Tensor *da, at::Tensor *db) {
  if (use_rows(a)) {
    correlation_backward_rows(G, a, b, R, da, db);
  } else {
    correlation_backward(G, a, b, R, da, db);
  }
}

at::Tensor aggregate_any(const at::Tensor &A, const at::Tensor &m, int64_t R) {
  return use_rows(m) ? aggregate_forward_rows(A, m, R) : aggregate_forward(A, m, R);
}

// The reference's formulation (F.unfold, as the published code and bench/pytorch do): every
// window as a B×C×(2R+1)²×H×W tensor, a product and a sum, differentiated by ATen's own
// autograd. Fewest kernel launches and the most memory (5.7 GB for one 128-channel 256² map
// at R=6); never chosen by auto, there to measure against the two above on a GPU.
at::Tensor windows(const at::Tensor &t, int64_t R) {  // B×C×(2R+1)²×H×W
  const int64_t S = 2 * R + 1;
  return at::im2col(t, {S, S}, {1, 1}, {R, R}, {1, 1})
      .view({t.size(0), t.size(1), S * S, t.size(2), t.size(3)});
}

at::Tensor correlation_unfold(const at::Tensor &q, const at::Tensor &k, int64_t R) {
  return at::sum(q.unsqueeze(2) * windows(k, R), {1});
}

at::Tensor aggregate_unfold(const at::Tensor &A, const at::Tensor &m, int64_t R) {
  return at::sum(A.unsqueeze(1) * windows(m, R), {2});
}

bool use_unfold() { return g_strategy.load() == TX_AFFINITY_UNFOLD; }

struct Correlation : public torch::autograd::Function<Correlation> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &q, const at::Tensor &k,
                            int64_t R) {
    ctx->save_for_backward({q, k});
    ctx->saved_data["R"] = R;
    return correlation_any(q.contiguous(), k.contiguous(), R);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    int64_t R = ctx->saved_data["R"].toInt();
    at::Tensor dq, dk;
    bool need_q = ctx->needs_input_grad(0), need_k = ctx->needs_input_grad(1);
    // grads[0] as it comes (often a broadcast view of the loss's gradient): both strategies
    // read it through views, and making it contiguous would cost one more output-sized tensor.
    correlation_backward_any(grads[0], saved[0], saved[1], R, need_q ? &dq : nullptr,
                             need_k ? &dk : nullptr);
    return {dq, dk, at::Tensor()};
  }
};

struct Aggregate : public torch::autograd::Function<Aggregate> {
  static at::Tensor forward(AutogradContext *ctx, const at::Tensor &A, const at::Tensor &m,
                            int64_t R) {
    ctx->save_for_backward({A, m});
    ctx->saved_data["R"] = R;
    return aggregate_any(A.contiguous(), m.contiguous(), R);
  }
  static variable_list backward(AutogradContext *ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    int64_t R = ctx->saved_data["R"].toInt();
    const at::Tensor &G = grads[0];
    at::Tensor dA, dm;
    // dA[d,y,x] = Σ_c G[c,y,x]·m[c,y+dy,x+dx] is the correlation of G with m;
    // dm[y+dy,x+dx] += A_d[y,x]·G[y,x] is correlation's key gradient with A as its grad.
    if (ctx->needs_input_grad(0)) dA = correlation_any(G.contiguous(), saved[1], R);
    if (ctx->needs_input_grad(1)) correlation_backward_any(saved[0], G, saved[1], R, nullptr, &dm);
    return {dA, dm, at::Tensor()};
  }
};

}  // namespace

extern "C" {

void tx_set_affinity_strategy(TxAffinityStrategy s) { g_strategy.store(s); }

TxErr tx_correlation(TxTensor q, TxTensor k, int64_t radius, TxTensor *out) {
  TX_TRY
  check_pair(torchx::T(q), torchx::T(k), "correlation", radius);
  TORCH_CHECK(torchx::T(q).size(1) == torchx::T(k).size(1),
              "correlation: query and key channels differ: ", torchx::T(q).sizes(), " vs ",
              torchx::T(k).sizes());
  *out = torchx::wrap(use_unfold() ? correlation_unfold(torchx::T(q), torchx::T(k), radius)
                                    : Correlation::apply(torchx::T(q), torchx::T(k), radius));
  TX_CATCH
}

TxErr tx_aggregate(TxTensor a, TxTensor m, int64_t radius, TxTensor *out) {
  TX_TRY
  check_pair(torchx::T(a), torchx::T(m), "aggregate", radius);
  const int64_t S = 2 * radius + 1;
  TORCH_CHECK(torchx::T(a).size(1) == S * S, "aggregate: affinity has ", torchx::T(a).size(1),
              " channels, radius ", radius, " needs ", S * S);
  *out = torchx::wrap(use_unfold() ? aggregate_unfold(torchx::T(a), torchx::T(m), radius)
                                    : Aggregate::apply(torchx::T(a), torchx::T(m), radius));
  TX_CATCH
}

}  // extern "C"
