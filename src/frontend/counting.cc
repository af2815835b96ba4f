#include "frontend/counting.h"

namespace kindling {

std::optional<ApiError> Counting::Acquire(const std::string& function) {
  if (in_flight_ >= account_limit_)
    return ApiError{429, "TooManyRequestsException", "Rate Exceeded.", "ConcurrentInvocationLimitExceeded"};
  ++in_flight_;
  return std::nullopt;
}

void Counting::Release(const std::string& function) {
  if (in_flight_ > 0) --in_flight_;
}

}  // namespace kindling
