// Worker: the host agent. Creates sandboxes for function versions (through a SandboxFactory) and
// hands back sessions the assignment service invokes through. In cluster mode this sits behind an
// RPC boundary; here it is called in-process with the same plain messages.
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
#include "worker/sandbox_session.h"

namespace kindling {

struct WorkerOptions {
  std::string name = "local";
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

struct WorkerStats {
  uint64_t sandboxes = 0;
  uint64_t memory_reserved_bytes = 0;
};

class Worker {
 public:
  Worker(boost::asio::io_context& io, std::unique_ptr<SandboxFactory> factory, WorkerOptions opts);
  ~Worker();  // waits for creations in progress

  // Starts a sandbox for fn, already reading its control socket. Its runtime initializes in the
  // background; the first Invoke waits for it. Errors carry a code when they are the function's
  // fault (Runtime.InvalidEntrypoint, InvalidRuntimeException); uncoded errors are service errors.
  // initialization_type: AWS_LAMBDA_INITIALIZATION_TYPE ("on-demand", "provisioned-concurrency").
  boost::asio::awaitable<Result<std::shared_ptr<SandboxSession>>> CreateSandbox(
      FunctionConfig fn, std::string initialization_type = "on-demand");

  WorkerStats Stats();
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
  uint64_t next_id_ = 1;
  std::map<std::string, std::weak_ptr<SandboxSession>> sessions_;
  std::map<std::string, std::weak_ptr<FunctionLog>> logs_;
  uint64_t reserved_bytes_ = 0;                 // memory of sandboxes being created
  // Mounts the images of fn's sandbox (on a creation thread) and fills in spec's paths.
  Result<std::vector<std::shared_ptr<images::ImageLease>>> MountImages(const FunctionConfig& fn,
                                                                       SandboxSpec* spec);

  boost::asio::thread_pool create_pool_{2};     // SandboxFactory::Create is thread-safe
};

}  // namespace kindling
