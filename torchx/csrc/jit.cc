// TorchScript modules built from Go: parameters and buffers registered by name, methods
// defined from TorchScript source, saved in the format torch.jit.load reads (C++ and Python).
#include <torch/script.h>

#include "common.h"

extern "C" {

TxErr tx_jit_save(const char **names, TxTensor *ts, const int *is_param, int n, const char *source,
                  const char *path) {
  TX_TRY
  torch::jit::Module m("sli2vol");
  for (int i = 0; i < n; i++) {
    at::Tensor t = torchx::T(ts[i]).detach().to(at::kCPU).contiguous();
    if (is_param[i]) {
      m.register_parameter(names[i], t, /*is_buffer=*/false);
    } else {
      m.register_buffer(names[i], t);
    }
  }
  m.define(std::string(source));
  m.save(std::string(path));
  TX_CATCH
}

TxErr tx_jit_run(const char *path, TxTensor *inputs, int n, TxTensor *out) {
  TX_TRY
  torch::jit::Module m = torch::jit::load(std::string(path));
  m.eval();
  std::vector<torch::jit::IValue> args;
  for (int i = 0; i < n; i++) args.emplace_back(torchx::T(inputs[i]));
  *out = torchx::wrap(m.forward(args).toTensor());
  TX_CATCH
}

}  // extern "C"
