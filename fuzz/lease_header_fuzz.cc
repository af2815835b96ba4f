// Fuzzes ParseLeaseHeader (src/worker/lease.h): the x-kindling-lease header a worker reads from
// any caller of its RPC. Properties: no crash; what parses formats back to itself.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "worker/lease.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  kindling::SandboxLease lease;
  if (!kindling::ParseLeaseHeader(text, &lease)) return 0;
  if (kindling::FormatLeaseHeader(lease).size() > size) abort();  // canonical form is never longer
  kindling::SandboxLease again;
  if (!kindling::ParseLeaseHeader(kindling::FormatLeaseHeader(lease), &again) || again.token != lease.token ||
      again.sequence != lease.sequence)
    abort();
  return 0;
}
