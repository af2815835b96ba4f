#include "assignment/assignment_service.h"

#include <algorithm>
#include "common/asio.h"
#include <nlohmann/json.hpp>

namespace kindling {

namespace asio = boost::asio;
using asio::awaitable;
using std::chrono::steady_clock;

AssignmentService::AssignmentService(asio::io_context& io, Placement& placement,
                                     AssignmentOptions options)
    : io_(io), placement_(placement), options_(options), reaper_(io) {}

bool AssignmentService::TakeScalingToken(const std::string& function) {
  auto now = steady_clock::now();
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

awaitable<Result<std::shared_ptr<SandboxSession>>> AssignmentService::StartSandbox(
    FunctionConfig fn, std::string initialization_type) {
  if (!TakeScalingToken(fn.name))
    co_return Status::Coded(kScalingThrottled, "the function starts new sandboxes faster than its scaling rate");
  for (;;) {
    auto worker = placement_.Choose({fn.name, fn.memory_mb});
    if (worker.ok()) {
      auto created = co_await (*worker)->CreateSandbox(fn, initialization_type);
      if (created.ok() && stopped_) {
        (*created)->Destroy();
        co_return Status::Error("kindlingd is shutting down");
      }
      co_return created;
    }
    // No room: idle sandboxes (of any function) give way, least recently used first.
    if (!EvictLeastRecentlyUsed()) co_return worker.status();
  }
}

AssignmentService::Pool& AssignmentService::PoolFor(const FunctionConfig& fn) {
  auto& slot = pools_[fn.name + "\n" + fn.version + "\n" + fn.revision_id];
  if (!slot) {
    slot = std::make_unique<Pool>();
    slot->function = fn.name;
    slot->revision = fn.revision_id;
    slot->version = fn.version;
  }
  return *slot;
}

bool AssignmentService::EvictLeastRecentlyUsed() {
  Pool* oldest_pool = nullptr;
  for (auto& [key, pool] : pools_)
    if (!pool->idle.empty() && pool->Live() > pool->provisioned &&
        (!oldest_pool || pool->idle.front().since < oldest_pool->idle.front().since))
      oldest_pool = pool.get();
  if (!oldest_pool) return false;
  oldest_pool->idle.front().session->Destroy();
  oldest_pool->idle.erase(oldest_pool->idle.begin());
  return true;
}

awaitable<Result<InvokeResult>> AssignmentService::Invoke(const FunctionConfig& fn,
                                                           InvokeRequest request) {
  Pool* pool = &PoolFor(fn);

  std::shared_ptr<SandboxSession> session;
  while (!pool->idle.empty() && !session) {
    session = std::move(pool->idle.back().session);
    pool->idle.pop_back();
    if (session->dead()) session.reset();
  }
  // At most two attempts: the second only when the first sandbox ended before its runtime took
  // the event (e.g. it exited right after its previous result), so the function never saw it.
  for (int attempt = 0;; ++attempt) {
    if (!session) {
      ++pool->starting;  // keeps the pool alive while the sandbox is created
      auto created = co_await StartSandbox(fn);
      --pool->starting;
      if (!created.ok()) {
        const Status& s = created.status();
        if (s.code().empty() || s.code() == kScalingThrottled) co_return s;
        InvokeResult failed;  // the function's fault, e.g. no bootstrap in its package
        failed.function_error = "Unhandled";
        failed.cold_start = true;
        failed.payload = nlohmann::json{{"errorType", s.code()},
                                        {"errorMessage", "RequestId: " + request.request_id +
                                                             " Error: " + s.message()}}
                             .dump();
        co_return failed;
      }
      session = std::move(created).value();
    }
    pool->busy.push_back(session);
    InvokeResult result = co_await session->Invoke(request);
    if (!result.undelivered || attempt == 1) {
      // Freeze after the response is on its way: posted, so the caller's write goes first. The
      // session stays in `busy` until then, which keeps the pool alive.
      asio::post(io_, [this, pool, session] { Release(*pool, session); });
      co_return result;
    }
    pool->busy.erase(std::find(pool->busy.begin(), pool->busy.end(), session));
    session->Destroy();
    session.reset();
  }
}

void AssignmentService::Release(Pool& pool, const std::shared_ptr<SandboxSession>& session) {
  pool.busy.erase(std::find(pool.busy.begin(), pool.busy.end(), session));
  if (session->dead() || pool.retired || stopped_) {
    session->Destroy();
    return;
  }
  session->Freeze();
  pool.idle.push_back({session, steady_clock::now()});
}

void AssignmentService::Retire(const std::string& function, const std::string& keep_revision) {
  for (auto& [key, pool] : pools_) {
    if (pool->function != function || pool->revision == keep_revision) continue;
    if (!keep_revision.empty() && pool->version != "$LATEST") continue;
    pool->retired = true;
    for (auto& idle : pool->idle) idle.session->Destroy();
    pool->idle.clear();
  }
}

void AssignmentService::RetireVersion(const std::string& function, const std::string& version) {
  for (auto& [key, pool] : pools_) {
    if (pool->function != function || pool->version != version) continue;
    pool->retired = true;
    for (auto& idle : pool->idle) idle.session->Destroy();
    pool->idle.clear();
  }
}

void AssignmentService::Start() {
  asio::co_spawn(io_, [this]() { return ReaperLoop(); }, asio::detached);
}

awaitable<void> AssignmentService::ReaperLoop() {
  // At least once a second: provisioned concurrency is topped up on the same tick.
  auto period = std::clamp<std::chrono::milliseconds>(options_.idle_timeout / 4,
                                                      std::chrono::milliseconds(100),
                                                      std::chrono::milliseconds(1000));
  while (!stopped_) {
    reaper_.expires_after(period);
    boost::system::error_code ec;
    co_await reaper_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    ReapIdle();
    ReconcileProvisioned();
  }
}

void AssignmentService::ReapIdle() {
  auto cutoff = steady_clock::now() - options_.idle_timeout;
  for (auto it = pools_.begin(); it != pools_.end();) {
    Pool& pool = *it->second;
    int spare = pool.Live() - pool.provisioned;  // provisioned sandboxes are kept however idle
    auto expired = [&](const Idle& idle) {
      if (!idle.session->dead() && (idle.since > cutoff || spare <= 0)) return false;
      if (!idle.session->dead()) --spare;
      idle.session->Destroy();
      return true;
    };
    pool.idle.erase(std::remove_if(pool.idle.begin(), pool.idle.end(), expired), pool.idle.end());
    // A pool object is referenced by in-flight invocations and posted releases: keep it while busy.
    if (pool.idle.empty() && pool.busy.empty() && pool.starting == 0 && pool.retired) {
      it = pools_.erase(it);
    } else {
      ++it;
    }
  }
}

void AssignmentService::Shutdown() {
  stopped_ = true;
  reaper_.cancel();
  for (auto& [key, pool] : pools_) {
    pool->retired = true;
    for (auto& idle : pool->idle) idle.session->Destroy();
    pool->idle.clear();
    for (auto& busy : pool->busy) busy->Destroy();
  }
}

void AssignmentService::ExportGauges(Metrics& metrics) {
  metrics.ClearGauges("kindling_sandboxes{");
  std::map<std::string, double> by_state{{"initializing", 0}, {"busy", 0}, {"idle", 0}, {"frozen", 0}};
  for (auto& [key, pool] : pools_) {
    for (auto& s : pool->busy) by_state[s->initialized() ? "busy" : "initializing"]++;
    for (auto& idle : pool->idle)
      if (!idle.session->dead()) by_state[idle.session->frozen() ? "frozen" : "idle"]++;
  }
  for (const auto& [state, n] : by_state) metrics.SetGauge("kindling_sandboxes{state=\"" + state + "\"}", n);
}

}  // namespace kindling

namespace kindling {

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
    int ready = 0;
    for (auto& idle : pool->second->idle) ready += !idle.session->dead();
    for (auto& busy : pool->second->busy) ready += busy->initialized() && !busy->dead();
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
    p.pool_key = fn->name + "\n" + fn->version + "\n" + fn->revision_id;
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
  std::shared_ptr<SandboxSession> session;
  bool ready = false;
  if (created.ok()) {
    session = std::move(created).value();
    ready = co_await session->WaitReady();
  }
  auto it = pools_.find(pool_key);
  if (it == pools_.end()) co_return;  // pools with starting sandboxes are not erased; defensive
  Pool& pool = *it->second;
  --pool.starting;
  if (ready && !pool.retired && !stopped_) {
    session->Freeze();
    pool.idle.push_back({session, steady_clock::now()});
  } else {
    if (session) session->Destroy();
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
