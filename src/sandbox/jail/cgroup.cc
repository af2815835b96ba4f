// SandboxCgroups: composes the v1 and v2 mechanics (cgroup_v1.cc, cgroup_v2.cc) per CgroupLayout.
#include "sandbox/jail/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <sstream>

#include "sandbox/jail/sysutil.h"

namespace kindling::jail {
namespace {

bool HasToken(const std::string& csv, const std::string& token) {
  std::stringstream ss(csv);
  std::string t;
  while (std::getline(ss, t, ',')) {
    if (t == token) return true;
  }
  return false;
}

bool HasWord(const std::string& text, const std::string& word) {
  std::stringstream ss(text);
  std::string t;
  while (ss >> t) {
    if (t == word) return true;
  }
  return false;
}

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

Status MakeCgroupDir(const std::string& dir, bool exist_ok) {
  if (mkdir(dir.c_str(), 0755) != 0) {
    if (errno == EEXIST && exist_ok) return Status::Ok();
    return Status::Errno("mkdir " + dir);
  }
  return Status::Ok();
}

void SleepUs(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  nanosleep(&ts, nullptr);
}

}  // namespace

Result<CgroupLayout> CgroupLayout::Probe(const std::string& instance) {
  CgroupLayout l;
  std::string mounts;
  if (Status s = ReadCtl("/proc/self/mounts", &mounts); !s.ok()) return s;
  std::stringstream ss(mounts);
  std::string line;
  std::string v2_candidate;
  while (std::getline(ss, line)) {
    std::stringstream ls(line);
    std::string dev, dir, type, opts;
    ls >> dev >> dir >> type >> opts;
    if (type == "cgroup2") {
      // A pure-v2 host mounts it at /sys/fs/cgroup; prefer that over a hybrid's "unified".
      if (v2_candidate.empty() || dir == "/sys/fs/cgroup") v2_candidate = dir;
    } else if (type == "cgroup") {
      if (HasToken(opts, "memory") && l.v1_memory.empty()) l.v1_memory = dir;
      if (HasToken(opts, "cpu") && l.v1_cpu.empty()) l.v1_cpu = dir;
      if (HasToken(opts, "pids") && l.v1_pids.empty()) l.v1_pids = dir;
      if (HasToken(opts, "freezer") && l.v1_freezer.empty()) l.v1_freezer = dir;
    }
  }

  if (!v2_candidate.empty()) {
    std::string inst = v2_candidate + "/" + instance;
    if (MakeCgroupDir(inst, true).ok()) {
      l.v2_root = v2_candidate;
      std::string ctrls;
      ReadCtl(v2_candidate + "/cgroup.controllers", &ctrls);
      bool mem = HasWord(ctrls, "memory"), cpu = HasWord(ctrls, "cpu"), pids = HasWord(ctrls, "pids");
      if (mem || cpu || pids) {
        // Delegate to <instance> and from it to the sandboxes. Failure just means "use v1".
        Status root_ok = v2::EnableControllers(v2_candidate, mem, cpu, pids);
        Status inst_ok = v2::EnableControllers(inst, mem, cpu, pids);
        if (root_ok.ok() && inst_ok.ok()) {
          l.v2_memory = mem;
          l.v2_cpu = cpu;
          l.v2_pids = pids;
        }
      }
      l.v2_freeze = Exists(inst + "/cgroup.freeze");
      l.v2_kill = Exists(inst + "/cgroup.kill");
    }
  }
  if (l.v2_memory) l.v1_memory.clear();
  if (l.v2_cpu) l.v1_cpu.clear();
  if (l.v2_pids) l.v1_pids.clear();
  if (l.v2_freeze) l.v1_freezer.clear();
  for (std::string* d : {&l.v1_memory, &l.v1_cpu, &l.v1_pids, &l.v1_freezer}) {
    if (d->empty()) continue;
    if (Status s = MakeCgroupDir(*d + "/" + instance, true); !s.ok()) return s;
  }
  if (!l.v1_memory.empty()) {
    l.v1_memsw = Exists(l.v1_memory + "/" + instance + "/memory.memsw.limit_in_bytes");
  }
  if (l.v1_memory.empty() && !l.v2_memory) return Status::Error("no memory cgroup controller found");
  return l;
}

std::vector<std::string> CgroupLayout::InstanceDirs(const std::string& instance) const {
  std::vector<std::string> dirs;
  for (const std::string* d : {&v2_root, &v1_memory, &v1_cpu, &v1_pids, &v1_freezer}) {
    if (!d->empty()) dirs.push_back(*d + "/" + instance);
  }
  return dirs;
}

std::string CgroupLayout::Describe() const {
  std::string s = "v2=" + (v2_root.empty() ? std::string("none") : v2_root);
  s += std::string(" v2ctl=") + (v2_memory ? "m" : "") + (v2_cpu ? "c" : "") + (v2_pids ? "p" : "");
  s += std::string(" freeze=") + (v2_freeze ? "v2" : v1_freezer.empty() ? "none" : "v1");
  s += std::string(" kill=") + (v2_kill ? "v2" : "signal");
  s += " v1:";
  if (!v1_memory.empty()) s += v1_memsw ? " memory(+memsw)" : " memory";
  if (!v1_cpu.empty()) s += " cpu";
  if (!v1_pids.empty()) s += " pids";
  if (!v1_freezer.empty()) s += " freezer";
  return s;
}

Result<std::unique_ptr<SandboxCgroups>> SandboxCgroups::Create(const CgroupLayout& layout,
                                                               const std::string& instance,
                                                               const std::string& id,
                                                               const CgroupLimits& limits) {
  std::unique_ptr<SandboxCgroups> cg(new SandboxCgroups());
  cg->layout_ = &layout;
  auto fail = [&](Status s) -> Result<std::unique_ptr<SandboxCgroups>> {
    cg->Remove();
    return s;
  };
  const std::string leaf = "/" + instance + "/" + id;
  if (!layout.v2_root.empty()) {
    std::string dir = layout.v2_root + leaf;
    if (Status s = MakeCgroupDir(dir, false); !s.ok()) return fail(s);
    cg->v2_dir_ = dir;
    if (Status s = v2::ApplyLimits(dir, limits, layout); !s.ok()) return fail(s);
    cg->v2_fd_ = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg->v2_fd_ < 0) return fail(Status::Errno("open " + dir));
  }
  if (!layout.v1_memory.empty()) {
    std::string dir = layout.v1_memory + leaf;
    if (Status s = MakeCgroupDir(dir, false); !s.ok()) return fail(s);
    cg->memory_dir_ = dir;
    if (Status s = v1::ApplyMemory(dir, limits.memory_bytes, layout.v1_memsw); !s.ok()) return fail(s);
  }
  if (!layout.v1_cpu.empty()) {
    std::string dir = layout.v1_cpu + leaf;
    if (Status s = MakeCgroupDir(dir, false); !s.ok()) return fail(s);
    cg->cpu_dir_ = dir;
    if (Status s = v1::ApplyCpu(dir, limits.cpu_millis, limits.cpu_weight); !s.ok()) return fail(s);
  }
  if (!layout.v1_pids.empty()) {
    std::string dir = layout.v1_pids + leaf;
    if (Status s = MakeCgroupDir(dir, false); !s.ok()) return fail(s);
    cg->pids_dir_ = dir;
    if (Status s = v1::ApplyPids(dir, limits.pids_max); !s.ok()) return fail(s);
  }
  if (!layout.v1_freezer.empty()) {
    std::string dir = layout.v1_freezer + leaf;
    if (Status s = MakeCgroupDir(dir, false); !s.ok()) return fail(s);
    cg->freezer_dir_ = dir;
  }
  return cg;
}

SandboxCgroups::~SandboxCgroups() {
  if (v2_fd_ >= 0) close(v2_fd_);
}

Status SandboxCgroups::Join(pid_t pid, bool cloned_into_v2) {
  if (!v2_dir_.empty() && !cloned_into_v2) {
    if (Status s = v2::AddProcess(v2_dir_, pid); !s.ok()) return s;
  }
  for (const std::string* d : {&memory_dir_, &cpu_dir_, &pids_dir_, &freezer_dir_}) {
    if (d->empty()) continue;
    if (Status s = v1::AddProcess(*d, pid); !s.ok()) return s;
  }
  return Status::Ok();
}

Status SandboxCgroups::Freeze() {
  if (layout_->v2_freeze && !v2_dir_.empty()) return v2::SetFrozen(v2_dir_, true);
  if (!freezer_dir_.empty()) {
    Status s = v1::SetFrozen(freezer_dir_, true);
    if (s.ok()) frozen_v1_ = true;
    return s;
  }
  return Status::Error("no freezer available");
}

Status SandboxCgroups::Thaw() {
  if (layout_->v2_freeze && !v2_dir_.empty()) return v2::SetFrozen(v2_dir_, false);
  if (!freezer_dir_.empty()) {
    Status s = v1::SetFrozen(freezer_dir_, false);
    if (s.ok()) frozen_v1_ = false;
    return s;
  }
  return Status::Error("no freezer available");
}

Status SandboxCgroups::Kill() {
  if (!v2_dir_.empty() && layout_->v2_kill) return v2::Kill(v2_dir_);
  // Frozen v1 tasks do not act on SIGKILL until thawed.
  if (!freezer_dir_.empty() && frozen_v1_) Thaw();
  for (const std::string* d : {&v2_dir_, &pids_dir_, &memory_dir_, &cpu_dir_}) {
    if (!d->empty()) return KillAllListed(*d);
  }
  return Status::Ok();
}

bool SandboxCgroups::Empty() {
  for (const std::string* d : {&v2_dir_, &memory_dir_, &cpu_dir_, &pids_dir_, &freezer_dir_}) {
    if (!d->empty() && !ReadPids(*d + "/cgroup.procs").empty()) return false;
  }
  return true;
}

uint64_t SandboxCgroups::PeakMemoryBytes() {
  if (layout_->v2_memory) return v2::PeakMemory(v2_dir_);
  if (!memory_dir_.empty()) return v1::PeakMemory(memory_dir_);
  return 0;
}

uint64_t SandboxCgroups::OomKills() {
  if (layout_->v2_memory) return v2::OomKills(v2_dir_);
  if (!memory_dir_.empty()) return v1::OomKills(memory_dir_);
  return 0;
}

Status SandboxCgroups::Remove() {
  if (!Empty()) Kill();
  Status result;
  for (std::string* d : {&v2_dir_, &memory_dir_, &cpu_dir_, &pids_dir_, &freezer_dir_}) {
    if (d->empty()) continue;
    Status s = RemoveCgroupDir(*d);
    if (!s.ok() && result.ok()) result = s;
    if (s.ok()) d->clear();
  }
  if (v2_fd_ >= 0) {
    close(v2_fd_);
    v2_fd_ = -1;
  }
  return result;
}

std::vector<pid_t> ReadPids(const std::string& procs_file) {
  std::vector<pid_t> pids;
  std::string text;
  if (!ReadCtl(procs_file, &text).ok()) return pids;
  const char* p = text.c_str();
  while (*p) {
    char* end;
    long v = strtol(p, &end, 10);
    if (end == p) break;
    if (v > 0) pids.push_back(static_cast<pid_t>(v));
    p = end;
    while (*p == '\n') ++p;
  }
  return pids;
}

Status KillAllListed(const std::string& dir) {
  for (int i = 0; i < 1000; ++i) {
    std::vector<pid_t> pids = ReadPids(dir + "/cgroup.procs");
    if (pids.empty()) return Status::Ok();
    for (pid_t p : pids) kill(p, SIGKILL);
    SleepUs(i < 20 ? 100 : 1000);
  }
  return Status::Error("processes survive SIGKILL in " + dir);
}

Status RemoveCgroupDir(const std::string& dir) {
  for (int i = 0;; ++i) {
    if (rmdir(dir.c_str()) == 0 || errno == ENOENT) return Status::Ok();
    if (errno != EBUSY || i >= 1000) return Status::Errno("rmdir " + dir);
    SleepUs(i < 20 ? 100 : 1000);
  }
}

Status SweepCgroupChildren(const std::string& dir, bool v2_kill) {
  DIR* d = opendir(dir.c_str());
  if (!d) return errno == ENOENT ? Status::Ok() : Status::Errno("opendir " + dir);
  std::vector<std::string> children;
  while (struct dirent* e = readdir(d)) {
    if (e->d_type != DT_DIR || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    children.push_back(dir + "/" + e->d_name);
  }
  closedir(d);
  Status result;
  for (const std::string& c : children) {
    Status s = SweepCgroupChildren(c, v2_kill);
    if (v2_kill && Exists(c + "/cgroup.kill")) WriteCtl(c + "/cgroup.kill", "1");
    if (Exists(c + "/freezer.state")) WriteCtl(c + "/freezer.state", "THAWED");
    if (Exists(c + "/cgroup.freeze")) WriteCtl(c + "/cgroup.freeze", "0");
    if (s.ok()) s = KillAllListed(c);
    if (s.ok()) s = RemoveCgroupDir(c);
    if (!s.ok() && result.ok()) result = s;
  }
  return result;
}

}  // namespace kindling::jail
