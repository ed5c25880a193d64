// Build glue, not libtorch code: Debian's libtorch-dev ships c10d's reducer.hpp but not the
// distributed-autograd header it includes. reducer.hpp needs two names from it, and only as
// opaque types (a callback type and a shared pointer it never dereferences in our code), so
// they are declared here. The build puts this folder after every other include path
// (-idirafter): a libtorch that ships the real header (a PyTorch wheel) uses that one.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <memory>

namespace torch {
namespace distributed {
namespace autograd {

class DistAutogradContext {
 public:
  using GradCallback = std::function<bool(at::Tensor &)>;
};
using ContextPtr = std::shared_ptr<DistAutogradContext>;

}  // namespace autograd
}  // namespace distributed
}  // namespace torch
