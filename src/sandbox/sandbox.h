// The Sandbox interface: one isolated, resource-limited execution environment.
//
// A backend (the process jail here; a microVM on hosts with hardware KVM) starts `argv` as the
// sandbox's first process (kindling-init) with `control_fd` of the returned Sandbox connected to
// its fd 3. Everything the worker needs from a sandbox goes through this interface.
//
// Thread safety: a Sandbox is used by one thread at a time; SandboxFactory::Create is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace kindling {

struct BindMount {
  std::string host_path;     // file or directory on the host
  std::string sandbox_path;  // absolute path inside the sandbox; parents are created
  bool writable = false;
};

struct SandboxSpec {
  std::string id;                    // unique among live sandboxes; [a-z0-9-], <= 48 chars
  std::vector<std::string> argv;     // argv[0] is a path inside the sandbox
  std::vector<std::string> env;      // KEY=VALUE, the whole environment of argv[0]
  // Host directory holding the sandbox's root file system (a mounted runtime image): its /usr,
  // top-level symlinks and the /etc entries runtimes need are mounted read-only. "" = the host's.
  std::string root_fs;
  std::string code_dir;              // host directory mounted read-only at /var/task ("" = empty)
  std::vector<BindMount> binds;      // extra mounts (runtime client, kindling-init)
  uint64_t memory_bytes = 128ull << 20;  // hard limit (memory + swap)
  uint64_t tmp_bytes = 512ull << 20;     // size of the private /tmp tmpfs
  uint32_t cpu_millis = 1000;        // CPU ceiling in thousandths of a vCPU (1769 MB = 1000)
  uint32_t cpu_weight = 1024;        // relative CPU share under contention (v1 cpu.shares scale)
  uint32_t pids_max = 1024;          // processes + threads
  bool network = false;              // false: a private network namespace with loopback only
};

// Why the sandbox's processes ended, read from its cgroups and its first process.
struct SandboxExit {
  bool exited = false;   // the first process has ended
  int wait_status = 0;   // waitpid() status of the first process
  bool oom_killed = false;  // the kernel's OOM killer ran inside this sandbox
};

class Sandbox {
 public:
  virtual ~Sandbox() = default;  // destroys: kills every process, unmounts, removes cgroups

  virtual const std::string& id() const = 0;
  // Daemon end of the control socket (stream, non-blocking, close-on-exec). Owned by the Sandbox.
  virtual int control_fd() const = 0;
  // A pidfd of the first process: readable once it has exited. Owned by the Sandbox.
  virtual int exit_fd() const = 0;

  // Stop / resume every process in the sandbox. Idempotent.
  virtual Status Freeze() = 0;
  virtual Status Thaw() = 0;
  // Kills every process (also when frozen). The Sandbox stays valid for Exit() and Stats().
  virtual Status Kill() = 0;
  // Reaps the first process if it has ended (non-blocking) and reports OOM kills.
  virtual SandboxExit Exit() = 0;
  // Peak memory use so far, in bytes (cgroup high-water mark).
  virtual uint64_t PeakMemoryBytes() = 0;
  // Count of OOM kills observed in the sandbox's memory cgroup.
  virtual uint64_t OomKills() = 0;
};

class SandboxFactory {
 public:
  virtual ~SandboxFactory() = default;
  // Creates and starts a sandbox. Returns once argv[0] has been exec'd (or failed to).
  virtual Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) = 0;
  // Removes what sandboxes of an earlier run of this factory left behind (after a crash):
  // processes, mounts and cgroups. Called once at startup.
  virtual Status SweepLeftovers() = 0;
  // Kills what is left of this factory's sandboxes and removes its host state (cgroup
  // directories). Called once at shutdown, after every Sandbox has been destroyed.
  virtual Status RemoveAll() = 0;
};

}  // namespace kindling
