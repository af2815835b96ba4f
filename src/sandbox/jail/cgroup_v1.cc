// cgroup v1: one hierarchy per controller (memory, cpu, pids, freezer).
//
// Facts from this fleet (kernel 6.18, hybrid): memory + memsw, CFS quota and pids limits all apply
// to processes in a user namespace. OOM kills are counted by `oom_kill` in memory.oom_control
// (memory.failcnt stays 0 when memsw is limited). A frozen v1 task ignores SIGKILL until thawed.
#include <fcntl.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>

#include "sandbox/jail/cgroup.h"
#include "sandbox/jail/sysutil.h"

namespace kindling::jail::v1 {

Status ApplyMemory(const std::string& dir, uint64_t bytes, bool memsw) {
  if (bytes == 0) return Status::Ok();
  std::string v = std::to_string(bytes);
  // memory.limit_in_bytes first: memsw must never be below it.
  if (Status s = WriteCtl(dir + "/memory.limit_in_bytes", v); !s.ok()) return s;
  if (memsw) {
    if (Status s = WriteCtl(dir + "/memory.memsw.limit_in_bytes", v); !s.ok()) return s;
  }
  return Status::Ok();
}

Status ApplyCpu(const std::string& dir, uint32_t cpu_millis, uint32_t weight) {
  if (weight != 0) {
    if (Status s = WriteCtl(dir + "/cpu.shares", std::to_string(weight)); !s.ok()) return s;
  }
  if (cpu_millis != 0) {
    // 100 ms period (the default); quota = cpu_millis/1000 of a CPU, at least 1 ms.
    uint64_t quota = std::max<uint64_t>(1000, uint64_t{cpu_millis} * 100);
    if (Status s = WriteCtl(dir + "/cpu.cfs_period_us", "100000"); !s.ok()) return s;
    if (Status s = WriteCtl(dir + "/cpu.cfs_quota_us", std::to_string(quota)); !s.ok()) return s;
  }
  return Status::Ok();
}

Status ApplyPids(const std::string& dir, uint32_t pids_max) {
  if (pids_max == 0) return Status::Ok();
  return WriteCtl(dir + "/pids.max", std::to_string(pids_max));
}

Status AddProcess(const std::string& dir, pid_t pid) {
  return WriteCtl(dir + "/cgroup.procs", std::to_string(pid));
}

Status SetFrozen(const std::string& dir, bool frozen) {
  const char* want = frozen ? "FROZEN" : "THAWED";
  if (Status s = WriteCtl(dir + "/freezer.state", want); !s.ok()) return s;
  // FREEZING may be reported while tasks are being stopped; wait (bounded) for the final state.
  for (int i = 0; i < 2000; ++i) {
    std::string state;
    if (Status s = ReadCtl(dir + "/freezer.state", &state); !s.ok()) return s;
    if (state.compare(0, strlen(want), want) == 0) return Status::Ok();
    struct timespec ts = {0, 50 * 1000};
    nanosleep(&ts, nullptr);
  }
  return Status::Error("freezer " + dir + ": state did not reach " + want);
}

uint64_t OomKills(const std::string& dir) {
  std::string text;
  if (!ReadCtl(dir + "/memory.oom_control", &text).ok()) return 0;
  return ParseKeyedU64(text, "oom_kill");
}

uint64_t PeakMemory(const std::string& dir) {
  std::string text;
  if (!ReadCtl(dir + "/memory.max_usage_in_bytes", &text).ok()) return 0;
  return strtoull(text.c_str(), nullptr, 10);
}

}  // namespace kindling::jail::v1
