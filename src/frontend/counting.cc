#include "frontend/counting.h"

namespace kindling {

namespace {
ApiError Throttle(const char* reason) { return ApiError{429, "TooManyRequestsException", "Rate Exceeded.", reason}; }
}  // namespace

std::optional<ApiError> Counting::Acquire(const std::string& function) {
  auto it = reserved_.find(function);
  if (it != reserved_.end()) {
    uint32_t& n = in_flight_reserved_[function];
    if (n >= it->second) return Throttle("ReservedFunctionConcurrentInvocationLimitExceeded");
    ++n;
  } else {
    if (in_flight_unreserved_ >= unreserved_limit()) return Throttle("ConcurrentInvocationLimitExceeded");
    ++in_flight_unreserved_;
  }
  ++in_flight_total_;
  return std::nullopt;
}

void Counting::Release(const std::string& function) {
  auto it = in_flight_reserved_.find(function);
  if (it != in_flight_reserved_.end() && it->second > 0) {
    if (--it->second == 0 && !reserved_.count(function)) in_flight_reserved_.erase(it);
  } else if (in_flight_unreserved_ > 0) {
    --in_flight_unreserved_;
  }
  if (in_flight_total_ > 0) --in_flight_total_;
}

std::optional<ApiError> Counting::SetReserved(const std::string& function, uint32_t reserved) {
  uint64_t others = total_reserved_ - (reserved_.count(function) ? reserved_[function] : 0);
  if (others + reserved + kMinUnreserved > account_limit_)
    return ApiError::InvalidParameter(
        "Specified ReservedConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [" + std::to_string(kMinUnreserved) + "].");
  total_reserved_ = static_cast<uint32_t>(others + reserved);
  reserved_[function] = reserved;
  // Invocations admitted before the reservation keep counting where they were admitted.
  in_flight_reserved_.emplace(function, 0);
  return std::nullopt;
}

void Counting::ClearReserved(const std::string& function) {
  auto it = reserved_.find(function);
  if (it == reserved_.end()) return;
  total_reserved_ -= it->second;
  reserved_.erase(it);
}

int64_t Counting::Reserved(const std::string& function) const {
  auto it = reserved_.find(function);
  return it == reserved_.end() ? int64_t{-1} : int64_t{it->second};
}

}  // namespace kindling
