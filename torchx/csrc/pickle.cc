// State dicts as Python's torch.save/torch.load write and read them: a pickled
// Dict[str, Tensor] in libtorch's zip container (torch::pickle_save / pickle_load).
#include <torch/serialize.h>

#include "common.h"

using torchx::T;

extern "C" {

TxErr tx_pickle_save(const char **names, TxTensor *ts, int n, char **buf, int64_t *len) {
  TX_TRY
  c10::Dict<std::string, at::Tensor> dict;
  for (int i = 0; i < n; i++) {
    // Saved from CPU and contiguous: a checkpoint must load on a machine without a GPU.
    dict.insert(std::string(names[i]), T(ts[i]).detach().to(at::kCPU).contiguous());
  }
  std::vector<char> bytes = torch::pickle_save(c10::IValue(dict));
  *buf = static_cast<char *>(std::malloc(bytes.empty() ? 1 : bytes.size()));
  if (*buf == nullptr) throw std::bad_alloc();
  std::memcpy(*buf, bytes.data(), bytes.size());
  *len = static_cast<int64_t>(bytes.size());
  TX_CATCH
}

TxErr tx_pickle_load(const char *buf, int64_t len, char ***names, TxTensor **ts, int *n) {
  TX_TRY
  std::vector<char> bytes(buf, buf + len);
  c10::IValue v = torch::pickle_load(bytes);
  if (!v.isGenericDict()) {
    throw std::invalid_argument("torchx: state dict file does not hold a dict (it holds " +
                                v.tagKind() + ")");
  }
  auto dict = v.toGenericDict();
  int count = static_cast<int>(dict.size());
  char **nm = static_cast<char **>(std::calloc(count == 0 ? 1 : count, sizeof(char *)));
  TxTensor *tt = static_cast<TxTensor *>(std::calloc(count == 0 ? 1 : count, sizeof(TxTensor)));
  int i = 0;
  try {
    for (const auto &kv : dict) {
      if (!kv.key().isString()) throw std::invalid_argument("torchx: state dict key is not a string");
      if (!kv.value().isTensor()) {
        throw std::invalid_argument("torchx: state dict entry " + kv.key().toStringRef() +
                                    " is not a tensor");
      }
      nm[i] = torchx::dup_message(kv.key().toStringRef().c_str());
      tt[i] = torchx::wrap(kv.value().toTensor());
      i++;
    }
  } catch (...) {
    for (int j = 0; j < i; j++) {
      std::free(nm[j]);
      delete static_cast<at::Tensor *>(tt[j]);
    }
    std::free(nm);
    std::free(tt);
    throw;
  }
  *names = nm;
  *ts = tt;
  *n = count;
  TX_CATCH
}

}  // extern "C"
