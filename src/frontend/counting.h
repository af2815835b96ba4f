// Counting: admission control for invocations, Lambda's concurrency model.
//   - Reserved concurrency: a function with a reservation runs at most that many invocations at
//     once (0 disables it), and that many are set aside for it alone.
//   - Everything else shares the unreserved pool: account limit minus all reservations. At least
//     kMinUnreserved must stay unreserved.
// Refusals are the 429s to send, with Lambda's Reason.
//
// Thread safety: not thread-safe; used from the control thread.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "common/api_error.h"

namespace kindling {

class Counting {
 public:
  static constexpr uint32_t kMinUnreserved = 100;

  explicit Counting(uint32_t account_limit) : account_limit_(account_limit) {}

  // Admits one invocation of `function` (call Release when it ends) or returns the 429 to send.
  std::optional<ApiError> Acquire(const std::string& function);
  void Release(const std::string& function);

  // Sets a function's reservation (checks the unreserved minimum) / removes it.
  std::optional<ApiError> SetReserved(const std::string& function, uint32_t reserved);
  void ClearReserved(const std::string& function);
  // -1 when the function has no reservation.
  int64_t Reserved(const std::string& function) const;

  uint32_t account_limit() const { return account_limit_; }
  uint32_t unreserved_limit() const { return account_limit_ - total_reserved_; }
  uint32_t in_flight() const { return in_flight_total_; }

 private:
  uint32_t account_limit_;
  uint32_t total_reserved_ = 0;
  uint32_t in_flight_total_ = 0;
  uint32_t in_flight_unreserved_ = 0;
  std::map<std::string, uint32_t> reserved_;
  std::map<std::string, uint32_t> in_flight_reserved_;  // functions with a reservation only
};

}  // namespace kindling
