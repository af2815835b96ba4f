#include "placement/placement.h"

namespace kindling {

Result<Worker*> Placement::Choose(const PlacementRequest& request) {
  Worker* best = nullptr;
  uint64_t best_free = 0;
  uint64_t need = uint64_t(request.memory_mb) << 20;
  for (Worker* w : workers_) {
    uint64_t capacity = w->options().memory_capacity_bytes;
    uint64_t reserved = w->Stats().memory_reserved_bytes;
    uint64_t free = capacity == 0 ? UINT64_MAX : (capacity > reserved ? capacity - reserved : 0);
    if (free >= need && (!best || free > best_free)) {
      best = w;
      best_free = free;
    }
  }
  if (!best) return Status::Error("no worker has " + std::to_string(request.memory_mb) + " MB free for a new sandbox");
  return best;
}

}  // namespace kindling
