// Counting the ATen operators a piece of work dispatches (every RecordFunction event, nested
// ones included), to compare what two implementations of one step ask libtorch to do. The
// PyTorch profiler sees the same events, so the counts of a Python reference line up.
//
// Timed, it also sums the host time of the outermost events on each thread: on the thread
// that started the count, that is the time the caller spent inside libtorch (waits for the
// GPU included); what is left of a step's wall time went to the caller's own code (Go and
// cgo, or C++) and to calls without events (autograd's backward, which runs its nodes on
// other threads on a GPU, and reports them there).
#include <ATen/record_function.h>

#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include "common.h"

namespace {

struct Stat {
  int64_t count = 0;
  int64_t caller_ns = 0;  // outermost events on the starting thread
  int64_t other_ns = 0;   // outermost events on any other thread
};

std::mutex g_mu;
std::map<std::string, Stat> g_stats;
at::CallbackHandle g_handle = 0;
std::thread::id g_caller;
thread_local int t_depth = 0;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Started : at::ObserverContext {
  int64_t t0;
  bool outermost;
  Started(int64_t t, bool o) : t0(t), outermost(o) {}
};

std::unique_ptr<at::ObserverContext> count_op(const at::RecordFunction &fn) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_stats[fn.name()].count++;
  return nullptr;
}

std::unique_ptr<at::ObserverContext> time_op_start(const at::RecordFunction &fn) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_stats[fn.name()].count++;
  }
  bool outermost = t_depth++ == 0;
  return std::make_unique<Started>(now_ns(), outermost);
}

void time_op_end(const at::RecordFunction &fn, at::ObserverContext *ctx) {
  t_depth--;
  auto *s = static_cast<Started *>(ctx);
  if (s == nullptr || !s->outermost) return;
  int64_t dt = now_ns() - s->t0;
  std::lock_guard<std::mutex> lock(g_mu);
  Stat &st = g_stats[fn.name()];
  (std::this_thread::get_id() == g_caller ? st.caller_ns : st.other_ns) += dt;
}

}  // namespace

extern "C" {

TxErr tx_opcount_start(int timed) {
  TX_TRY
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_handle != 0) throw std::runtime_error("op counting is already on");
  g_stats.clear();
  g_caller = std::this_thread::get_id();
  auto cb = timed ? at::RecordFunctionCallback(time_op_start, time_op_end) : at::RecordFunctionCallback(count_op);
  g_handle = at::addGlobalCallback(cb.needsInputs(false));
  TX_CATCH
}

// The counts as "name count caller_ns other_ns" lines; the caller frees the string.
TxErr tx_opcount_stop(char **out) {
  TX_TRY
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_handle == 0) throw std::runtime_error("op counting is not on");
  at::removeCallback(g_handle);
  g_handle = 0;
  std::ostringstream s;
  for (const auto &kv : g_stats)
    s << kv.first << ' ' << kv.second.count << ' ' << kv.second.caller_ns << ' ' << kv.second.other_ns << '\n';
  *out = strdup(s.str().c_str());
  if (*out == nullptr) throw std::bad_alloc();
  TX_CATCH
}

}  // extern "C"
