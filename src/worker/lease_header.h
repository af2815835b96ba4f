// The x-kindling-lease header: a SandboxLease's token and sequence as "TOKEN:SEQUENCE", both
// unsigned decimal (the sandbox and worker are named by the request's path and host).
#pragma once

#include <charconv>
#include <string>
#include <string_view>

#include "worker/worker_client.h"

namespace kindling {

inline std::string FormatLeaseHeader(const SandboxLease& lease) {
  return std::to_string(lease.token) + ":" + std::to_string(lease.sequence);
}

// False (lease untouched) unless text is exactly two decimal numbers that fit 64 bits.
inline bool ParseLeaseHeader(std::string_view text, SandboxLease* lease) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  auto parse = [](std::string_view s, uint64_t* out) {
    if (s.empty() || s.size() > 20) return false;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
    return ec == std::errc() && end == s.data() + s.size();
  };
  uint64_t token, sequence;
  if (!parse(text.substr(0, colon), &token) || !parse(text.substr(colon + 1), &sequence)) return false;
  lease->token = token;
  lease->sequence = sequence;
  return true;
}

}  // namespace kindling
