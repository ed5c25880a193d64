// Shared plumbing for the torchx C shim: every entry point runs its body inside TX_TRY so
// that no C++ exception unwinds into Go (that would abort the process).
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "torchx.h"

namespace torchx {

inline char *dup_message(const char *msg) {
  size_t n = std::strlen(msg);
  char *out = static_cast<char *>(std::malloc(n + 1));
  if (out != nullptr) std::memcpy(out, msg, n + 1);
  return out;
}

inline at::Tensor &T(TxTensor t) {
  if (t == nullptr) throw std::invalid_argument("torchx: nil tensor handle");
  return *static_cast<at::Tensor *>(t);
}

// Optional tensor argument: NULL means "absent" (an undefined tensor in ATen).
inline at::Tensor opt(TxTensor t) {
  return t == nullptr ? at::Tensor() : *static_cast<at::Tensor *>(t);
}

inline TxTensor wrap(at::Tensor t) { return new at::Tensor(std::move(t)); }

inline at::IntArrayRef ints(const int64_t *p, int n) { return at::IntArrayRef(p, n); }

inline std::vector<at::Tensor> list(TxTensor *ts, int n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (int i = 0; i < n; i++) v.push_back(T(ts[i]));
  return v;
}

}  // namespace torchx

// c10::Error's what() carries a C++ backtrace; Go users get the message without it.
#define TX_TRY try {
#define TX_CATCH                                                  \
  return nullptr;                                                 \
  }                                                               \
  catch (const c10::Error &e) {                                   \
    return torchx::dup_message(e.what_without_backtrace());       \
  }                                                               \
  catch (const std::exception &e) {                               \
    return torchx::dup_message(e.what());                         \
  }                                                               \
  catch (...) {                                                   \
    return torchx::dup_message("torchx: unknown C++ exception");  \
  }
