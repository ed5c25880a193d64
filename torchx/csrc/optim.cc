// Optimizers (AdamW with decoupled weight decay, SGD with momentum/Nesterov) and their
// state as bytes, so a checkpoint can carry moments and momentum buffers for exact resume.
// Learning-rate schedules live in Go: they are a few lines of arithmetic on the step count.
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/serialize/archive.h>

#include <sstream>

#include "common.h"

using torchx::T;

namespace {

torch::optim::Optimizer &O(TxOptim o) {
  if (o == nullptr) throw std::invalid_argument("torchx: nil optimizer handle");
  return *static_cast<torch::optim::Optimizer *>(o);
}

}  // namespace

extern "C" {

TxErr tx_optim_new(int kind, TxTensor *params, int n, double lr, double beta1, double beta2,
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
    throw std::invalid_argument("torchx: unknown optimizer kind " + std::to_string(kind));
  }
  TX_CATCH
}

TxErr tx_optim_step(TxOptim o) {
  TX_TRY
  O(o).step();
  TX_CATCH
}

TxErr tx_optim_zero_grad(TxOptim o) {
  TX_TRY
  // Zero in place (not set-to-none) so that gradients of every parameter stay defined,
  // the same behaviour on libtorch 1.13 and 2.x.
  for (auto &g : O(o).param_groups()) {
    for (auto &p : g.params()) {
      if (p.grad().defined()) {
        p.mutable_grad().detach_();
        p.mutable_grad().zero_();
      }
    }
  }
  TX_CATCH
}

TxErr tx_clip_grad_norm(TxTensor *params, int n, double max_norm, double *norm) {
  TX_TRY
  std::vector<at::Tensor> ps;
  for (int i = 0; i < n; i++) {
    if (T(params[i]).grad().defined()) ps.push_back(T(params[i]));
  }
  *norm = ps.empty() ? 0.0 : torch::nn::utils::clip_grad_norm_(ps, max_norm);
  TX_CATCH
}

void tx_optim_set_lr(TxOptim o, double lr) {
  for (auto &g : O(o).param_groups()) g.options().set_lr(lr);
}

double tx_optim_get_lr(TxOptim o) { return O(o).param_groups().at(0).options().get_lr(); }

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
