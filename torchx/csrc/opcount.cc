// Counting the ATen operators a piece of work dispatches (every RecordFunction event, nested
// ones included), to compare what two implementations of one step ask libtorch to do. The
// PyTorch profiler sees the same events, so the counts of a Python reference line up.
#include <ATen/record_function.h>

#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

#include "common.h"

namespace {

std::mutex g_mu;
std::map<std::string, int64_t> g_counts;
at::CallbackHandle g_handle = 0;

std::unique_ptr<at::ObserverContext> count_op(const at::RecordFunction &fn) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_counts[fn.name()]++;
  return nullptr;
}

}  // namespace

extern "C" {

TxErr tx_opcount_start(void) {
  TX_TRY
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_handle != 0) throw std::runtime_error("op counting is already on");
  g_counts.clear();
  g_handle = at::addGlobalCallback(at::RecordFunctionCallback(count_op).needsInputs(false));
  TX_CATCH
}

// The counts as "name count" lines; the caller frees the string.
TxErr tx_opcount_stop(char **out) {
  TX_TRY
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_handle == 0) throw std::runtime_error("op counting is not on");
  at::removeCallback(g_handle);
  g_handle = 0;
  std::ostringstream s;
  for (const auto &kv : g_counts) s << kv.first << ' ' << kv.second << '\n';
  *out = strdup(s.str().c_str());
  if (*out == nullptr) throw std::bad_alloc();
  TX_CATCH
}

}  // extern "C"
