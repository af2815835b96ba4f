// cgroup v2: one unified hierarchy. On this fleet it has no controllers (they are all on v1), but it
// still provides clone3(CLONE_INTO_CGROUP) placement, cgroup.freeze (freeze 12-17 us, thaw 8 us,
// killable while frozen) and cgroup.kill. On a pure-v2 host it also carries the limits.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <string>

#include "sandbox/jail/cgroup.h"
#include "sandbox/jail/sysutil.h"

namespace kindling::jail::v2 {

Status EnableControllers(const std::string& dir, bool memory, bool cpu, bool pids) {
  std::string req;
  if (memory) req += "+memory ";
  if (cpu) req += "+cpu ";
  if (pids) req += "+pids ";
  if (req.empty()) return Status::Ok();
  return WriteCtl(dir + "/cgroup.subtree_control", req);
}

Status ApplyLimits(const std::string& dir, const CgroupLimits& l, const CgroupLayout& layout) {
  if (layout.v2_memory && l.memory_bytes != 0) {
    if (Status s = WriteCtl(dir + "/memory.max", std::to_string(l.memory_bytes)); !s.ok()) return s;
    // Swap is part of the hard limit: none at all (memory.swap.max is absent without swap support).
    if (Status s = WriteCtl(dir + "/memory.swap.max", "0"); !s.ok() && s.err() != ENOENT) return s;
  }
  if (layout.v2_cpu) {
    if (l.cpu_weight != 0) {
      // v1 shares (2..262144) to v2 weight (1..10000), the conversion runc and crun use.
      uint64_t shares = std::clamp<uint64_t>(l.cpu_weight, 2, 262144);
      uint64_t weight = 1 + ((shares - 2) * 9999) / 262142;
      if (Status s = WriteCtl(dir + "/cpu.weight", std::to_string(weight)); !s.ok()) return s;
    }
    if (l.cpu_millis != 0) {
      uint64_t quota = std::max<uint64_t>(1000, uint64_t{l.cpu_millis} * 100);
      if (Status s = WriteCtl(dir + "/cpu.max", std::to_string(quota) + " 100000"); !s.ok())
        return s;
    }
  }
  if (layout.v2_pids && l.pids_max != 0) {
    if (Status s = WriteCtl(dir + "/pids.max", std::to_string(l.pids_max)); !s.ok()) return s;
  }
  return Status::Ok();
}

Status AddProcess(const std::string& dir, pid_t pid) {
  return WriteCtl(dir + "/cgroup.procs", std::to_string(pid));
}

Status SetFrozen(const std::string& dir, bool frozen) {
  if (Status s = WriteCtl(dir + "/cgroup.freeze", frozen ? "1" : "0"); !s.ok()) return s;
  if (!frozen) return Status::Ok();  // thaw takes effect at once
  // Freezing is asynchronous: wait (bounded) until cgroup.events says "frozen 1".
  for (int i = 0; i < 20000; ++i) {
    std::string events;
    if (Status s = ReadCtl(dir + "/cgroup.events", &events); !s.ok()) return s;
    if (ParseKeyedU64(events, "frozen") == 1) return Status::Ok();
    if (ParseKeyedU64(events, "populated") == 0) return Status::Ok();  // nothing to freeze
    struct timespec ts = {0, i < 100 ? 10 * 1000 : 200 * 1000};
    nanosleep(&ts, nullptr);
  }
  return Status::Error("cgroup.freeze " + dir + ": not frozen after waiting");
}

Status Kill(const std::string& dir) { return WriteCtl(dir + "/cgroup.kill", "1"); }

uint64_t OomKills(const std::string& dir) {
  std::string text;
  if (!ReadCtl(dir + "/memory.events", &text).ok()) return 0;
  return ParseKeyedU64(text, "oom_kill");
}

uint64_t PeakMemory(const std::string& dir) {
  std::string text;
  if (!ReadCtl(dir + "/memory.peak", &text).ok()) return 0;
  return strtoull(text.c_str(), nullptr, 10);
}

}  // namespace kindling::jail::v2
