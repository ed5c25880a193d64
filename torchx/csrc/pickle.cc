// Reading state dicts that Python's torch.save (or our Go writer, torchsave.go) wrote:
// torch::pickle_load understands the zip container and the pickled tensors. Writing is done in
// Go, because pickle_save type-tags the dict and PyTorch >= 2.6 refuses such files by default.
#include <torch/serialize.h>

#include "common.h"

using torchx::T;

extern "C" {

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
