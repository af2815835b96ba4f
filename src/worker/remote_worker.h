// RemoteWorker: a WorkerClient that speaks WorkerServer's RPC to a worker node (cluster mode).
//
// Stats() must answer at once (Placement calls it for every cold start), so it answers from the
// worker's state as last polled (every poll_interval), plus the memory of sandboxes created since.
// The same poll finds sandboxes that ended: every sandbox created through this client that the
// worker no longer lists is reported to the OnSandboxGone listener. A worker that does not answer
// polls is reachable() == false; whether it is dead is the fleet registry's call, not this class's.
//
// Invoke is never retried here (it is not idempotent); its errors keep HttpClient's meaning:
// Unavailable means the payload was not sent (the caller may run it elsewhere), DeadlineExceeded or
// Unknown that it may have run. Destroy is retried (idempotent) in the background.
//
// Thread safety: the io_context thread that runs the HttpClient.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "http/http_client.h"
#include "worker/worker_client.h"

namespace kindling {

struct RemoteWorkerOptions {
  std::chrono::milliseconds poll_interval{500};
  std::chrono::milliseconds control_timeout{5000};    // create, destroy, state
  std::chrono::milliseconds create_timeout{30000};    // image mounts on a cold worker can be slow
  std::chrono::milliseconds invoke_slack{15000};      // beyond the function's own timeout (init, transfer)
};

class RemoteWorker : public WorkerClient, public std::enable_shared_from_this<RemoteWorker> {
 public:
  RemoteWorker(boost::asio::io_context& io, HttpClient& http, std::string id, std::string url,
               std::string cluster_key, RemoteWorkerOptions options = {});

  // Starts the state poll; Stop ends it (the object may then be released).
  void Start();
  void Stop();
  bool reachable() const { return reachable_; }
  const std::string& url() const { return url_; }

  const std::string& id() const override { return id_; }
  boost::asio::awaitable<Result<NewSandbox>> CreateSandbox(FunctionConfig fn,
                                                          std::string initialization_type) override;
  boost::asio::awaitable<bool> WaitReady(std::string sandbox) override;
  boost::asio::awaitable<Result<InvokeResult>> Invoke(const SandboxLease& lease,
                                                     const InvokeRequest& request) override;
  void Destroy(const std::string& sandbox) override;
  WorkerStats Stats() override;
  boost::asio::awaitable<Result<std::vector<SandboxState>>> ListSandboxes() override;
  void OnSandboxGone(std::function<void(const std::string&)> listener) override {
    gone_listener_ = std::move(listener);
  }

  // One poll of the worker's state (the loop's body; tests call it directly).
  boost::asio::awaitable<Status> Poll();

 private:
  HttpClientRequest Request(std::string method, std::string target, std::string body = "") const;
  boost::asio::awaitable<void> PollLoop();
  boost::asio::awaitable<void> DestroyWithRetries(std::string sandbox);

  boost::asio::io_context& io_;
  HttpClient& http_;
  std::string id_, url_, cluster_key_;
  RemoteWorkerOptions options_;
  bool stopped_ = true;
  bool reachable_ = false;
  // GET state, parsed.
  struct State {
    WorkerStats stats;
    std::vector<SandboxState> sandboxes;
  };
  boost::asio::awaitable<Result<State>> FetchState();

  WorkerStats polled_;
  uint64_t created_since_poll_bytes_ = 0;
  // Sandboxes created through this client: id -> (memory, poll generation when created).
  struct Known {
    uint64_t memory_bytes;
    uint64_t generation;
  };
  std::map<std::string, Known> known_;
  uint64_t generation_ = 0;
  std::function<void(const std::string&)> gone_listener_;
  std::shared_ptr<boost::asio::steady_timer> timer_;
};

}  // namespace kindling
