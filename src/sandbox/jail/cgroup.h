// The cgroups of one sandbox, across the hierarchies this host offers.
//
// Hosts differ: a pure cgroup2 host has every controller on /sys/fs/cgroup; this fleet is hybrid,
// with the v1 controllers (memory, cpu, pids, freezer) each on /sys/fs/cgroup/<ctrl> and an empty,
// controller-less cgroup2 at /sys/fs/cgroup/unified. CgroupLayout records what was found (probed
// once per factory); SandboxCgroups places one sandbox in every hierarchy and takes each job from
// the best place:
//   limits        v2 controllers when enabled there, else v1 memory/cpu/pids   (cgroup_v1.cc/_v2.cc)
//   placement     clone3(CLONE_INTO_CGROUP) into the v2 dir (no cgroup.procs write), then v1 joins
//   freeze/thaw   v2 cgroup.freeze (also on the controller-less hierarchy), else the v1 freezer
//   kill          v2 cgroup.kill, else SIGKILL every pid of cgroup.procs (v1 frozen: thaw first)
// Directory names: <hierarchy>/<instance>/<sandbox id>. Only <instance> is ever swept.
//
// Thread safety: a SandboxCgroups is used by one thread at a time; CgroupLayout is immutable.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace kindling::jail {

struct CgroupLimits {
  uint64_t memory_bytes = 0;  // memory + swap hard limit; 0 = none
  uint32_t cpu_millis = 0;    // CFS quota in thousandths of a CPU per 100 ms period; 0 = none
  uint32_t cpu_weight = 0;    // v1 cpu.shares scale (2..262144); 0 = default
  uint32_t pids_max = 0;      // 0 = none
};

struct CgroupLayout {
  // cgroup2 mount usable for sandboxes ("" when none): /sys/fs/cgroup/unified or /sys/fs/cgroup.
  std::string v2_root;
  bool v2_memory = false, v2_cpu = false, v2_pids = false;  // controllers delegated to <instance>
  bool v2_freeze = false;  // cgroup.freeze exists (5.2+)
  bool v2_kill = false;    // cgroup.kill exists (5.14+)
  // v1 controller mount points ("" when that controller is not mounted as v1).
  std::string v1_memory, v1_cpu, v1_pids, v1_freezer;
  bool v1_memsw = false;  // memory.memsw.* present (swap accounting)

  // Finds the hierarchies, creates <root>/<instance> in each one used and enables the v2
  // controllers for it when the host has them on cgroup2.
  static Result<CgroupLayout> Probe(const std::string& instance);
  // Every directory that may hold this instance's sandbox cgroups.
  std::vector<std::string> InstanceDirs(const std::string& instance) const;
  std::string Describe() const;
};

class SandboxCgroups {
 public:
  // Creates the sandbox's dirs in every hierarchy and applies the limits. On error nothing is left.
  static Result<std::unique_ptr<SandboxCgroups>> Create(const CgroupLayout& layout,
                                                        const std::string& instance,
                                                        const std::string& id,
                                                        const CgroupLimits& limits);
  ~SandboxCgroups();  // does not remove anything: call Remove()

  // O_PATH fd of the v2 dir for clone3 CLONE_INTO_CGROUP, or -1 (then Join also writes v2).
  int clone_into_fd() const { return v2_fd_; }
  // Moves pid into every hierarchy it was not cloned into (v1 cgroup.procs writes).
  // Cost on this fleet (kernel 6.18): each write takes cgroup_threadgroup_rwsem for writing; when
  // no writer came by for a while, that waits for an RCU grace period: 5-16 ms for the first
  // sandbox after 300 ms idle, ~0.03 ms per write when warm. The cgroup2 "favordynmods" mount
  // option keeps the rwsem in its slow-reader mode and removes the wait (JailOptions). The child
  // joining by itself would not help (same lock, same wait, still before execve).
  Status Join(pid_t pid, bool cloned_into_v2);

  Status Freeze();
  Status Thaw();
  // SIGKILLs every process (works while frozen). Does not wait.
  Status Kill();
  bool Empty();              // no process left in any of the sandbox's cgroups
  uint64_t PeakMemoryBytes();
  uint64_t OomKills();
  // Kills what is left, then removes every dir (retrying briefly while tasks finish exiting).
  Status Remove();

 private:
  SandboxCgroups() = default;
  const CgroupLayout* layout_ = nullptr;
  std::string v2_dir_;                       // "" when no v2
  int v2_fd_ = -1;
  std::string memory_dir_, cpu_dir_, pids_dir_, freezer_dir_;  // v1 dirs ("" when unused)
  bool frozen_v1_ = false;
};

// ---- per-hierarchy mechanics (cgroup_v1.cc / cgroup_v2.cc) ----
namespace v1 {
Status ApplyMemory(const std::string& dir, uint64_t bytes, bool memsw);
Status ApplyCpu(const std::string& dir, uint32_t cpu_millis, uint32_t weight);
Status ApplyPids(const std::string& dir, uint32_t pids_max);
Status AddProcess(const std::string& dir, pid_t pid);
Status SetFrozen(const std::string& freezer_dir, bool frozen);  // waits for FROZEN / THAWED
uint64_t OomKills(const std::string& memory_dir);
uint64_t PeakMemory(const std::string& memory_dir);
}  // namespace v1

namespace v2 {
Status EnableControllers(const std::string& dir, bool memory, bool cpu, bool pids);
Status ApplyLimits(const std::string& dir, const CgroupLimits& limits, const CgroupLayout& layout);
Status AddProcess(const std::string& dir, pid_t pid);
Status SetFrozen(const std::string& dir, bool frozen);  // cgroup.freeze; waits for "frozen 1"
Status Kill(const std::string& dir);                    // cgroup.kill
uint64_t OomKills(const std::string& dir);
uint64_t PeakMemory(const std::string& dir);
}  // namespace v2

// Shared helpers.
std::vector<pid_t> ReadPids(const std::string& procs_file);  // cgroup.procs
// SIGKILLs every pid listed until the cgroup is empty or ~1 s passed.
Status KillAllListed(const std::string& dir);
// rmdir, retrying for up to ~1 s on EBUSY (tasks still exiting). ENOENT is success.
Status RemoveCgroupDir(const std::string& dir);
// Kills and removes every cgroup below dir (depth first), leaving dir itself.
Status SweepCgroupChildren(const std::string& dir, bool v2_kill);

}  // namespace kindling::jail
