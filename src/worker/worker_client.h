// WorkerClient: a worker as the control plane sees it, in messages a process boundary can carry.
// The assignment service creates and destroys sandboxes through it and hands out SandboxLeases;
// the frontend sends each invocation's payload straight to the leased sandbox's worker. In
// embedded mode the Worker itself is the client; in cluster mode a client speaks RPC to a remote
// worker. WorkerDirectory maps worker ids to clients.
//
// Thread safety: every method runs on the io_context thread of the process holding the client.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/asio.h"
#include "common/function.h"
#include "common/status.h"
#include "worker/invoke.h"
#include "worker/lease.h"

namespace kindling {

struct WorkerStats {
  uint64_t sandboxes = 0;
  uint64_t memory_reserved_bytes = 0;   // of live sandboxes and those being created
  uint64_t memory_capacity_bytes = 0;   // what sandboxes may reserve in total (0 = unlimited)
  bool available = true;                // false: takes no new sandboxes (unreachable, draining)
};

// One sandbox as its worker reports it (what a new assignment leader reconciles against).
struct SandboxState {
  std::string id;
  std::string function;
  std::string version;
  bool busy = false;           // an invocation is running on it
  uint64_t last_sequence = 0;  // of the last lease it served
};

class WorkerClient {
 public:
  virtual ~WorkerClient() = default;
  virtual const std::string& id() const = 0;

  // Starts a sandbox for fn; its runtime initializes in the background (the first Invoke or
  // WaitReady waits for it). IsFunctionError() when it is the function's fault (no bootstrap,
  // unsupported runtime); other errors are the platform's.
  // initialization_type: AWS_LAMBDA_INITIALIZATION_TYPE ("on-demand", "provisioned-concurrency").
  virtual boost::asio::awaitable<Result<NewSandbox>> CreateSandbox(FunctionConfig fn,
                                                                  std::string initialization_type) = 0;
  // Waits (up to Lambda's 10 s init limit) until a new sandbox's runtime asks for its first event:
  // true when ready, false when it failed or died first.
  virtual boost::asio::awaitable<bool> WaitReady(std::string sandbox) = 0;
  // Runs one invocation on a leased sandbox. Everything the function does is an InvokeResult
  // (result.sandbox_gone says whether the sandbox survived it). An error Status means the event
  // never reached the function: NotFound (no such sandbox, e.g. it died while idle), Conflict
  // (a stale or forged lease, or the sandbox is busy); a remote client adds Unavailable.
  virtual boost::asio::awaitable<Result<InvokeResult>> Invoke(const SandboxLease& lease,
                                                             const InvokeRequest& request) = 0;
  // Kills a sandbox. Unknown ids are ignored.
  virtual void Destroy(const std::string& sandbox) = 0;
  virtual WorkerStats Stats() = 0;
  // The worker's live sandboxes, as of now (a remote client asks the worker).
  virtual boost::asio::awaitable<Result<std::vector<SandboxState>>> ListSandboxes() = 0;
  // Called with a sandbox's id whenever one ends (destroyed, crashed, timed out, killed while
  // idle). One listener; a later call replaces it.
  virtual void OnSandboxGone(std::function<void(const std::string& sandbox)> listener) = 0;
};

// The workers the control plane knows, by id. Not owning.
class WorkerDirectory {
 public:
  void Add(WorkerClient* worker) { workers_[worker->id()] = worker; }
  void Remove(const std::string& id) { workers_.erase(id); }
  WorkerClient* Find(const std::string& id) const {
    auto it = workers_.find(id);
    return it == workers_.end() ? nullptr : it->second;
  }
  std::vector<WorkerClient*> All() const {
    std::vector<WorkerClient*> out;
    for (const auto& [id, w] : workers_) out.push_back(w);
    return out;
  }

 private:
  std::map<std::string, WorkerClient*> workers_;
};

}  // namespace kindling
