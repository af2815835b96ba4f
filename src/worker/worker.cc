#include "worker/worker.h"

#include <unistd.h>

#include <cmath>

#include "code/code_package.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/ids.h"
#include "images/image_publisher.h"
#include "worker/runtimes.h"

namespace kindling {

Worker::Worker(boost::asio::io_context& io, std::unique_ptr<SandboxFactory> factory,
               WorkerOptions opts)
    : io_(io), factory_(std::move(factory)), opts_(std::move(opts)) {
  MakeDirs(opts_.logs_root, 0750);
}

std::vector<std::string> Worker::Environment(const FunctionConfig& fn, const std::string& sandbox_id,
                                             const std::string& exec_env,
                                             const std::string& initialization_type) {
  std::string date = IsoTimestamp().substr(0, 10);
  for (char& c : date)
    if (c == '-') c = '/';
  std::vector<std::string> env;
  for (const auto& [k, v] : fn.environment) env.push_back(k + "=" + v);
  // The runtime's variables. The API refuses user values for the reserved ones; the others
  // (TZ, LANG, PATH, LD_LIBRARY_PATH, HOME) yield to the function's configuration.
  std::vector<std::pair<std::string, std::string>> defaults = {
      {"_HANDLER", fn.handler},
      {"LAMBDA_TASK_ROOT", "/var/task"},
      {"LAMBDA_RUNTIME_DIR", "/var/runtime"},
      {"AWS_LAMBDA_FUNCTION_NAME", fn.name},
      {"AWS_LAMBDA_FUNCTION_VERSION", fn.version},
      {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE", std::to_string(fn.memory_mb)},
      {"AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/" + fn.name},
      {"AWS_LAMBDA_LOG_STREAM_NAME", date + "/[" + fn.version + "]" + sandbox_id},
      {"AWS_LAMBDA_INITIALIZATION_TYPE", initialization_type},
      {"AWS_REGION", opts_.arn.region},
      {"AWS_DEFAULT_REGION", opts_.arn.region},
      {"AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"},
      {"AWS_EXECUTION_ENV", "AWS_Lambda_" + exec_env},
      {"TZ", ":UTC"},
      {"LANG", "en_US.UTF-8"},
      {"PATH", "/usr/local/bin:/usr/bin:/bin:/opt/bin"},
      {"LD_LIBRARY_PATH", "/var/task:/var/task/lib:/opt/lib"},
      {"HOME", "/tmp"},
  };
  for (const auto& [k, v] : defaults)
    if (!fn.environment.count(k)) env.push_back(k + "=" + v);
  return env;
}

std::shared_ptr<FunctionLog> Worker::LogFor(const std::string& function) {
  auto& weak = logs_[function];
  auto log = weak.lock();
  if (!log) {
    log = std::make_shared<FunctionLog>(opts_.logs_root + "/" + function + ".log");
    weak = log;
  }
  return log;
}

Worker::~Worker() { create_pool_.join(); }

boost::asio::awaitable<Result<NewSandbox>> Worker::CreateSandbox(FunctionConfig fn,
                                                                 std::string initialization_type) {
  auto spec = PrepareSpec(fn, initialization_type);
  if (!spec.ok()) co_return spec.status();
  // Mounting images and creating a sandbox block (network, mount, clone, cgroups, the child's
  // setup): they run on the creation pool, so the io thread keeps serving and creations proceed
  // in parallel.
  struct Created {
    std::unique_ptr<Sandbox> sandbox;
    std::vector<std::shared_ptr<images::ImageLease>> leases;
  };
  reserved_bytes_ += spec->memory_bytes;
  auto create = [this, &fn, spec = std::move(spec).value()]() mutable -> Result<Created> {
    Created c;
    auto leases = MountImages(fn, &spec);
    if (!leases.ok()) return leases.status();
    c.leases = std::move(leases).value();
    const RuntimeInfo* runtime = FindRuntime(fn.runtime);
    if (!runtime->entrypoint.empty() && !PackageHasExecutable(spec.code_dir, runtime->entrypoint))
      return Status::FunctionError("Runtime.InvalidEntrypoint", "Couldn't find valid bootstrap(s): [/var/task/" +
                                                            runtime->entrypoint + "]");
    auto sandbox = factory_->Create(spec);
    if (!sandbox.ok()) return Status::Error("sandbox creation failed: " + sandbox.status().message());
    c.sandbox = std::move(sandbox).value();
    return c;
  };
  auto created = co_await RunOn(create_pool_.get_executor(), std::move(create));
  reserved_bytes_ -= uint64_t(fn.memory_mb) << 20;
  if (!created.ok()) co_return created.status();
  auto session = std::make_shared<SandboxSession>(io_, std::move(created->sandbox), fn, LogFor(fn.name),
                                                  opts_.freeze_delay);
  if (!created->leases.empty()) {
    for (const auto& lease : created->leases) session->Hold(lease);
    SandboxSession::StartHooks hooks;
    hooks.why_failed = [mounter = opts_.images, leases = created->leases] {
      std::string why;
      for (const auto& lease : leases) {
        std::string e = mounter->LastError(*lease);
        if (!e.empty()) why += (why.empty() ? "" : "; ") + ("image " + lease->name() + ": " + e);
      }
      return why;
    };
    // The start is over: what it read becomes its images' start recordings (network: off the io
    // thread).
    hooks.over = [this, leases = created->leases] {
      boost::asio::post(create_pool_, [mounter = opts_.images, leases] {
        for (const auto& lease : leases) mounter->StartFinished(*lease);
      });
    };
    session->SetStartHooks(std::move(hooks));
  }
  session->OnDead([this, id = session->id()] { Forget(id); });
  session->Start();
  NewSandbox created_sandbox{session->id(), RandomU64()};
  sessions_[created_sandbox.id] = Owned{std::move(session), created_sandbox.token, 0, false};
  co_return created_sandbox;
}

boost::asio::awaitable<bool> Worker::WaitReady(std::string sandbox) {
  auto it = sessions_.find(sandbox);
  if (it == sessions_.end()) co_return false;
  auto session = it->second.session;  // alive across the wait
  bool ready = co_await session->WaitReady();
  co_return ready;
}

boost::asio::awaitable<Result<InvokeResult>> Worker::Invoke(const SandboxLease& lease,
                                                            const InvokeRequest& request) {
  auto it = sessions_.find(lease.sandbox);
  if (it == sessions_.end() || it->second.session->dead())
    co_return Status::NotFound("sandbox " + lease.sandbox + " is gone");
  Owned& owned = it->second;
  if (owned.token != lease.token) co_return Status::Conflict("lease token does not match sandbox " + lease.sandbox);
  if (lease.sequence <= owned.last_sequence)
    co_return Status::Conflict("stale lease " + std::to_string(lease.sequence) + " of sandbox " + lease.sandbox +
                               " (last served " + std::to_string(owned.last_sequence) + ")");
  if (owned.busy) co_return Status::Conflict("sandbox " + lease.sandbox + " is busy");
  owned.busy = true;
  owned.last_sequence = lease.sequence;
  auto session = owned.session;  // `owned` may be erased while the invocation runs
  InvokeResult result = co_await session->Invoke(request);
  result.sandbox_gone = session->dead();
  if (auto again = sessions_.find(lease.sandbox); again != sessions_.end()) again->second.busy = false;
  // Freeze once the response is on its way: posted, so the caller's write goes first.
  if (!result.sandbox_gone) boost::asio::post(io_, [session] { session->Freeze(); });
  co_return result;
}

boost::asio::awaitable<Result<std::vector<SandboxState>>> Worker::ListSandboxes() { co_return Sandboxes(); }

std::vector<SandboxState> Worker::Sandboxes() {
  std::vector<SandboxState> out;
  for (const auto& [id, owned] : sessions_) {
    if (owned.session->dead()) continue;
    const FunctionConfig& fn = owned.session->function();
    out.push_back({id, fn.name, fn.version, owned.busy, owned.last_sequence});
  }
  return out;
}

void Worker::Destroy(const std::string& sandbox) {
  auto it = sessions_.find(sandbox);
  if (it != sessions_.end()) it->second.session->Destroy();  // its OnDead hook forgets it
}

void Worker::DestroyAll() {
  for (auto& [id, owned] : sessions_) owned.session->Destroy();
}

void Worker::Forget(const std::string& sandbox) {
  if (sessions_.erase(sandbox) && gone_listener_) gone_listener_(sandbox);
}

void Worker::ExportGauges(Metrics& metrics) {
  metrics.ClearGauges("kindling_sandboxes{");
  std::map<std::string, double> by_state{{"initializing", 0}, {"busy", 0}, {"idle", 0}, {"frozen", 0}};
  for (const auto& [id, owned] : sessions_) {
    const SandboxSession& s = *owned.session;
    if (s.dead()) continue;
    if (owned.busy) by_state[s.initialized() ? "busy" : "initializing"]++;
    else by_state[s.frozen() ? "frozen" : s.initialized() ? "idle" : "initializing"]++;
  }
  for (const auto& [state, n] : by_state) metrics.SetGauge("kindling_sandboxes{state=\"" + state + "\"}", n);
}

Result<SandboxSpec> Worker::PrepareSpec(const FunctionConfig& fn, const std::string& initialization_type) {
  const RuntimeInfo* runtime = FindRuntime(fn.runtime);
  if (!runtime) return Status::FunctionError("InvalidRuntimeException", "The runtime " + fn.runtime + " is not supported");

  char id_buf[64];
  snprintf(id_buf, sizeof id_buf, "%04llx%s", static_cast<unsigned long long>(next_id_++ & 0xffff),
           HexEncode(Sha256(NewRequestId())).substr(0, 28).c_str());
  SandboxSpec spec;
  spec.id = id_buf;
  spec.argv = {"/var/rapid/init", "--"};
  spec.argv.insert(spec.argv.end(), runtime->argv.begin(), runtime->argv.end());
  spec.env = Environment(fn, spec.id, runtime->name, initialization_type);
  spec.code_dir = opts_.code_root + "/" + fn.code_digest;
  spec.binds.push_back({opts_.init_path, "/var/rapid/init", false});
  if (!opts_.images && !runtime->client_dir.empty())  // runtime images carry their client
    spec.binds.push_back({opts_.runtimes_dir + "/" + runtime->client_dir, "/var/runtime", false});
  spec.memory_bytes = uint64_t(fn.memory_mb) << 20;
  spec.tmp_bytes = uint64_t(fn.ephemeral_mb) << 20;
  // CPU in proportion to memory (1769 MB = one vCPU): a share under contention, and a ceiling of
  // whole vCPUs so that small functions can still burst through their init phase.
  spec.cpu_weight = std::max<uint32_t>(2, static_cast<uint32_t>(uint64_t(fn.memory_mb) * 1024 / 1769));
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  uint32_t vcpus = static_cast<uint32_t>(std::ceil(fn.memory_mb / 1769.0));
  spec.cpu_millis = 1000 * std::min<uint32_t>(vcpus, static_cast<uint32_t>(std::max(1L, cpus)));
  spec.pids_max = 1024;
  return spec;
}

Result<std::vector<std::shared_ptr<images::ImageLease>>> Worker::MountImages(const FunctionConfig& fn,
                                                                            SandboxSpec* spec) {
  std::vector<std::shared_ptr<images::ImageLease>> leases;
  if (!opts_.images) return leases;
  const RuntimeInfo* runtime = FindRuntime(fn.runtime);
  auto runtime_image = opts_.runtime_image(runtime->image);
  if (!runtime_image.ok()) return Status::Error(runtime_image.status().message());
  auto root = opts_.images->Acquire(*runtime_image);
  if (!root.ok()) return Status::Error(root.status().message());
  std::string code_name = images::CodeImageName(fn.code_digest);
  auto code = opts_.images->Acquire(code_name);
  // A code image the chunk server lacks, or whose copy it found corrupt (and dropped), is
  // published again from the stored package.
  bool lost = !code.ok() && (code.status().IsNotFound() || code.status().IsCorrupt());
  if (lost && opts_.publish_code && opts_.publish_code(fn.code_digest).ok())
    code = opts_.images->Acquire(code_name);
  if (!code.ok()) return Status::Error(code.status().message());
  spec->root_fs = (*root)->path();
  spec->code_dir = (*code)->path();
  leases.push_back(std::move(root).value());
  leases.push_back(std::move(code).value());
  return leases;
}

WorkerStats Worker::Stats() {
  WorkerStats stats;
  stats.memory_capacity_bytes = opts_.memory_capacity_bytes;
  stats.memory_reserved_bytes = reserved_bytes_;  // sandboxes being created
  for (const auto& [id, owned] : sessions_) {
    if (owned.session->dead()) continue;
    ++stats.sandboxes;
    stats.memory_reserved_bytes += uint64_t(owned.session->function().memory_mb) << 20;
  }
  return stats;
}

}  // namespace kindling
