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

boost::asio::awaitable<Result<std::shared_ptr<SandboxSession>>> Worker::CreateSandbox(
    FunctionConfig fn, std::string initialization_type) {
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
      return Status::Coded("Runtime.InvalidEntrypoint", "Couldn't find valid bootstrap(s): [/var/task/" +
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
  session->Start();
  sessions_[session->id()] = session;
  co_return session;
}

Result<SandboxSpec> Worker::PrepareSpec(const FunctionConfig& fn, const std::string& initialization_type) {
  const RuntimeInfo* runtime = FindRuntime(fn.runtime);
  if (!runtime) return Status::Coded("InvalidRuntimeException", "The runtime " + fn.runtime + " is not supported");

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
  bool lost = !code.ok() && (code.status().code() == chunks::kChunkNotFound ||
                             code.status().code() == chunks::kChunkCorrupt);
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
  stats.memory_reserved_bytes = reserved_bytes_;  // sandboxes being created
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto s = it->second.lock();
    if (!s || s->dead()) {
      it = sessions_.erase(it);
      continue;
    }
    ++stats.sandboxes;
    stats.memory_reserved_bytes += uint64_t(s->function().memory_mb) << 20;
    ++it;
  }
  return stats;
}

}  // namespace kindling
