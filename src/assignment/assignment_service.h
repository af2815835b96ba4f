// AssignmentService: tracks the sandboxes of every function version (one pool per configuration
// revision) and decides warm or cold: an idle sandbox is leased when one exists, otherwise
// Placement picks a worker that starts a new one (idle sandboxes of any function are evicted, least
// recently used first, when no worker has room). Sandboxes return to the pool frozen; pools of
// outdated revisions are drained; idle sandboxes past the idle timeout are destroyed.
//
// Thread safety: every method runs on the io_context thread.
#pragma once

#include "common/asio.h"
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <vector>

#include "common/function.h"
#include "common/metrics.h"
#include "common/status.h"
#include "placement/placement.h"
#include "worker/invoke.h"
#include "worker/sandbox_session.h"

namespace kindling {

struct AssignmentOptions {
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
  // Scaling rate: each function may start at most scaling_limit new sandboxes per scaling_window
  // (Lambda: 1000 per 10 s), refilled continuously. Beyond it a cold start is throttled.
  uint32_t scaling_limit = 1000;
  std::chrono::milliseconds scaling_window{std::chrono::seconds(10)};
};

// The Status code of a cold start refused by the scaling rate (the frontend answers 429).
constexpr const char* kScalingThrottled = "FunctionInvocationRateLimitExceeded";

class AssignmentService {
 public:
  AssignmentService(boost::asio::io_context& io, Placement& placement, AssignmentOptions options);

  // Runs one invocation of fn on a warm or new sandbox. A service failure (no capacity, sandbox
  // creation failed) is an error Status; everything the function does is an InvokeResult.
  boost::asio::awaitable<Result<InvokeResult>> Invoke(const FunctionConfig& fn, InvokeRequest request);

  // Drains every pool of `function` whose revision differs from keep_revision ("" = all): idle
  // sandboxes are destroyed now, busy ones when their invocation ends. With a keep_revision only
  // $LATEST pools are drained: published versions are immutable, an update of $LATEST leaves them.
  void Retire(const std::string& function, const std::string& keep_revision);
  // Drains the pools of one published version of `function` (DeleteFunction with a Qualifier).
  void RetireVersion(const std::string& function, const std::string& version);
  // Starts the periodic idle reaper.
  void Start();
  // Destroys every sandbox.
  void Shutdown();
  // Publishes sandbox counts by state as gauges.
  void ExportGauges(Metrics& metrics);

  // Provisioned concurrency: keeps `requested` initialized sandboxes of the version a qualifier
  // (version number or alias) resolves to, started ahead of demand and exempt from idle reaping
  // and eviction. The resolver maps (function, qualifier) to that version, or nullopt once it is
  // gone; it is consulted on every maintenance tick, so alias changes are followed.
  using ProvisionResolver =
      std::function<std::optional<FunctionConfig>(const std::string& function, const std::string& qualifier)>;
  void SetProvisionResolver(ProvisionResolver resolver) { resolver_ = std::move(resolver); }
  void SetProvisioned(const std::string& function, const std::string& qualifier, int requested);
  // Removes one configuration, or every one of the function when qualifier is "".
  void ClearProvisioned(const std::string& function, const std::string& qualifier);
  struct ProvisionedStatus {
    int requested = 0;
    int allocated = 0;  // sandboxes started for it (initializing or ready)
    int available = 0;  // initialized and ready for invocations
    std::string status;  // IN_PROGRESS | READY | FAILED
    std::string reason;
  };
  std::optional<ProvisionedStatus> GetProvisioned(const std::string& function, const std::string& qualifier);

 private:
  struct Idle {
    std::shared_ptr<SandboxSession> session;
    std::chrono::steady_clock::time_point since;
  };
  struct Pool {
    std::string function;
    std::string revision;
    std::vector<Idle> idle;  // most recently used last: leased first (warmest caches)
    std::vector<std::shared_ptr<SandboxSession>> busy;
    bool retired = false;
    std::string version = "$LATEST";
    int provisioned = 0;  // sandboxes kept ready for provisioned concurrency
    int starting = 0;     // sandboxes being created or (provisioned) initializing
    int Live() const { return static_cast<int>(idle.size() + busy.size()) + starting; }
  };
  struct Provision {
    int requested = 0;
    std::string pool_key;  // the pool of the version it resolved to at the last tick
    std::string status = "IN_PROGRESS";
    std::string reason;
  };
  Pool& PoolFor(const FunctionConfig& fn);
  // Recomputes pool targets from the configurations and starts what is missing.
  void ReconcileProvisioned();
  boost::asio::awaitable<void> StartProvisioned(FunctionConfig fn, std::string pool_key);
  // A new sandbox for fn from the worker Placement picks; evicts idle sandboxes to make room.
  boost::asio::awaitable<Result<std::shared_ptr<SandboxSession>>> StartSandbox(
      FunctionConfig fn, std::string initialization_type = "on-demand");
  // Takes one token of fn's scaling budget; false when it is spent.
  bool TakeScalingToken(const std::string& function);
  // Destroys the idle sandbox unused for longest; false when none is idle.
  bool EvictLeastRecentlyUsed();
  void Release(Pool& pool, const std::shared_ptr<SandboxSession>& session);
  void ReapIdle();
  boost::asio::awaitable<void> ReaperLoop();

  boost::asio::io_context& io_;
  Placement& placement_;
  AssignmentOptions options_;
  boost::asio::steady_timer reaper_;
  bool stopped_ = false;
  struct ScalingBucket {
    double tokens;
    std::chrono::steady_clock::time_point refilled;
  };
  std::map<std::string, ScalingBucket> scaling_;
  // Keyed by function + "\n" + version + "\n" + revision. Pools are never erased while busy.
  std::map<std::string, std::unique_ptr<Pool>> pools_;
  std::map<std::pair<std::string, std::string>, Provision> provisioned_;  // (function, qualifier)
  ProvisionResolver resolver_;
};

}  // namespace kindling
