#include "assignment/assignment_service.h"

#include <algorithm>
#include <set>

namespace kindling {

namespace asio = boost::asio;
using asio::awaitable;

AssignmentService::AssignmentService(asio::io_context& io, WorkerDirectory& workers, AssignmentOptions options)
    : io_(io), workers_(workers), placement_(workers), options_(std::move(options)), timer_(io) {}

bool AssignmentService::TakeScalingToken(const std::string& function) {
  auto now = options_.now();
  double limit = options_.scaling_limit;
  auto [it, fresh] = scaling_.try_emplace(function, ScalingBucket{limit, now});
  ScalingBucket& b = it->second;
  double window_s = std::chrono::duration<double>(options_.scaling_window).count();
  double elapsed_s = std::chrono::duration<double>(now - b.refilled).count();
  b.tokens = std::min(limit, b.tokens + (window_s > 0 ? elapsed_s * limit / window_s : limit));
  b.refilled = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

awaitable<Result<AssignmentService::Sandbox>> AssignmentService::StartSandbox(FunctionConfig fn,
                                                                             std::string initialization_type) {
  if (!TakeScalingToken(fn.name))
    co_return Status::Throttled("the function starts new sandboxes faster than its scaling rate");
  std::set<std::string> unreachable;  // workers that could not be asked: try the others
  for (;;) {
    PlacementRequest request{fn.name, fn.memory_mb, {}, unreachable};
    for (const auto& [key, pool] : pools_) {
      if (pool->function != fn.name) continue;
      for (const Sandbox& s : pool->idle) request.function_sandboxes[s.worker]++;
      for (const auto& [k, s] : pool->leased) request.function_sandboxes[s.worker]++;
    }
    for (const auto& [where, n] : creating_)
      if (where.first == fn.name) request.function_sandboxes[where.second] += n;
    auto worker = placement_.Choose(request);
    if (worker.ok()) {
      std::string worker_id = (*worker)->id();
      auto where = std::make_pair(fn.name, worker_id);
      ++creating_[where];
      auto created = co_await (*worker)->CreateSandbox(fn, initialization_type);
      if (--creating_[where] == 0) creating_.erase(where);
      if (!created.ok() && created.status().code() == StatusCode::kUnavailable) {
        unreachable.insert(worker_id);
        continue;
      }
      if (!created.ok()) co_return created.status();
      Sandbox sandbox{worker_id, created->id, created->token};
      if (journal_ && !stopped_) {
        Status journaled = co_await journal_->Created(fn, worker_id, created->id, created->token);
        if (!journaled.ok()) {
          if (WorkerClient* w = workers_.Find(worker_id)) w->Destroy(created->id);  // never journaled
          co_return journaled;
        }
      }
      if (stopped_) {
        DestroyOnWorker(sandbox);
        co_return Status::Unavailable("kindlingd is shutting down");
      }
      co_return sandbox;
    }
    // No room: idle sandboxes (of any function) give way, least recently used first.
    if (!EvictLeastRecentlyUsed()) co_return worker.status();
  }
}

AssignmentService::Pool& AssignmentService::PoolFor(const FunctionConfig& fn) {
  auto& slot = pools_[PoolKey(fn)];
  if (!slot) {
    slot = std::make_unique<Pool>();
    slot->function = fn.name;
    slot->revision = fn.revision_id;
    slot->version = fn.version;
  }
  return *slot;
}

void AssignmentService::DestroyOnWorker(const Sandbox& sandbox) {
  if (!journal_) {
    if (WorkerClient* w = workers_.Find(sandbox.worker)) w->Destroy(sandbox.id);
    return;
  }
  asio::co_spawn(io_, [this, worker = sandbox.worker, id = sandbox.id]() -> asio::awaitable<void> {
    SandboxJournal* journal = journal_;
    if (journal) co_await journal->Ended(worker, id);
    if (WorkerClient* w = workers_.Find(worker)) w->Destroy(id);
  }, asio::detached);
}

void AssignmentService::Adopt(const FunctionConfig& fn, const std::string& worker, const std::string& sandbox,
                              uint64_t token, uint64_t last_sequence, bool busy) {
  Pool& pool = PoolFor(fn);
  Sandbox s{worker, sandbox, token, last_sequence, true, false, options_.now()};
  std::string key = SandboxKey(worker, sandbox);
  if (busy) {
    pool.leased[key] = std::move(s);
    leased_[key] = &pool;
  } else {
    pool.idle.push_back(std::move(s));
  }
}

void AssignmentService::Forget() {
  leased_.clear();
  for (auto it = pools_.begin(); it != pools_.end();) {
    it->second->idle.clear();
    it->second->leased.clear();
    it = it->second->starting == 0 ? pools_.erase(it) : std::next(it);  // starting: held by coroutines
  }
}

bool AssignmentService::EvictLeastRecentlyUsed() {
  Pool* oldest_pool = nullptr;
  for (auto& [key, pool] : pools_)
    if (!pool->idle.empty() && pool->Live() > pool->provisioned &&
        (!oldest_pool || pool->idle.front().idle_since < oldest_pool->idle.front().idle_since))
      oldest_pool = pool.get();
  if (!oldest_pool) return false;
  DestroyOnWorker(oldest_pool->idle.front());
  oldest_pool->idle.erase(oldest_pool->idle.begin());
  return true;
}

awaitable<Result<SandboxLease>> AssignmentService::Acquire(const FunctionConfig& fn) {
  if (stopped_) co_return Status::Unavailable("kindlingd is shutting down");
  Pool* pool = &PoolFor(fn);
  Sandbox sandbox;
  bool cold = pool->idle.empty();
  if (!cold) {
    sandbox = std::move(pool->idle.back());
    pool->idle.pop_back();
  } else {
    ++pool->starting;  // keeps the pool alive while the sandbox is created
    auto created = co_await StartSandbox(fn, "on-demand");
    --pool->starting;
    if (!created.ok()) co_return created.status();
    sandbox = std::move(created).value();
  }
  SandboxLease lease{sandbox.worker, sandbox.id, sandbox.token, ++sandbox.sequence, cold};
  std::string key = SandboxKey(sandbox.worker, sandbox.id);
  pool->leased[key] = std::move(sandbox);
  leased_[key] = pool;
  co_return lease;
}

void AssignmentService::Release(const SandboxLease& lease, bool sandbox_alive) {
  std::string key = SandboxKey(lease.worker, lease.sandbox);
  auto it = leased_.find(key);
  if (it == leased_.end()) return;
  Pool& pool = *it->second;
  auto rec = pool.leased.find(key);
  if (rec == pool.leased.end() || rec->second.sequence != lease.sequence) return;  // stale
  Sandbox sandbox = std::move(rec->second);
  pool.leased.erase(rec);
  leased_.erase(it);
  if (!sandbox_alive || sandbox.gone || pool.retired || stopped_) {
    if (!sandbox.gone) DestroyOnWorker(sandbox);
    return;
  }
  sandbox.initialized = true;
  sandbox.idle_since = options_.now();
  pool.idle.push_back(std::move(sandbox));
}

void AssignmentService::SandboxGone(const std::string& worker, const std::string& sandbox) {
  std::string key = SandboxKey(worker, sandbox);
  if (auto it = leased_.find(key); it != leased_.end()) {
    auto rec = it->second->leased.find(key);
    if (rec != it->second->leased.end()) rec->second.gone = true;
    return;
  }
  for (auto& [k, pool] : pools_) {
    auto& idle = pool->idle;
    auto gone = std::find_if(idle.begin(), idle.end(),
                             [&](const Sandbox& s) { return s.worker == worker && s.id == sandbox; });
    if (gone != idle.end()) {
      idle.erase(gone);
      return;
    }
  }
}

void AssignmentService::WorkerGone(const std::string& worker) {
  for (auto& [k, pool] : pools_) {
    auto& idle = pool->idle;
    idle.erase(std::remove_if(idle.begin(), idle.end(), [&](const Sandbox& s) { return s.worker == worker; }),
               idle.end());
    for (auto& [key, leased] : pool->leased)
      if (leased.worker == worker) leased.gone = true;
  }
}

void AssignmentService::Retire(const std::string& function, const std::string& keep_revision) {
  for (auto& [key, pool] : pools_) {
    if (pool->function != function || pool->revision == keep_revision) continue;
    if (!keep_revision.empty() && pool->version != "$LATEST") continue;
    pool->retired = true;
    for (auto& idle : pool->idle) DestroyOnWorker(idle);
    pool->idle.clear();
  }
}

void AssignmentService::RetireVersion(const std::string& function, const std::string& version) {
  for (auto& [key, pool] : pools_) {
    if (pool->function != function || pool->version != version) continue;
    pool->retired = true;
    for (auto& idle : pool->idle) DestroyOnWorker(idle);
    pool->idle.clear();
  }
}

void AssignmentService::Start() {
  asio::co_spawn(io_, [this]() { return MaintenanceLoop(); }, asio::detached);
}

awaitable<void> AssignmentService::MaintenanceLoop() {
  // At least once a second: provisioned concurrency is topped up on the same tick.
  auto period = std::clamp<std::chrono::milliseconds>(options_.idle_timeout / 4,
                                                      std::chrono::milliseconds(100),
                                                      std::chrono::milliseconds(1000));
  while (!stopped_) {
    timer_.expires_after(period);
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    Tick();
  }
}

void AssignmentService::Tick() {
  ReapIdle();
  ReconcileProvisioned();
}

void AssignmentService::ReapIdle() {
  auto cutoff = options_.now() - options_.idle_timeout;
  for (auto it = pools_.begin(); it != pools_.end();) {
    Pool& pool = *it->second;
    int spare = pool.Live() - pool.provisioned;  // provisioned sandboxes are kept however idle
    // Oldest first, so that the sandboxes kept for provisioned concurrency are the warmest.
    auto expired = [&](const Sandbox& idle) {
      if (idle.idle_since > cutoff || spare <= 0) return false;
      --spare;
      DestroyOnWorker(idle);
      return true;
    };
    pool.idle.erase(std::remove_if(pool.idle.begin(), pool.idle.end(), expired), pool.idle.end());
    // A pool is referenced by leases and by coroutines starting sandboxes: keep it while it has any.
    if (pool.idle.empty() && pool.leased.empty() && pool.starting == 0 &&
        (pool.retired || pool.provisioned == 0)) {
      it = pools_.erase(it);
    } else {
      ++it;
    }
  }
}

void AssignmentService::Shutdown() {
  stopped_ = true;
  timer_.cancel();
  for (auto& [key, pool] : pools_) {
    pool->retired = true;
    for (auto& idle : pool->idle) DestroyOnWorker(idle);
    pool->idle.clear();
    for (auto& [k, leased] : pool->leased) DestroyOnWorker(leased);
  }
}

AssignmentService::Counts AssignmentService::CountsFor(const std::string& function) const {
  Counts c;
  for (const auto& [key, pool] : pools_) {
    if (pool->function != function) continue;
    c.idle += static_cast<int>(pool->idle.size());
    c.leased += static_cast<int>(pool->leased.size());
    c.starting += pool->starting;
  }
  return c;
}

void AssignmentService::SetProvisioned(const std::string& function, const std::string& qualifier, int requested) {
  Provision& p = provisioned_[{function, qualifier}];
  p.requested = requested;
  p.status = "IN_PROGRESS";
  p.reason.clear();
  ReconcileProvisioned();
}

void AssignmentService::ClearProvisioned(const std::string& function, const std::string& qualifier) {
  for (auto it = provisioned_.begin(); it != provisioned_.end();)
    it = it->first.first == function && (qualifier.empty() || it->first.second == qualifier) ? provisioned_.erase(it)
                                                                                           : std::next(it);
  ReconcileProvisioned();
}

std::optional<AssignmentService::ProvisionedStatus> AssignmentService::GetProvisioned(const std::string& function,
                                                                                      const std::string& qualifier) {
  auto it = provisioned_.find({function, qualifier});
  if (it == provisioned_.end()) return std::nullopt;
  const Provision& p = it->second;
  ProvisionedStatus out{p.requested, 0, 0, p.status, p.reason};
  auto pool = pools_.find(p.pool_key);
  if (pool != pools_.end()) {
    int ready = static_cast<int>(pool->second->idle.size());
    for (auto& [key, leased] : pool->second->leased) ready += leased.initialized && !leased.gone;
    out.available = std::min(ready, p.requested);
    out.allocated = std::min(ready + pool->second->starting, p.requested);
  }
  return out;
}

void AssignmentService::ReconcileProvisioned() {
  if (stopped_) return;
  for (auto& [key, pool] : pools_) pool->provisioned = 0;
  std::map<std::string, FunctionConfig> targets;
  for (auto& [key, p] : provisioned_) {
    std::optional<FunctionConfig> fn = resolver_ ? resolver_(key.first, key.second) : std::nullopt;
    if (!fn) {
      p.status = "FAILED";
      p.reason = "The function version no longer exists.";
      p.pool_key.clear();
      continue;
    }
    Pool& pool = PoolFor(*fn);
    pool.provisioned += p.requested;
    p.pool_key = PoolKey(*fn);
    targets.emplace(p.pool_key, *fn);
  }
  for (auto& [pool_key, fn] : targets) {
    Pool& pool = *pools_[pool_key];
    for (int missing = pool.provisioned - pool.Live(); missing > 0; --missing) {
      ++pool.starting;
      asio::co_spawn(io_, StartProvisioned(fn, pool_key), asio::detached);
    }
  }
  for (auto& [key, p] : provisioned_) {
    if (p.pool_key.empty()) continue;
    auto status = GetProvisioned(key.first, key.second);
    if (status && status->available >= p.requested) {
      p.status = "READY";
      p.reason.clear();
    } else if (p.status == "READY") {
      p.status = "IN_PROGRESS";  // a provisioned sandbox died: being replaced
    }
  }
}

awaitable<void> AssignmentService::StartProvisioned(FunctionConfig fn, std::string pool_key) {
  auto created = co_await StartSandbox(fn, "provisioned-concurrency");
  bool ready = false;
  if (created.ok()) {
    if (WorkerClient* worker = workers_.Find(created->worker)) ready = co_await worker->WaitReady(created->id);
  }
  auto it = pools_.find(pool_key);
  if (it == pools_.end()) co_return;  // pools with starting sandboxes are not erased; defensive
  Pool& pool = *it->second;
  --pool.starting;
  if (ready && !pool.retired && !stopped_) {
    created->initialized = true;
    created->idle_since = options_.now();
    pool.idle.push_back(std::move(created).value());
  } else {
    if (created.ok()) DestroyOnWorker(*created);
    std::string why = created.ok() ? "The runtime failed to initialize." : created.status().message();
    for (auto& [key, p] : provisioned_)
      if (p.pool_key == pool_key) {
        p.status = "FAILED";
        p.reason = why;
      }
    co_return;  // retried on the next maintenance tick, not in a tight loop
  }
  ReconcileProvisioned();
}

}  // namespace kindling
