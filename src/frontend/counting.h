// Counting: admission control for invocations. Today: the account-wide concurrency limit (in-flight
// invocations); per-function reserved concurrency and scaling rates build on the same seam.
//
// Thread safety: not thread-safe; used from the control thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/api_error.h"

namespace kindling {

class Counting {
 public:
  explicit Counting(uint32_t account_limit) : account_limit_(account_limit) {}

  // Admits one invocation (call Release when it ends) or returns the 429 to send.
  std::optional<ApiError> Acquire(const std::string& function);
  void Release(const std::string& function);
  uint32_t in_flight() const { return in_flight_; }

 private:
  uint32_t account_limit_;
  uint32_t in_flight_ = 0;
};

}  // namespace kindling
