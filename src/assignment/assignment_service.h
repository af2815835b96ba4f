// AssignmentService: knows every sandbox of every function version (one pool per configuration
// revision) and decides warm or cold. Acquire leases an idle sandbox when one exists, otherwise
// Placement picks a worker that starts a new one (idle sandboxes of any function are evicted,
// least recently used first, when no worker has room). The caller runs the invocation on the
// lease's worker itself and gives the lease back with Release: payloads never pass through here.
// Pools of outdated revisions are drained; idle sandboxes past the idle timeout are destroyed.
//
// It holds records (worker, sandbox id, token), never sessions: workers own their sandboxes and
// report the ones that end (WorkerClient::OnSandboxGone). Time comes from options.now, and
// maintenance (reaping, provisioned top-up) runs on Tick(), driven by Start()'s timer or a test.
//
// Thread safety: every method runs on the io_context thread.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/asio.h"
#include "common/function.h"
#include "common/status.h"
#include "placement/placement.h"
#include "worker/worker_client.h"

namespace kindling {

struct AssignmentOptions {
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
  // Scaling rate: each function may start at most scaling_limit new sandboxes per scaling_window
  // (Lambda: 1000 per 10 s), refilled continuously. Beyond it a cold start is Throttled.
  uint32_t scaling_limit = 1000;
  std::chrono::milliseconds scaling_window{std::chrono::seconds(10)};
  // The clock (tests inject their own).
  std::function<std::chrono::steady_clock::time_point()> now = [] { return std::chrono::steady_clock::now(); };
};

// What the frontend needs of an assignment service: leases. Local (AssignmentService) or, in
// cluster mode, the leader of the function's partition over RPC.
class Assigner {
 public:
  virtual ~Assigner() = default;
  // A lease on a warm sandbox of fn, or on a new one. Errors: Throttled (scaling rate),
  // FunctionError (the function cannot start: its Lambda type and message), others (no capacity,
  // creation failed) are the platform's.
  virtual boost::asio::awaitable<Result<SandboxLease>> Acquire(const FunctionConfig& fn) = 0;
  // Gives a lease back once its invocation is over. sandbox_alive: false when the sandbox ended
  // (InvokeResult::sandbox_gone) or never took the event (it is then destroyed). Unknown or stale
  // leases are ignored.
  virtual void Release(const SandboxLease& lease, bool sandbox_alive) = 0;
};

// The durable record of the sandboxes an assignment service owns (cluster mode: its partition's
// journal in etcd). The service records a sandbox's creation before it leases it for the first
// time, and its end before it asks the worker to destroy it; busy/idle flips are not recorded.
class SandboxJournal {
 public:
  virtual ~SandboxJournal() = default;
  // Conflict when this service may no longer write (it lost its partition); other errors when the
  // journal cannot be reached. Either way the new sandbox is destroyed and not leased.
  virtual boost::asio::awaitable<Status> Created(const FunctionConfig& fn, const std::string& worker,
                                                 const std::string& sandbox, uint64_t token) = 0;
  virtual boost::asio::awaitable<void> Ended(const std::string& worker, const std::string& sandbox) = 0;
};

class AssignmentService : public Assigner {
 public:
  AssignmentService(boost::asio::io_context& io, WorkerDirectory& workers, AssignmentOptions options);
  // Journals lifecycle changes (not owned; null: embedded mode, no journal).
  void SetJournal(SandboxJournal* journal) { journal_ = journal; }
  // Takes over a sandbox a previous owner journaled (failover): idle, or leased by an invocation
  // that is still running, whose holder gives it back with `last_sequence`. New leases continue
  // after last_sequence, so the worker accepts them.
  void Adopt(const FunctionConfig& fn, const std::string& worker, const std::string& sandbox, uint64_t token,
             uint64_t last_sequence, bool busy);
  // Drops every record without touching the sandboxes (another service owns them now, e.g. after
  // this node lost its partition); the service stays usable.
  void Forget();

  boost::asio::awaitable<Result<SandboxLease>> Acquire(const FunctionConfig& fn) override;
  void Release(const SandboxLease& lease, bool sandbox_alive) override;
  // A worker reports that a sandbox ended: an idle one leaves its pool, a leased one is dropped
  // when released. Subscribe every worker: worker->OnSandboxGone(... SandboxGone(worker id, id)).
  void SandboxGone(const std::string& worker, const std::string& sandbox);
  // A worker left the fleet (dead or removed): every sandbox on it is forgotten.
  void WorkerGone(const std::string& worker);

  // Drains every pool of `function` whose revision differs from keep_revision ("" = all): idle
  // sandboxes are destroyed now, leased ones when released. With a keep_revision only $LATEST
  // pools are drained: published versions are immutable, an update of $LATEST leaves them.
  void Retire(const std::string& function, const std::string& keep_revision);
  // Drains the pools of one published version of `function` (DeleteFunction with a Qualifier).
  void RetireVersion(const std::string& function, const std::string& version);
  // Starts the periodic maintenance timer (Tick at least once a second).
  void Start();
  // One maintenance pass: destroys idle sandboxes past the idle timeout, tops up provisioned
  // concurrency.
  void Tick();
  // Destroys every sandbox it knows; later Acquires fail.
  void Shutdown();

  // Counts for tests and gauges.
  struct Counts {
    int idle = 0;
    int leased = 0;
    int starting = 0;
  };
  Counts CountsFor(const std::string& function) const;

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
  using Clock = std::chrono::steady_clock;
  // One sandbox the service knows of.
  struct Sandbox {
    std::string worker;
    std::string id;
    uint64_t token = 0;
    uint64_t sequence = 0;     // of the last lease issued
    bool initialized = false;  // its runtime finished init (served an invocation, or was readied)
    bool gone = false;         // its worker reported it ended while leased
    Clock::time_point idle_since{};
  };
  struct Pool {
    std::string function;
    std::string revision;
    std::string version = "$LATEST";
    std::vector<Sandbox> idle;              // most recently used last: leased first (warmest caches)
    std::map<std::string, Sandbox> leased;  // by worker + "/" + sandbox id
    bool retired = false;
    int provisioned = 0;  // sandboxes kept ready for provisioned concurrency
    int starting = 0;     // sandboxes being created or (provisioned) initializing
    int Live() const { return static_cast<int>(idle.size() + leased.size()) + starting; }
  };
  struct Provision {
    int requested = 0;
    std::string pool_key;  // the pool of the version it resolved to at the last tick
    std::string status = "IN_PROGRESS";
    std::string reason;
  };
  static std::string PoolKey(const FunctionConfig& fn) { return fn.name + "\n" + fn.version + "\n" + fn.revision_id; }
  static std::string SandboxKey(const std::string& worker, const std::string& id) { return worker + "/" + id; }
  Pool& PoolFor(const FunctionConfig& fn);
  // Recomputes pool targets from the configurations and starts what is missing.
  void ReconcileProvisioned();
  boost::asio::awaitable<void> StartProvisioned(FunctionConfig fn, std::string pool_key);
  // A new sandbox for fn on the worker Placement picks; evicts idle sandboxes to make room.
  boost::asio::awaitable<Result<Sandbox>> StartSandbox(FunctionConfig fn, std::string initialization_type);
  // Takes one token of fn's scaling budget; false when it is spent.
  bool TakeScalingToken(const std::string& function);
  // Destroys the idle sandbox unused for longest; false when none is idle.
  bool EvictLeastRecentlyUsed();
  // Journals the end (if journaling), then asks the worker to destroy the sandbox.
  void DestroyOnWorker(const Sandbox& sandbox);
  void ReapIdle();
  boost::asio::awaitable<void> MaintenanceLoop();

  boost::asio::io_context& io_;
  WorkerDirectory& workers_;
  Placement placement_;
  AssignmentOptions options_;
  boost::asio::steady_timer timer_;
  bool stopped_ = false;
  struct ScalingBucket {
    double tokens;
    Clock::time_point refilled;
  };
  std::map<std::string, ScalingBucket> scaling_;
  // Keyed by PoolKey. Pools are never erased while leased or starting (coroutines hold them).
  std::map<std::string, std::unique_ptr<Pool>> pools_;
  std::map<std::string, Pool*> leased_;  // SandboxKey of each leased sandbox -> its pool
  std::map<std::pair<std::string, std::string>, int> creating_;  // (function, worker) -> creations in flight
  std::map<std::pair<std::string, std::string>, Provision> provisioned_;  // (function, qualifier)
  ProvisionResolver resolver_;
  SandboxJournal* journal_ = nullptr;
};

}  // namespace kindling
