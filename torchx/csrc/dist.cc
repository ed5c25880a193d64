// libtorch's c10d for sli2vol's data-parallel training: TCPStore rendezvous, Gloo (and, in a
// CUDA build with NCCL's headers, NCCL) process groups, and DDP's own Reducer. Nothing here
// is a protocol of ours; the collectives and the bucketed gradient reduction are libtorch's.
//
// The backends' headers are optional at build time (Debian's libtorch needs libgloo-dev for
// Gloo's); a build without them reports the backend as missing at run time. -DTX_NO_DIST
// builds stubs that report torch.distributed as missing (a libtorch whose c10d API this file
// does not follow yet).
#ifdef TX_NO_DIST
#include "common.h"
#include "dist.h"

extern "C" {
int tx_dist_has_backend(TxBackend) { return 0; }
static TxErr tx_no_dist() {
  return torchx::dup_message("this sli2vol was built without torch.distributed (TX_NO_DIST)");
}
TxErr tx_store_new(const char *, int, int, int, int64_t, const char *, TxStore *) { return tx_no_dist(); }
TxErr tx_group_verify(TxGroup, TxTensor *, int) { return tx_no_dist(); }
TxErr tx_sync_batch_norm(TxGroup, TxTensor, TxTensor, TxTensor, TxTensor, TxTensor, double, double, TxTensor *) {
  return tx_no_dist();
}
void tx_store_free(TxStore) {}
TxErr tx_store_set(TxStore, const char *, const char *) { return tx_no_dist(); }
TxErr tx_store_get(TxStore, const char *, int64_t, char *, int, int *) { return tx_no_dist(); }
TxErr tx_group_new(TxStore, TxBackend, int, int, int64_t, TxGroup *) { return tx_no_dist(); }
void tx_group_free(TxGroup) {}
TxErr tx_group_broadcast(TxGroup, TxTensor *, int, int) { return tx_no_dist(); }
TxErr tx_group_allreduce_sum(TxGroup, TxTensor *, int) { return tx_no_dist(); }
TxErr tx_group_allreduce_max(TxGroup, TxTensor *, int) { return tx_no_dist(); }
TxErr tx_group_barrier(TxGroup) { return tx_no_dist(); }
TxErr tx_reducer_new(TxGroup, TxTensor *, int, int64_t, TxReducer *) { return tx_no_dist(); }
TxErr tx_reducer_prepare_forward(TxReducer) { return tx_no_dist(); }
TxErr tx_reducer_prepare_backward(TxReducer) { return tx_no_dist(); }
void tx_reducer_free(TxReducer) {}
}
#else
#if __has_include(<gloo/algorithm.h>)
#define USE_C10D_GLOO 1
#endif
#if defined(TORCHX_WITH_CUDA) && __has_include(<nccl.h>)
#define USE_C10D_NCCL 1
#endif

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <memory>
#include <tuple>
#include <type_traits>

#include "common.h"
#include "dist.h"

// A libtorch built with glog (Debian's) logs c10d's socket retries and failures to stderr,
// several lines before the one-line error sli2vol reports; quieted unless the user asks for
// them (GLOG_minloglevel). A libtorch without glog (a PyTorch wheel) has no such flag: weak.
namespace fLI {
extern int32_t FLAGS_minloglevel __attribute__((weak));
}

namespace {

void quiet_c10d_logs() {
  if (&fLI::FLAGS_minloglevel != nullptr && std::getenv("GLOG_minloglevel") == nullptr) {
    fLI::FLAGS_minloglevel = 3;  // FATAL only
  }
}

using StorePtr = c10::intrusive_ptr<c10d::Store>;
using GroupPtr = c10::intrusive_ptr<c10d::ProcessGroup>;

StorePtr &S(TxStore s) {
  if (s == nullptr) throw std::invalid_argument("torchx: nil store handle");
  return *static_cast<StorePtr *>(s);
}

GroupPtr &G(TxGroup g) {
  if (g == nullptr) throw std::invalid_argument("torchx: nil process group handle");
  return *static_cast<GroupPtr *>(g);
}

c10d::Reducer &R(TxReducer r) {
  if (r == nullptr) throw std::invalid_argument("torchx: nil reducer handle");
  return *static_cast<c10d::Reducer *>(r);
}

#ifdef USE_C10D_GLOO
c10::intrusive_ptr<c10d::ProcessGroupGloo> newGloo(const StorePtr &store, int rank, int world,
                                                   std::chrono::milliseconds timeout) {
  auto opts = c10d::ProcessGroupGloo::Options::create();
  opts->timeout = timeout;
  // The interface of this host's name, as torch.distributed picks it (GLOO_SOCKET_IFNAME
  // overrides it there and here).
  const char *ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname != nullptr && *ifname != '\0') {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else {
    opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, opts);
}
#endif

#ifdef USE_C10D_NCCL
c10::intrusive_ptr<c10d::ProcessGroupNCCL> newNCCL(const StorePtr &store, int rank, int world,
                                                   std::chrono::milliseconds timeout) {
  // Blocking waits: a collective that outlasts the timeout fails with an error (which Go
  // reports in one line) instead of the watchdog aborting the process. The user's own
  // setting wins; 1.13 reads the first name, 2.x the second.
  setenv("NCCL_BLOCKING_WAIT", "1", 0);
  setenv("TORCH_NCCL_BLOCKING_WAIT", "1", 0);
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, world, opts);
}
#endif

// A process group of one backend. From libtorch 2.0 a ProcessGroup is a front holding a
// backend per device type; before, the backend was the process group itself.
#if TORCH_VERSION_MAJOR >= 2
// libtorch 2.0–2.4 construct a ProcessGroup with options naming its backend; later releases
// without. Whichever constructor this libtorch has is used (only that branch is compiled).
template <class PG, class Store>
c10::intrusive_ptr<PG> frontGroup(const Store &store, int rank, int world, const char *backend,
                                  std::chrono::milliseconds timeout) {
  if constexpr (std::is_constructible_v<PG, Store, int, int>) {
    return c10::make_intrusive<PG>(store, rank, world);
  } else {
    return c10::make_intrusive<PG>(store, rank, world,
                                   c10::make_intrusive<typename PG::Options>(backend, timeout));
  }
}
#endif

// A process group of one backend. From libtorch 2.0 a ProcessGroup is a front holding a
// backend per device type; before, the backend was the process group itself.
GroupPtr newGroup(const StorePtr &store, TxBackend b, int rank, int world,
                  std::chrono::milliseconds timeout) {
  // A prefix keeps this group's keys apart from any other group made on the same store.
  StorePtr prefixed = c10::make_intrusive<c10d::PrefixStore>("sli2vol/", store);
#if TORCH_VERSION_MAJOR >= 2
  using BT = c10d::ProcessGroup::BackendType;
  if (b == TX_BACKEND_GLOO) {
#ifdef USE_C10D_GLOO
    auto pg = frontGroup<c10d::ProcessGroup>(prefixed, rank, world, "gloo", timeout);
    auto gloo = newGloo(prefixed, rank, world, timeout);
    pg->setBackend(c10::DeviceType::CPU, BT::GLOO, gloo);
    pg->setBackend(c10::DeviceType::CUDA, BT::GLOO, gloo);
    pg->setDefaultBackend(BT::GLOO);
    return pg;
#endif
  } else if (b == TX_BACKEND_NCCL) {
#ifdef USE_C10D_NCCL
    auto pg = frontGroup<c10d::ProcessGroup>(prefixed, rank, world, "nccl", timeout);
    auto nccl = newNCCL(prefixed, rank, world, timeout);
    pg->setBackend(c10::DeviceType::CUDA, BT::NCCL, nccl);
    pg->setDefaultBackend(BT::NCCL);
    return pg;
#endif
  }
#else
  if (b == TX_BACKEND_GLOO) {
#ifdef USE_C10D_GLOO
    return newGloo(prefixed, rank, world, timeout);
#endif
  } else if (b == TX_BACKEND_NCCL) {
#ifdef USE_C10D_NCCL
    return newNCCL(prefixed, rank, world, timeout);
#endif
  }
#endif
  throw std::invalid_argument(std::string("this libtorch build has no ") +
                              (b == TX_BACKEND_NCCL ? "NCCL" : "Gloo") +
                              " process group (its headers were missing when torchx was built)");
}

// DDP's Reducer. Its constructor has changed across libtorch releases (1.13 takes per-bucket
// size limits; later 2.x drop them and add flags without defaults); the one this libtorch has
// is called, the others are never compiled.
template <class R, class Ps, class B, class L, class S, class N>
R *newReducer(Ps ps, B buckets, L limits, GroupPtr g, S sparse, int64_t cap, N names) {
  constexpr int64_t first = c10d::kDefaultFirstBucketBytes;
  if constexpr (std::is_constructible_v<R, Ps, B, L, GroupPtr, S, int64_t, bool, bool, N, int64_t>) {
    return new R(ps, buckets, limits, g, sparse, cap, false, false, names, first);
  } else if constexpr (std::is_constructible_v<R, Ps, B, GroupPtr, S, int64_t, bool, bool, N, int64_t>) {
    return new R(ps, buckets, g, sparse, cap, false, false, names, first);
  } else if constexpr (std::is_constructible_v<R, Ps, B, GroupPtr, S, int64_t, bool, bool, N, int64_t, bool,
                                               bool>) {
    return new R(ps, buckets, g, sparse, cap, false, false, names, first, false, false);
  } else {
    return new R(ps, buckets, g, sparse, cap, false, false, names, first, false, false,
                 std::vector<int64_t>{});
  }
}

void wait(const c10::intrusive_ptr<c10d::Work> &w) { w->wait(); }

// All-reduces each tensor in place with op, outside autograd, one after the other.
void allreduceAll(const GroupPtr &g, std::vector<at::Tensor> ts, c10d::ReduceOp::RedOpType op) {
  at::NoGradGuard no_grad;
  for (auto &t : ts) {
    std::vector<at::Tensor> one{t};
    c10d::AllreduceOptions o;
    o.reduceOp = op;
    wait(g->allreduce(one, o));
  }
}

void allreduceSum(const GroupPtr &g, at::Tensor &t) { allreduceAll(g, {t}, c10d::ReduceOp::SUM); }

// SyncBatchNorm: batch normalisation with statistics over the batches of every rank, as
// torch.nn.SyncBatchNorm computes them. Forward: per channel, the global mean and variance
// from each rank's count, mean and sum of squared deviations (Chan's parallel combination, two
// all-reduces), the running statistics updated with them (unbiased variance). Backward: the
// gradient of the input through the global statistics (the sums of dy and dy·(x − μ) all-
// reduced); weight and bias get this rank's gradients, which DDP then averages.
struct SyncBatchNorm : public torch::autograd::Function<SyncBatchNorm> {
  static std::vector<int64_t> reduceDims(const at::Tensor &x) {
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); d++) dims.push_back(d);
    return dims;
  }
  static std::vector<int64_t> channelShape(const at::Tensor &x) {
    std::vector<int64_t> shape(x.dim(), 1);
    shape[1] = x.size(1);
    return shape;
  }

  static at::Tensor forward(torch::autograd::AutogradContext *ctx, const at::Tensor &x,
                            const at::Tensor &weight, const at::Tensor &bias, at::Tensor running_mean,
                            at::Tensor running_var, double momentum, double eps, int64_t group) {
    const GroupPtr &g = *reinterpret_cast<GroupPtr *>(group);
    auto dims = reduceDims(x);
    auto shape = channelShape(x);
    const int64_t c = x.size(1);
    at::Tensor xf = x.to(at::kFloat);
    double count = static_cast<double>(x.numel() / c);
    at::Tensor localMean = xf.mean(dims);
    // First all-reduce: each channel's sum, and the sample count.
    at::Tensor sums = at::cat({localMean * count, at::full({1}, count, xf.options())});
    allreduceSum(g, sums);
    double total = sums[c].item<double>();
    at::Tensor mean = sums.narrow(0, 0, c) / total;
    // Second: the squared deviations, each rank's about its own mean moved to the global one.
    at::Tensor m2 = (xf - localMean.view(shape)).pow(2).sum(dims) + count * (localMean - mean).pow(2);
    allreduceSum(g, m2);
    at::Tensor var = m2 / total;
    at::Tensor invstd = (var + eps).rsqrt();
    {
      at::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(mean.to(running_mean.scalar_type()) * momentum);
      running_var.mul_(1 - momentum)
          .add_((var * (total / std::max(total - 1, 1.0))).to(running_var.scalar_type()) * momentum);
    }
    at::Tensor out = (xf - mean.view(shape)) * (invstd * weight.to(at::kFloat)).view(shape) +
                     bias.to(at::kFloat).view(shape);
    ctx->save_for_backward({x, weight, mean, invstd});
    ctx->saved_data["group"] = group;
    ctx->saved_data["total"] = total;
    return out.to(x.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext *ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor x = saved[0].to(at::kFloat), weight = saved[1], mean = saved[2], invstd = saved[3];
    const GroupPtr &g = *reinterpret_cast<GroupPtr *>(ctx->saved_data["group"].toInt());
    double total = ctx->saved_data["total"].toDouble();
    auto dims = reduceDims(x);
    auto shape = channelShape(x);
    const int64_t c = x.size(1);
    at::Tensor dy = grads[0].to(at::kFloat);
    at::Tensor xmu = x - mean.view(shape);
    at::Tensor sumDy = dy.sum(dims), sumDyXmu = (dy * xmu).sum(dims);
    at::Tensor gradWeight = (sumDyXmu * invstd).to(weight.scalar_type());
    at::Tensor gradBias = sumDy.clone().to(weight.scalar_type());
    at::Tensor both = at::cat({sumDy, sumDyXmu});
    allreduceSum(g, both);
    at::Tensor meanDy = both.narrow(0, 0, c) / total, meanDyXmu = both.narrow(0, c, c) / total;
    at::Tensor gradX = (dy - meanDy.view(shape) - xmu * (invstd * invstd * meanDyXmu).view(shape)) *
                       (invstd * weight.to(at::kFloat)).view(shape);
    return {gradX.to(saved[0].scalar_type()), gradWeight, gradBias, at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

int tx_dist_has_backend(TxBackend b) {
  if (b == TX_BACKEND_GLOO) {
#ifdef USE_C10D_GLOO
    return 1;
#endif
  }
  if (b == TX_BACKEND_NCCL) {
#ifdef USE_C10D_NCCL
    return 1;
#endif
  }
  return 0;
}

TxErr tx_store_new(const char *host, int port, int is_server, int world, int64_t timeout_ms,
                   const char *prefix, TxStore *out) {
  TX_TRY
  quiet_c10d_logs();
  if (port <= 0 || port > 65535) throw std::invalid_argument("port " + std::to_string(port) + " is out of range");
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(port);
  o.isServer = is_server != 0;
  o.numWorkers = static_cast<std::size_t>(world);
  o.waitWorkers = true;
  o.timeout = std::chrono::milliseconds(timeout_ms);
  StorePtr s = c10::make_intrusive<c10d::TCPStore>(std::string(host), o);
  if (prefix != nullptr && *prefix != '\0') {
    s = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), s);
  }
  *out = new StorePtr(std::move(s));
  TX_CATCH
}

void tx_store_free(TxStore s) { delete static_cast<StorePtr *>(s); }

TxErr tx_store_set(TxStore s, const char *key, const char *value) {
  TX_TRY
  std::string v(value);
  S(s)->set(std::string(key), std::vector<uint8_t>(v.begin(), v.end()));
  TX_CATCH
}

TxErr tx_store_get(TxStore s, const char *key, int64_t timeout_ms, char *buf, int buflen, int *found) {
  TX_TRY
  *found = 0;
  std::string k(key);
  if (!S(s)->check({k})) return nullptr;
  auto old = S(s)->getTimeout();
  S(s)->setTimeout(std::chrono::milliseconds(timeout_ms));
  std::vector<uint8_t> v;
  try {
    v = S(s)->get(k);
  } catch (...) {
    S(s)->setTimeout(old);
    throw;
  }
  S(s)->setTimeout(old);
  int n = std::min<int>(static_cast<int>(v.size()), buflen - 1);
  std::memcpy(buf, v.data(), n);
  buf[n] = '\0';
  *found = 1;
  TX_CATCH
}

TxErr tx_group_new(TxStore s, TxBackend b, int rank, int world, int64_t timeout_ms,
                   TxGroup *out) {
  TX_TRY
  *out = new GroupPtr(newGroup(S(s), b, rank, world, std::chrono::milliseconds(timeout_ms)));
  TX_CATCH
}

void tx_group_free(TxGroup g) { delete static_cast<GroupPtr *>(g); }

TxErr tx_group_broadcast(TxGroup g, TxTensor *ts, int n, int root) {
  TX_TRY
  std::vector<at::Tensor> v = torchx::list(ts, n);
  // In place into parameters too: outside autograd, as DDP syncs module states, in one
  // coalesced broadcast (250 MiB buffers).
  at::NoGradGuard no_grad;
  c10d::broadcast_coalesced(G(g), v, 250u << 20, root);
  TX_CATCH
}

TxErr tx_group_allreduce_sum(TxGroup g, TxTensor *ts, int n) {
  TX_TRY
  allreduceAll(G(g), torchx::list(ts, n), c10d::ReduceOp::SUM);
  TX_CATCH
}

TxErr tx_group_allreduce_max(TxGroup g, TxTensor *ts, int n) {
  TX_TRY
  allreduceAll(G(g), torchx::list(ts, n), c10d::ReduceOp::MAX);
  TX_CATCH
}

TxErr tx_sync_batch_norm(TxGroup g, TxTensor x, TxTensor weight, TxTensor bias, TxTensor running_mean,
                         TxTensor running_var, double momentum, double eps, TxTensor *out) {
  TX_TRY
  *out = torchx::wrap(SyncBatchNorm::apply(torchx::T(x), torchx::T(weight), torchx::T(bias),
                                           torchx::T(running_mean), torchx::T(running_var), momentum, eps,
                                           reinterpret_cast<int64_t>(&G(g))));
  TX_CATCH
}

TxErr tx_group_verify(TxGroup g, TxTensor *params, int n) {
  TX_TRY
  std::vector<at::Tensor> ps = torchx::list(params, n);
  c10d::verify_params_across_processes(G(g), ps, {});
  TX_CATCH
}

TxErr tx_group_barrier(TxGroup g) {
  TX_TRY
  wait(G(g)->barrier());
  TX_CATCH
}

TxErr tx_reducer_new(TxGroup g, TxTensor *params, int n, int64_t bucket_cap_bytes,
                     TxReducer *out) {
  TX_TRY
  std::vector<at::Tensor> ps = torchx::list(params, n);
  std::vector<bool> sparse(ps.size(), false);
  // As DistributedDataParallel: a small first bucket (it is reduced first, while the rest of
  // the backward pass runs), then buckets of bucket_cap bytes, in reverse parameter order
  // (the order gradients become ready); rebuilt after the first step in the order observed.
  std::vector<std::vector<size_t>> buckets;
  std::vector<size_t> limits;
  std::tie(buckets, limits) = c10d::compute_bucket_assignment_by_size(
      ps, {static_cast<size_t>(c10d::kDefaultFirstBucketBytes), static_cast<size_t>(bucket_cap_bytes)},
      sparse);
  std::reverse(buckets.begin(), buckets.end());
  std::reverse(limits.begin(), limits.end());
  std::unordered_map<size_t, std::string> names;
  // find_unused_parameters and gradient_as_bucket_view off, as DDP's defaults.
  *out = newReducer<c10d::Reducer>(ps, buckets, limits, G(g), sparse, bucket_cap_bytes, names);
  TX_CATCH
}

TxErr tx_reducer_prepare_forward(TxReducer r) {
  TX_TRY
  R(r).prepare_for_forward();
  if (at::GradMode::is_enabled()) R(r).rebuild_buckets();
  TX_CATCH
}

TxErr tx_reducer_prepare_backward(TxReducer r) {
  TX_TRY
  R(r).prepare_for_backward({});
  TX_CATCH
}

void tx_reducer_free(TxReducer r) {
  try {
    delete static_cast<c10d::Reducer *>(r);
  } catch (...) {
    // A reducer torn down mid-reduction (a failed step) may throw; the process goes on.
  }
}

}  // extern "C"
#endif  // TX_NO_DIST
