// Lease messages between assignment, frontend and worker (plain structs, no dependencies), and the
// x-kindling-lease header that carries a lease's token and sequence over RPC: "TOKEN:SEQUENCE", both
// unsigned decimal (the sandbox and worker are named by the request's path and host).
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace kindling {

// A sandbox a worker started for the assignment service. The token is the sandbox's secret: only
// the assignment service that created it (and its successors, which read it from the journal)
// knows it, so only leases it issued are honoured.
struct NewSandbox {
  std::string id;
  uint64_t token = 0;
};

// The right to run one invocation on one sandbox. Leases of a sandbox carry increasing sequence
// numbers; a worker refuses a lease whose sequence is not above the last one it served (a replay,
// or a lease from a deposed assignment leader), and one whose token is not the sandbox's.
struct SandboxLease {
  std::string worker;     // worker id (WorkerDirectory)
  std::string sandbox;    // sandbox id on that worker
  uint64_t token = 0;
  uint64_t sequence = 0;
  bool cold = false;      // the sandbox was started for this lease
};

// A token or sequence as sent between nodes: unsigned decimal that fits 64 bits, nothing else
// (no sign, no space, at most 20 digits). False (out untouched) otherwise.
inline bool ParseDecimalU64(std::string_view s, uint64_t* out) {
  uint64_t v = 0;
  if (s.empty() || s.size() > 20) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return false;
  *out = v;
  return true;
}

inline std::string FormatLeaseHeader(const SandboxLease& lease) {
  return std::to_string(lease.token) + ":" + std::to_string(lease.sequence);
}

// False (lease untouched) unless text is exactly two decimal numbers that fit 64 bits.
inline bool ParseLeaseHeader(std::string_view text, SandboxLease* lease) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) return false;
  uint64_t token, sequence;
  if (!ParseDecimalU64(text.substr(0, colon), &token) || !ParseDecimalU64(text.substr(colon + 1), &sequence))
    return false;
  lease->token = token;
  lease->sequence = sequence;
  return true;
}

}  // namespace kindling
