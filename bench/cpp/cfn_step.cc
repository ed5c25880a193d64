// The OEG-CFN (or Sli2Vol CFN) training step of sli2vol's trainer, written directly in C++
// against libtorch: the ceiling any binding of libtorch can reach for this step. It runs the
// same operators as the Go trainer in the same order (the same fused affinity, from
// libtorchx, called as plain C++, and the same optimizer: torchx's AdamW, multi-tensor on
// CUDA, and the same host allocator settings), except batch norm's num_batches_tracked
// counter, which nothing reads; on the weights and batch `sli2vol-bench prepare` wrote, and
// prints one JSON line as sli2vol-bench does, so `make bench` can set Go beside it.
//
//   cfn_step DIR DEVICE STEPS THREADS
//
// DIR/cpp.bin holds the tensors (parameters, buffers, the input filter's kernel, the batch)
// and DIR/cpp.txt the settings (written by bench.Prepare).
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "torchx.h"

namespace {

struct Bundle {
  std::map<std::string, at::Tensor> t;
  std::map<std::string, bool> is_param;  // trained by the optimizer (not a buffer or input)
  std::map<std::string, std::string> kv;
};

template <typename T>
T read(std::ifstream &f) {
  T v;
  if (!f.read(reinterpret_cast<char *>(&v), sizeof v)) throw std::runtime_error("cpp.bin: truncated");
  return v;
}

// Records: u32 name length, name, u8 kind (0 input/buffer, 1 parameter), u32 ndim, i64
// dims, float32 data (little-endian, as Go wrote it on the same machine).
Bundle load(const std::string &dir) {
  Bundle b;
  std::ifstream f(dir + "/cpp.bin", std::ios::binary);
  if (!f) throw std::runtime_error(dir + "/cpp.bin: cannot open");
  while (f.peek() != EOF) {
    uint32_t n = read<uint32_t>(f);
    std::string name(n, '\0');
    f.read(&name[0], n);
    uint8_t kind = read<uint8_t>(f);
    uint32_t nd = read<uint32_t>(f);
    std::vector<int64_t> dims(nd);
    for (auto &d : dims) d = read<int64_t>(f);
    at::Tensor t = at::empty(dims, at::kFloat);
    f.read(reinterpret_cast<char *>(t.data_ptr<float>()), t.numel() * sizeof(float));
    if (!f) throw std::runtime_error("cpp.bin: truncated at " + name);
    b.t[name] = t;
    b.is_param[name] = kind == 1;
  }
  std::ifstream kv(dir + "/cpp.txt");
  if (!kv) throw std::runtime_error(dir + "/cpp.txt: cannot open");
  std::string k, v;
  while (kv >> k >> v) b.kv[k] = v;
  return b;
}

at::Tensor unwrap(TxErr err, TxTensor out) {
  if (err != nullptr) {
    std::string msg(err);
    std::free(err);
    throw std::runtime_error(msg);
  }
  at::Tensor t = *static_cast<at::Tensor *>(out);
  delete static_cast<at::Tensor *>(out);
  return t;
}

void check(TxErr err) {
  if (err != nullptr) {
    std::string msg(err);
    std::free(err);
    throw std::runtime_error(msg);
  }
}

// With SLI2VOL_BENCH_OPS=time, the "ops_time" JSON of sli2vol-bench's Result: per operator,
// dispatches and host time (µs) per step over `steps` more steps, from libtorchx's counter.
std::string profile_steps(const std::function<double()> &step, int steps) {
  check(tx_opcount_start(1));
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; i++) step();
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  char *raw = nullptr;
  check(tx_opcount_stop(&raw));
  std::string text(raw);
  std::free(raw);
  std::ostringstream js;
  js.precision(10);
  js << ",\"profiled_steps\":" << steps << ",\"profiled_step_ms\":" << ms / steps << ",\"ops_time\":{";
  std::istringstream lines(text);
  std::string line;
  bool first = true;
  while (std::getline(lines, line)) {
    // "name count caller_ns other_ns", the name possibly with spaces
    size_t c = line.rfind(' '), b = line.rfind(' ', c - 1), a = line.rfind(' ', b - 1);
    if (a == std::string::npos) continue;
    std::string name = line.substr(0, a);
    for (size_t i = 0; i < name.size(); i++) {
      if (name[i] == '"' || name[i] == '\\') name.insert(i++, 1, '\\');
    }
    double n = std::stod(line.substr(a + 1, b - a - 1)), caller = std::stod(line.substr(b + 1, c - b - 1)),
           other = std::stod(line.substr(c + 1));
    js << (first ? "" : ",") << '"' << name << "\":{\"count\":" << n / steps << ",\"caller_us\":" << caller / 1e3 / steps
       << ",\"other_us\":" << other / 1e3 / steps << '}';
    first = false;
  }
  js << '}';
  return js.str();
}

// The trainer's optimizer (torchx's, over libtorch's AdamW state): on CUDA its multi-tensor
// update and zero-grad, as Go runs them, so the two sides differ only in the binding.
struct Optim {
  TxOptim o = nullptr;
  Optim(std::vector<at::Tensor> &params, double lr, double weight_decay) {
    std::vector<TxTensor> hs;
    for (auto &p : params) hs.push_back(&p);
    check(tx_optim_new(TX_ADAMW, hs.data(), static_cast<int>(hs.size()), lr, 0.9, 0.999, 1e-8,
                       weight_decay, 0, 0, 0, &o));
  }
  ~Optim() { tx_optim_free(o); }
  void zero_grad() { check(tx_optim_zero_grad(o)); }
  void step() { check(tx_optim_step(o)); }
};

at::Tensor correlation(at::Tensor q, at::Tensor k, int64_t r) {
  TxTensor out = nullptr;
  TxErr err = tx_correlation(&q, &k, r, &out);  // before unwrap reads out
  return unwrap(err, out);
}

at::Tensor aggregate(at::Tensor a, at::Tensor m, int64_t r) {
  TxTensor out = nullptr;
  TxErr err = tx_aggregate(&a, &m, r, &out);
  return unwrap(err, out);
}

struct Net {
  std::map<std::string, at::Tensor> &p;
  std::string mode;
  int64_t radius, reach;
  double bn_momentum, bn_eps;

  bool has(const std::string &n) const { return p.count(n) > 0; }

  at::Tensor bn(const at::Tensor &x, const std::string &n) {
    return at::batch_norm(x, p[n + ".weight"], p[n + ".bias"], p[n + ".running_mean"],
                          p[n + ".running_var"], /*training=*/true, bn_momentum, bn_eps,
                          /*cudnn_enabled=*/true);
  }

  at::Tensor conv(const at::Tensor &x, const std::string &n, int64_t pad) {
    at::Tensor bias = has(n + ".bias") ? p[n + ".bias"] : at::Tensor();
    return at::conv2d(x, p[n + ".weight"], bias, 1, pad);
  }

  // The fixed second-difference (GEIG) or first-difference (edge profile) filter, with
  // replicate padding, then a softmax across its channels; GEIG appends the intensity.
  at::Tensor input(const at::Tensor &x) {
    at::Tensor padded = at::replication_pad2d(x, {reach, reach, reach, reach});
    at::Tensor s = at::softmax(at::conv2d(padded, p["input.kernel"]), 1);
    return mode == "sli2vol+" ? at::cat({s, x}, 1) : s;
  }

  at::Tensor block(const at::Tensor &x, const std::string &n) {
    at::Tensor h = at::relu(bn(conv(x, n + ".conv1", 1), n + ".bn1"));
    h = bn(conv(h, n + ".conv2", 1), n + ".bn2");
    at::Tensor shortcut = x;
    if (has(n + ".downsample.0.weight")) shortcut = bn(conv(x, n + ".downsample.0", 0), n + ".downsample.1");
    return at::relu(h + shortcut);
  }

  at::Tensor encoder(const at::Tensor &x) {
    at::Tensor h = at::relu(bn(conv(x, "encoder.conv1", 3), "encoder.bn1"));
    for (int s = 1; has("encoder.layer" + std::to_string(s) + ".0.conv1.weight"); s++) {
      for (int j = 0; has("encoder.layer" + std::to_string(s) + "." + std::to_string(j) + ".conv1.weight"); j++) {
        h = block(h, "encoder.layer" + std::to_string(s) + "." + std::to_string(j));
      }
    }
    return conv(h, "encoder.conv_out", 1);
  }

  // One shared encoder over [s_j, s_j1, pl_j, pl_j1] (slices only in mode sli2vol); key and
  // query are the slice and PL features concatenated; the affinity carries s_j to j+1.
  at::Tensor reconstruct(const at::Tensor &sj, const at::Tensor &sj1, const at::Tensor &plj,
                         const at::Tensor &plj1) {
    const int64_t b = sj.size(0);
    at::Tensor key, query;
    if (mode == "sli2vol+") {
      at::Tensor f = encoder(input(at::cat({sj, sj1, plj, plj1}, 0)));
      at::Tensor fs = f.narrow(0, 0, 2 * b), fp = f.narrow(0, 2 * b, 2 * b);
      key = at::cat({fs.narrow(0, 0, b), fp.narrow(0, 0, b)}, 1);
      query = at::cat({fs.narrow(0, b, b), fp.narrow(0, b, b)}, 1);
    } else {
      at::Tensor f = encoder(input(at::cat({sj, sj1}, 0)));
      key = f.narrow(0, 0, b);
      query = f.narrow(0, b, b);
    }
    return aggregate(at::softmax(correlation(query, key, radius), 1), sj, radius);
  }
};

double peak_rss_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  }
  return 0;
}

int run(int argc, char **argv) {
  if (argc != 5) {
    std::cerr << "usage: cfn_step DIR DEVICE STEPS THREADS\n";
    return 2;
  }
  const std::string dir = argv[1];
  const torch::Device device(argv[2]);
  const int steps = std::stoi(argv[3]);
  at::set_num_threads(std::stoi(argv[4]));
  // The host allocator policy the Go program's torchx sets when it loads, so that the two
  // processes differ in the binding only.
  tx_host_alloc_policy(TX_HOST_MMAP_THRESHOLD, TX_HOST_TRIM_THRESHOLD);
  Bundle b = load(dir);
  for (auto &kv : b.t) {
    kv.second = kv.second.to(device);
    if (b.is_param[kv.first]) kv.second.requires_grad_(true);
  }
  std::vector<at::Tensor> params;
  for (auto &kv : b.t) {
    if (b.is_param[kv.first]) params.push_back(kv.second);
  }
  Net net{b.t, b.kv.at("mode"), std::stoll(b.kv.at("radius")), std::stoll(b.kv.at("reach")),
          std::stod(b.kv.at("bn_momentum")), std::stod(b.kv.at("bn_eps"))};
  const double scale = std::stod(b.kv.at("intensity_scale"));
  Optim opt(params, std::stod(b.kv.at("lr")), std::stod(b.kv.at("weight_decay")));
  at::Tensor sj = b.t.at("batch.s_j") * scale, sj1 = b.t.at("batch.s_j1") * scale;
  at::Tensor plj = b.t.at("batch.pl_j") * scale, plj1 = b.t.at("batch.pl_j1") * scale;
  const bool l1 = b.kv.at("loss") == "l1";
  auto step = [&]() {
    opt.zero_grad();
    at::Tensor recon = net.reconstruct(sj, sj1, plj, plj1);
    at::Tensor loss = l1 ? at::l1_loss(recon, sj1) : at::smooth_l1_loss(recon, sj1, at::Reduction::Mean, 1.0);
    loss.backward();
    double v = loss.item<double>();
    opt.step();
    return v;
  };
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  double first = step();
  std::ostringstream out;
  out.precision(17);
  if (steps < 0) {
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    out << "{\"first_loss\":" << first << ",\"samples_per_s\":" << sj.size(0) / dt << ",\"peak_rss_mib\":" << peak_rss_mib()
        << ",\"steps\":1}";
  } else {
    t0 = clock::now();
    for (int i = 0; i < steps; i++) step();
    double dt = std::chrono::duration<double>(clock::now() - t0).count();
    out << "{\"first_loss\":" << first;
    if (steps > 0) out << ",\"samples_per_s\":" << steps * sj.size(0) / dt;
    out << ",\"peak_rss_mib\":" << peak_rss_mib() << ",\"steps\":" << steps;
    const char *ops = std::getenv("SLI2VOL_BENCH_OPS");
    if (ops != nullptr && std::string(ops) == "time") out << profile_steps(step, 10);
    out << "}";
  }
  std::cout << out.str() << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const c10::Error &e) {
    std::cerr << "cfn_step: " << e.what_without_backtrace() << "\n";
  } catch (const std::exception &e) {
    std::cerr << "cfn_step: " << e.what() << "\n";
  }
  return 1;
}
