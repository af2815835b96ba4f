// Placement: chooses the worker a new sandbox goes to. Today: the worker with the most free memory
// among those registered (one, in embedded mode); the seam where fleet-wide packing goes.
//
// Thread safety: not thread-safe; used from the control thread.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "worker/worker.h"

namespace kindling {

struct PlacementRequest {
  std::string function;
  int memory_mb = 128;
};

class Placement {
 public:
  void AddWorker(Worker* worker) { workers_.push_back(worker); }
  // The worker with the most unreserved memory that fits the request; an error when none fits.
  Result<Worker*> Choose(const PlacementRequest& request);

 private:
  std::vector<Worker*> workers_;
};

}  // namespace kindling
