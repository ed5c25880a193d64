// Optimizers (AdamW with decoupled weight decay, SGD with momentum/Nesterov) and their
// state as bytes, so a checkpoint can carry moments and momentum buffers for exact resume.
// Learning-rate schedules live in Go: they are a few lines of arithmetic on the step count.
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/serialize/archive.h>

#include <atomic>
#include <cmath>
#include <sstream>
#include <type_traits>
#include <utility>

#include "common.h"

using torchx::T;

namespace {

torch::optim::Optimizer &O(TxOptim o) {
  if (o == nullptr) throw std::invalid_argument("torchx: nil optimizer handle");
  return *static_cast<torch::optim::Optimizer *>(o);
}

// Multi-tensor ("foreach") updates: the same arithmetic as libtorch's AdamW and SGD, in the
// same order, but one ATen call per operation for a whole parameter group instead of one per
// parameter. On a GPU that is a few kernel launches a step instead of ~9 per parameter tensor
// (PyTorch's own optimizers default to foreach on CUDA for this reason). The state lives in
// libtorch's optimizer, under its keys, so checkpoints and a mix of both paths stay exact.
// Where anything is unusual (a parameter without state yet — the first step —, step counts
// that differ, amsgrad, state keys not where expected) libtorch's own step runs instead.
std::atomic<TxForeachMode> g_foreach{TX_FOREACH_AUTO};
std::atomic<int64_t> g_foreach_steps{0};  // how many steps took the foreach path (tests)

// How libtorch keys a parameter's state: its TensorImpl's address, as text in 1.13 (the
// type is read from the map, so a libtorch keying by the address itself works too). Should a
// version spell it otherwise, lookups miss and libtorch's own step runs: slower, never wrong.
using StateKey = std::remove_cv_t<std::remove_reference_t<
    decltype(std::declval<torch::optim::Optimizer &>().state())>>::key_type;

template <typename K>
K key_of(const at::Tensor &p) {  // a template, so that only the matching branch compiles
  if constexpr (std::is_same_v<K, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<K>(p.unsafeGetTensorImpl());
  }
}

StateKey state_key(const at::Tensor &p) { return key_of<StateKey>(p); }

struct Group {
  std::vector<at::Tensor> params, grads;
  std::vector<torch::optim::OptimizerParamState *> states;
};

// Whether the foreach path is wanted: mode on, or auto with every parameter that has a
// gradient on CUDA (and at least one).
bool foreach_wanted(torch::optim::Optimizer &o) {
  TxForeachMode mode = g_foreach.load();
  if (mode != TX_FOREACH_AUTO) return mode == TX_FOREACH_ON;
  bool any = false;
  for (auto &g : o.param_groups()) {
    for (auto &p : g.params()) {
      if (!p.grad().defined()) continue;
      if (!p.is_cuda()) return false;
      any = true;
    }
  }
  return any;
}

// The parameters with gradients, group by group, and their states (nullptr when missing).
std::vector<Group> collect(torch::optim::Optimizer &o) {
  std::vector<Group> out;
  for (auto &g : o.param_groups()) {
    Group G;
    for (auto &p : g.params()) {
      if (!p.grad().defined()) continue;
      G.params.push_back(p);
      G.grads.push_back(p.grad());
      auto it = o.state().find(state_key(p));
      G.states.push_back(it == o.state().end() ? nullptr : it->second.get());
    }
    out.push_back(std::move(G));
  }
  return out;
}

bool adamw_foreach(torch::optim::AdamW &o, std::vector<Group> &groups) {
  for (size_t i = 0; i < groups.size(); i++) {  // check everything before changing anything
    auto &opt = static_cast<torch::optim::AdamWOptions &>(o.param_groups()[i].options());
    if (opt.amsgrad()) return false;
    for (auto *s : groups[i].states) {
      if (s == nullptr) return false;
      if (static_cast<torch::optim::AdamWParamState *>(s)->step() !=
          static_cast<torch::optim::AdamWParamState *>(groups[i].states[0])->step())
        return false;
    }
  }
  for (size_t i = 0; i < groups.size(); i++) {
    Group &G = groups[i];
    if (G.params.empty()) continue;
    auto &opt = static_cast<torch::optim::AdamWOptions &>(o.param_groups()[i].options());
    std::vector<at::Tensor> m, v;
    int64_t step = 0;
    for (auto *s : G.states) {
      auto *st = static_cast<torch::optim::AdamWParamState *>(s);
      st->step(st->step() + 1);
      step = st->step();
      m.push_back(st->exp_avg());
      v.push_back(st->exp_avg_sq());
    }
    const double lr = opt.lr(), beta1 = std::get<0>(opt.betas()), beta2 = std::get<1>(opt.betas());
    if (opt.weight_decay() != 0) at::_foreach_mul_(G.params, 1 - lr * opt.weight_decay());
    const double bc1 = 1 - std::pow(beta1, step), bc2 = 1 - std::pow(beta2, step);
    at::_foreach_mul_(m, beta1);
    at::_foreach_add_(m, G.grads, 1 - beta1);
    at::_foreach_mul_(v, beta2);
    at::_foreach_addcmul_(v, G.grads, G.grads, 1 - beta2);
    std::vector<at::Tensor> denom = at::_foreach_sqrt(v);
    at::_foreach_div_(denom, std::sqrt(bc2));
    at::_foreach_add_(denom, opt.eps());
    at::_foreach_addcdiv_(G.params, m, denom, -lr / bc1);
  }
  return true;
}

bool sgd_foreach(torch::optim::SGD &o, std::vector<Group> &groups) {
  for (size_t i = 0; i < groups.size(); i++) {
    auto &opt = static_cast<torch::optim::SGDOptions &>(o.param_groups()[i].options());
    if (opt.momentum() == 0) continue;
    for (auto *s : groups[i].states) {
      if (s == nullptr) return false;  // the first step creates the momentum buffers
    }
  }
  for (size_t i = 0; i < groups.size(); i++) {
    Group &G = groups[i];
    if (G.params.empty()) continue;
    auto &opt = static_cast<torch::optim::SGDOptions &>(o.param_groups()[i].options());
    std::vector<at::Tensor> d =
        opt.weight_decay() != 0 ? at::_foreach_add(G.grads, G.params, opt.weight_decay()) : G.grads;
    if (opt.momentum() != 0) {
      std::vector<at::Tensor> bufs;
      for (auto *s : G.states) bufs.push_back(static_cast<torch::optim::SGDParamState *>(s)->momentum_buffer());
      at::_foreach_mul_(bufs, opt.momentum());
      at::_foreach_add_(bufs, d, 1 - opt.dampening());
      d = opt.nesterov() ? at::_foreach_add(d, bufs, opt.momentum()) : bufs;
    }
    at::_foreach_add_(G.params, d, -opt.lr());
  }
  return true;
}

// step runs the foreach update where it applies, else libtorch's own (the CPU path looks up
// no state).
void step(torch::optim::Optimizer &o) {
  if (foreach_wanted(o)) {
    at::NoGradGuard no_grad;
    std::vector<Group> groups = collect(o);
    bool done = false;
    if (auto *a = dynamic_cast<torch::optim::AdamW *>(&o)) {
      done = adamw_foreach(*a, groups);
    } else if (auto *s = dynamic_cast<torch::optim::SGD *>(&o)) {
      done = sgd_foreach(*s, groups);
    }
    if (done) {
      g_foreach_steps++;
      return;
    }
  }
  o.step();
}

}  // namespace

extern "C" {

TxErr tx_optim_new(TxOptimKind kind, TxTensor *params, int n, double lr, double beta1, double beta2,
                   double eps, double weight_decay, double momentum, double dampening,
                   int nesterov, TxOptim *out) {
  TX_TRY
  std::vector<at::Tensor> ps = torchx::list(params, n);
  if (kind == TX_ADAMW) {
    auto o = torch::optim::AdamWOptions(lr).betas({beta1, beta2}).eps(eps).weight_decay(
        weight_decay);
    *out = new torch::optim::AdamW(ps, o);
  } else if (kind == TX_SGD) {
    auto o = torch::optim::SGDOptions(lr)
                 .momentum(momentum)
                 .dampening(dampening)
                 .weight_decay(weight_decay)
                 .nesterov(nesterov != 0);
    *out = new torch::optim::SGD(ps, o);
  } else {
    throw std::invalid_argument("torchx: unknown optimizer kind " +
                                std::to_string(static_cast<int>(kind)));
  }
  TX_CATCH
}

TxErr tx_optim_step(TxOptim o) {
  TX_TRY
  step(O(o));
  TX_CATCH
}

void tx_set_optim_foreach(TxForeachMode mode) { g_foreach.store(mode); }

int64_t tx_optim_foreach_steps(void) { return g_foreach_steps.load(); }

TxErr tx_optim_zero_grad(TxOptim o) {
  TX_TRY
  // Zero in place (not set-to-none) so that gradients of every parameter stay defined,
  // the same behaviour on libtorch 1.13 and 2.x.
  std::vector<at::Tensor> grads;
  bool all_cuda = true;
  for (auto &g : O(o).param_groups()) {
    for (auto &p : g.params()) {
      if (p.grad().defined()) {
        p.mutable_grad().detach_();
        grads.push_back(p.grad());
        all_cuda = all_cuda && p.is_cuda();
      }
    }
  }
  TxForeachMode mode = g_foreach.load();
  if (grads.empty()) {
    // nothing to zero (and ATen's foreach ops refuse empty lists)
  } else if (mode == TX_FOREACH_ON || (mode == TX_FOREACH_AUTO && all_cuda)) {
    at::_foreach_zero_(grads);
  } else {
    for (auto &g : grads) g.zero_();
  }
  TX_CATCH
}

// norm == nullptr: the norm is not read back, so a GPU is not made to wait for it. The
// foreach path is torch.nn.utils.clip_grad_norm_'s own arithmetic (norms per tensor, their
// norm, coefficient max/(total+1e-6) clamped at 1) with one norm call for the whole list.
TxErr tx_clip_grad_norm(TxTensor *params, int n, double max_norm, double *norm) {
  TX_TRY
  std::vector<at::Tensor> ps, grads;
  bool all_cuda = true;
  for (int i = 0; i < n; i++) {
    if (T(params[i]).grad().defined()) {
      ps.push_back(T(params[i]));
      grads.push_back(T(params[i]).grad());
      all_cuda = all_cuda && T(params[i]).is_cuda();
    }
  }
  if (norm) *norm = 0.0;
  if (ps.empty()) return nullptr;
  TxForeachMode mode = g_foreach.load();
  if (mode == TX_FOREACH_OFF || (mode == TX_FOREACH_AUTO && !all_cuda)) {
    double v = torch::nn::utils::clip_grad_norm_(ps, max_norm);
    if (norm) *norm = v;
    return nullptr;
  }
  at::NoGradGuard no_grad;
  at::Tensor total = at::stack(at::_foreach_norm(grads, 2)).norm(2);
  at::Tensor coef = at::clamp_max(max_norm / (total + 1e-6), 1.0);
  for (auto &g : grads) g.mul_(coef);
  if (norm) *norm = total.item<double>();
  TX_CATCH
}

TxErr tx_optim_set_lr(TxOptim o, double lr) {
  TX_TRY
  for (auto &g : O(o).param_groups()) g.options().set_lr(lr);
  TX_CATCH
}

TxErr tx_optim_get_lr(TxOptim o, double *out) {
  TX_TRY
  *out = O(o).param_groups().at(0).options().get_lr();
  TX_CATCH
}

TxErr tx_optim_save(TxOptim o, char **buf, int64_t *len) {
  TX_TRY
  torch::serialize::OutputArchive ar;
  O(o).save(ar);
  std::ostringstream ss;
  ar.save_to(ss);
  std::string s = ss.str();
  *buf = static_cast<char *>(std::malloc(s.size() == 0 ? 1 : s.size()));
  if (*buf == nullptr) throw std::bad_alloc();
  std::memcpy(*buf, s.data(), s.size());
  *len = static_cast<int64_t>(s.size());
  TX_CATCH
}

TxErr tx_optim_load(TxOptim o, const char *buf, int64_t len) {
  TX_TRY
  torch::serialize::InputArchive ar;
  std::istringstream ss(std::string(buf, static_cast<size_t>(len)));
  ar.load_from(ss);
  O(o).load(ar);
  TX_CATCH
}

void tx_optim_free(TxOptim o) { delete static_cast<torch::optim::Optimizer *>(o); }

}  // extern "C"
