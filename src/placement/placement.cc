#include "placement/placement.h"

#include <tuple>

namespace kindling {

Result<WorkerClient*> Placement::Choose(const PlacementRequest& request) const {
  WorkerClient* best = nullptr;
  std::tuple<int, uint64_t> best_key;  // (same-function sandboxes, -reserved): smaller is better
  uint64_t need = uint64_t(request.memory_mb) << 20;
  for (WorkerClient* w : workers_.All()) {
    if (auto ex = excluded_.find(w->id()); ex != excluded_.end() && ex->second) continue;
    if (request.exclude.count(w->id())) continue;
    WorkerStats st = w->Stats();
    if (!st.available) continue;
    bool fits = st.memory_capacity_bytes == 0 ||
                (st.memory_capacity_bytes > st.memory_reserved_bytes &&
                 st.memory_capacity_bytes - st.memory_reserved_bytes >= need);
    if (!fits) continue;
    auto same = request.function_sandboxes.find(w->id());
    std::tuple<int, uint64_t> key{same == request.function_sandboxes.end() ? 0 : same->second,
                                  UINT64_MAX - st.memory_reserved_bytes};
    if (!best || key < best_key) {  // ties keep the smaller id (All() is ordered by id)
      best = w;
      best_key = key;
    }
  }
  if (!best)
    return Status::Unavailable("no worker has " + std::to_string(request.memory_mb) + " MB free for a new sandbox");
  return best;
}

}  // namespace kindling
