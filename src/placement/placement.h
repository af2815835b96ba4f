// Placement: chooses the worker a new sandbox goes to, among the workers of a WorkerDirectory (one
// in embedded mode; the live fleet in cluster mode). A worker qualifies when the sandbox's memory
// fits what it has unreserved. Among those it prefers, in order: fewer sandboxes of the same
// function (a function's sandboxes spread over workers, so losing one loses few), then the most
// memory already reserved (new sandboxes pack onto busy workers, so idle ones can be drained and
// removed), then the worker id (deterministic).
//
// Thread safety: not thread-safe; used from the control thread.
#pragma once

#include <map>
#include <set>
#include <string>

#include "common/status.h"
#include "worker/worker_client.h"

namespace kindling {

struct PlacementRequest {
  std::string function;
  int memory_mb = 128;
  // Sandboxes of this function each worker holds now (worker id -> count; absent = 0).
  std::map<std::string, int> function_sandboxes;
  // Workers not to choose (e.g. one that just failed to answer).
  std::set<std::string> exclude;
};

class Placement {
 public:
  explicit Placement(const WorkerDirectory& workers) : workers_(workers) {}
  // Workers that take no new sandboxes (draining); they still serve the ones they have.
  void SetExcluded(std::map<std::string, bool> excluded) { excluded_ = std::move(excluded); }
  // The chosen worker; Unavailable when no worker has room (callers may evict idle sandboxes and ask
  // again, or refuse the invocation).
  Result<WorkerClient*> Choose(const PlacementRequest& request) const;

 private:
  const WorkerDirectory& workers_;
  std::map<std::string, bool> excluded_;
};

}  // namespace kindling
