// FakeWorker: a WorkerClient for tests of the control plane (assignment, placement, RPC). Its
// "sandboxes" start at once and echo invocations; it checks leases as the real Worker does
// (token, increasing sequence, one invocation at a time) and records what it was asked.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <boost/asio/this_coro.hpp>

#include "worker/worker_client.h"

namespace kindling {

class FakeWorker : public WorkerClient {
 public:
  FakeWorker(std::string id, uint64_t capacity_mb) : id_(std::move(id)), capacity_mb_(capacity_mb) {}

  const std::string& id() const override { return id_; }
  boost::asio::awaitable<Result<NewSandbox>> CreateSandbox(FunctionConfig fn, std::string initialization_type) override {
    if (!fail_create.ok()) co_return fail_create;
    if (create_delay.count() > 0) {  // lets creations overlap, as real ones do
      boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, create_delay);
      co_await t.async_wait(boost::asio::use_awaitable);
    }
    ++created;
    NewSandbox s{id_ + "-sb" + std::to_string(created), uint64_t(1000 + created)};
    live[s.id] = Live{fn.memory_mb, s.token, 0, fn.name, false};
    init_types.push_back(initialization_type);
    co_return s;
  }
  boost::asio::awaitable<bool> WaitReady(std::string sandbox) override { co_return live.count(sandbox) > 0 && ready; }
  // Echoes the payload; a payload of die (or "die" in JSON) ends the sandbox, as a crash would.
  boost::asio::awaitable<Result<InvokeResult>> Invoke(const SandboxLease& lease, const InvokeRequest& request) override {
    auto it = live.find(lease.sandbox);
    if (it == live.end()) co_return Status::NotFound("sandbox " + lease.sandbox + " is gone");
    if (it->second.token != lease.token) co_return Status::Conflict("lease token does not match");
    if (lease.sequence <= it->second.last_sequence) co_return Status::Conflict("stale lease");
    bool first = it->second.last_sequence == 0;
    it->second.last_sequence = lease.sequence;
    invoked.push_back(request);
    InvokeResult r;
    r.payload = request.payload;
    r.cold_start = first;
    r.log = "log of " + request.request_id + "\n";
    if (request.payload == "die" || request.payload == "\"die\"") {
      r.function_error = "Unhandled";
      r.sandbox_gone = true;
      Destroy(lease.sandbox);
    }
    co_return r;
  }
  void Destroy(const std::string& sandbox) override {
    if (!live.erase(sandbox)) return;
    destroyed.push_back(sandbox);
    if (gone_listener) gone_listener(sandbox);
  }
  WorkerStats Stats() override {
    WorkerStats st;
    st.memory_capacity_bytes = capacity_mb_ << 20;
    for (const auto& [id, s] : live) st.memory_reserved_bytes += uint64_t(s.memory_mb) << 20;
    st.sandboxes = live.size();
    return st;
  }
  boost::asio::awaitable<Result<std::vector<SandboxState>>> ListSandboxes() override {
    std::vector<SandboxState> out;
    for (const auto& [id, s] : live) out.push_back({id, s.function, "$LATEST", s.busy, s.last_sequence});
    co_return out;
  }
  void OnSandboxGone(std::function<void(const std::string&)> listener) override { gone_listener = std::move(listener); }

  struct Live {
    int memory_mb;
    uint64_t token;
    uint64_t last_sequence;
    std::string function;
    bool busy;
  };
  int created = 0;
  bool ready = true;
  std::chrono::milliseconds create_delay{0};
  Status fail_create;
  std::map<std::string, Live> live;
  std::vector<std::string> destroyed;
  std::vector<std::string> init_types;
  std::vector<InvokeRequest> invoked;
  std::function<void(const std::string&)> gone_listener;

 private:
  std::string id_;
  uint64_t capacity_mb_;
};

}  // namespace kindling
