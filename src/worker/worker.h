// Worker: the host agent. Creates sandboxes for function versions (through a SandboxFactory), owns
// their SandboxSessions and runs invocations on them for the holders of valid leases (see
// WorkerClient, which it implements in-process; in cluster mode an RPC server fronts it). It
// freezes a sandbox once an invocation is over and its runtime is idle.
//
// Thread safety: every method runs on the io_context thread.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/asio.h"
#include "common/function.h"
#include "common/status.h"
#include "images/image_mounter.h"
#include "sandbox/sandbox.h"
#include "worker/function_log.h"
#include "common/metrics.h"
#include "worker/sandbox_session.h"
#include "worker/worker_client.h"

namespace kindling {

struct WorkerOptions {
  std::string name = "local";  // the worker's id (WorkerClient::id)
  std::string code_root;     // extracted packages: <code_root>/<digest>/
  std::string logs_root;     // per-function logs: <logs_root>/<function>.log
  std::string init_path;     // host path of the kindling-init binary
  std::string runtimes_dir;  // host directory holding the runtime clients (python/, node/)
  ArnContext arn;
  uint64_t memory_capacity_bytes = 0;  // what sandboxes may reserve in total (0 = unlimited)
  std::chrono::microseconds freeze_delay{0};  // see SandboxSession
  // Images. Null: sandboxes see the host's root file system and the code under code_root.
  // Otherwise their root and /var/task are images mounted through it (not owned).
  images::ImageMounter* images = nullptr;
  // The name of a runtime family's root file system image (blocking; see ImagePublisher).
  std::function<Result<std::string>(const std::string& family)> runtime_image;
  // Publishes the code package <code_root>/<digest> as its image, for a package the chunk server
  // does not have (stored before images, or lost); blocking.
  std::function<Status(const std::string& code_digest)> publish_code;
};

class Worker : public WorkerClient {
 public:
  Worker(boost::asio::io_context& io, std::unique_ptr<SandboxFactory> factory, WorkerOptions opts);
  ~Worker() override;  // waits for creations in progress

  // WorkerClient. Function faults are FunctionErrors typed Runtime.InvalidEntrypoint or
  // InvalidRuntimeException.
  const std::string& id() const override { return opts_.name; }
  boost::asio::awaitable<Result<NewSandbox>> CreateSandbox(FunctionConfig fn,
                                                          std::string initialization_type) override;
  boost::asio::awaitable<bool> WaitReady(std::string sandbox) override;
  boost::asio::awaitable<Result<InvokeResult>> Invoke(const SandboxLease& lease,
                                                     const InvokeRequest& request) override;
  void Destroy(const std::string& sandbox) override;
  WorkerStats Stats() override;
  boost::asio::awaitable<Result<std::vector<SandboxState>>> ListSandboxes() override;
  std::vector<SandboxState> Sandboxes();
  void OnSandboxGone(std::function<void(const std::string&)> listener) override {
    gone_listener_ = std::move(listener);
  }

  // Destroys every sandbox (shutdown).
  void DestroyAll();
  // Publishes sandbox counts by state (initializing, busy, idle, frozen) as gauges.
  void ExportGauges(Metrics& metrics);
  // Waits for sandbox creations in progress; their results reach the io_context, which must run
  // once more for them to be released. Call first at shutdown.
  void StopCreating() { create_pool_.join(); }
  // Removes the worker's host state (see SandboxFactory::RemoveAll). Call after every session
  // has been destroyed.
  Status Shutdown() { return factory_->RemoveAll(); }
  const WorkerOptions& options() const { return opts_; }

 private:
  std::vector<std::string> Environment(const FunctionConfig& fn, const std::string& sandbox_id,
                                       const std::string& exec_env, const std::string& initialization_type);
  std::shared_ptr<FunctionLog> LogFor(const std::string& function);
  // The sandbox to start for fn, or the function's fault (coded errors).
  Result<SandboxSpec> PrepareSpec(const FunctionConfig& fn, const std::string& initialization_type);

  boost::asio::io_context& io_;
  std::unique_ptr<SandboxFactory> factory_;
  WorkerOptions opts_;
  // Ends a sandbox's ownership: erases it and tells the listener (posted: never from inside a
  // caller's own Destroy or Invoke).
  void Forget(const std::string& sandbox);

  uint64_t next_id_ = 1;
  struct Owned {
    std::shared_ptr<SandboxSession> session;
    uint64_t token = 0;
    uint64_t last_sequence = 0;  // of the last lease served
    bool busy = false;
  };
  std::map<std::string, Owned> sessions_;
  std::function<void(const std::string&)> gone_listener_;
  std::map<std::string, std::weak_ptr<FunctionLog>> logs_;
  uint64_t reserved_bytes_ = 0;                 // memory of sandboxes being created
  // Mounts the images of fn's sandbox (on a creation thread) and fills in spec's paths.
  Result<std::vector<std::shared_ptr<images::ImageLease>>> MountImages(const FunctionConfig& fn,
                                                                       SandboxSpec* spec);

  boost::asio::thread_pool create_pool_{2};     // SandboxFactory::Create is thread-safe
};

}  // namespace kindling
