// The jail factory and sandbox: clone3 and the child's setup, in the order documented in jail.h.
#include "sandbox/jail/jail.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "common/files.h"
#include "init/protocol.h"
#include "sandbox/jail/capabilities.h"
#include "sandbox/jail/cgroup.h"
#include "sandbox/jail/mounts.h"
#include "sandbox/jail/seccomp_policy.h"
#include "sandbox/jail/sysutil.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace kindling {
namespace jail {
namespace {

// ---- child setup steps, reported to the parent on failure ----
enum Step : int32_t {
  kStepWaitParent = 1,
  kStepSetgroups,
  kStepSetresgid,
  kStepSetresuid,
  kStepRaiseCaps,
  kStepCgroupNs,
  kStepMounts,
  kStepHostname,
  kStepLoopback,
  kStepChdir,
  kStepFds,
  kStepNoNewPrivs,
  kStepDropCaps,
  kStepSeccomp,
  kStepExec,
};

const char* StepName(int32_t step) {
  switch (step) {
    case kStepWaitParent: return "wait for parent";
    case kStepSetgroups: return "setgroups";
    case kStepSetresgid: return "setresgid(993)";
    case kStepSetresuid: return "setresuid(993)";
    case kStepRaiseCaps: return "raise capabilities in the user namespace";
    case kStepCgroupNs: return "unshare cgroup namespace";
    case kStepMounts: return "mounts";
    case kStepHostname: return "sethostname";
    case kStepLoopback: return "bring up lo";
    case kStepChdir: return "chdir /var/task";
    case kStepFds: return "set up fds";
    case kStepNoNewPrivs: return "no_new_privs";
    case kStepDropCaps: return "drop capabilities";
    case kStepSeccomp: return "install seccomp filter";
    case kStepExec: return "execve";
  }
  return "unknown step";
}

// Byte layout of the failure report on the error pipe: three native-endian int32.
struct ChildError {
  int32_t step;
  int32_t err;
  int32_t op;  // mount plan index for kStepMounts, else -1
};

// Everything the child needs, prepared by the parent. The child reads it and makes system calls;
// it never allocates (the daemon is multithreaded: malloc's locks may be held by other threads).
struct ChildArgs {
  const MountPlan* plan;
  const char* const* argv;
  const char* const* envp;
  sock_fprog seccomp;
  int sync_fd;  // read end: one byte once uid/gid maps and cgroups are in place
  int err_fd;   // write end, O_CLOEXEC
  int ctl_fd;   // sandbox end of the control socket -> fd 3
  bool new_net;
  int last_cap;
  int trace_fd;  // -1, or a pipe for {step, CLOCK_MONOTONIC ns} records (KINDLING_JAIL_TRACE)
};

struct TraceRecord {
  int32_t step;
  int64_t ns;
};

// Async-signal-safe: records that `step` is done (only when tracing).
inline void Mark(const ChildArgs& a, int32_t step) {
  if (a.trace_fd < 0) return;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  TraceRecord r{step, int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec};
  ssize_t unused = write(a.trace_fd, &r, sizeof r);
  (void)unused;
}

[[noreturn]] void ChildFail(int err_fd, int32_t step, int err, int32_t op = -1) {
  ChildError e{step, err, op};
  ssize_t unused = write(err_fd, &e, sizeof e);
  (void)unused;
  _exit(127);
}

// Moves fd to >= 10 (keeping O_CLOEXEC) so that dup2 onto 0..3 cannot clobber it.
int RaiseFd(int fd) {
  if (fd >= 10) return fd;
  int n = fcntl(fd, F_DUPFD_CLOEXEC, 10);
  return n < 0 ? fd : n;
}

int LoopbackUp() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return errno;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  int e = 0;
  if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) {
    e = errno;
  } else {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) e = errno;
  }
  close(s);
  return e;
}

// The sandbox's first process, between clone3 and execve. Async-signal-safe code only.
[[noreturn]] __attribute__((noinline)) void ChildMain(const ChildArgs& a) {
  int err_fd = RaiseFd(a.err_fd);
  int ctl_fd = RaiseFd(a.ctl_fd);

  // Signal state: the parent blocked everything around clone3; handlers it installed must not
  // run here, and ignored signals (SIGPIPE in a daemon) must not leak into the runtime.
  for (int sig = 1; sig < _NSIG; ++sig) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, nullptr);  // EINVAL for SIGKILL/SIGSTOP and libc-internal ones
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  // No PR_SET_PDEATHSIG: it fires when the creating *thread* exits, and kindlingd's threads come
  // and go. A daemon crash leaves sandboxes running; SweepLeftovers kills them.

  // Keep the permitted set across the uid switch below (applies to this userns only).
  if (int e = KeepCapsAcrossSetuid()) ChildFail(err_fd, kStepRaiseCaps, e);

  // Wait until the parent wrote our uid/gid maps and placed us in the cgroups.
  char c;
  ssize_t r;
  do {
    r = read(a.sync_fd, &c, 1);
  } while (r < 0 && errno == EINTR);
  if (r != 1) _exit(126);  // the parent gave up on us
  close(a.sync_fd);
  Mark(a, kStepWaitParent);

  // Until these three calls we are host uid 0 with root's groups: host root files are ours.
  // Raw system calls: glibc's set*id wrappers broadcast to threads this child does not have.
  if (syscall(SYS_setgroups, 0, nullptr) != 0) ChildFail(err_fd, kStepSetgroups, errno);
  if (syscall(SYS_setresgid, kSandboxGid, kSandboxGid, kSandboxGid) != 0)
    ChildFail(err_fd, kStepSetresgid, errno);
  if (syscall(SYS_setresuid, kSandboxUid, kSandboxUid, kSandboxUid) != 0)
    ChildFail(err_fd, kStepSetresuid, errno);
  if (int e = RaiseEffectiveCaps()) ChildFail(err_fd, kStepRaiseCaps, e);

  // Now that the parent placed us, make our cgroups the root of what /proc/self/cgroup shows.
  if (unshare(CLONE_NEWCGROUP) != 0) ChildFail(err_fd, kStepCgroupNs, errno);
  Mark(a, kStepCgroupNs);

  int op = -1;
  if (int e = ExecuteMountPlan(*a.plan, &op)) ChildFail(err_fd, kStepMounts, e, op);
  Mark(a, kStepMounts);

  if (sethostname("localhost", 9) != 0) ChildFail(err_fd, kStepHostname, errno);
  if (a.new_net) {
    if (int e = LoopbackUp()) ChildFail(err_fd, kStepLoopback, e);
  }
  if (chdir("/var/task") != 0) ChildFail(err_fd, kStepChdir, errno);
  Mark(a, kStepLoopback);

  // fds: 0-2 /dev/null, 3 the control socket; everything else closes at execve.
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) ChildFail(err_fd, kStepFds, errno);
  for (int fd = 0; fd < 3; ++fd) {
    if (devnull != fd && dup2(devnull, fd) < 0) ChildFail(err_fd, kStepFds, errno);
    if (devnull == fd && fcntl(fd, F_SETFD, 0) != 0) ChildFail(err_fd, kStepFds, errno);
  }
  if (dup2(ctl_fd, protocol::kControlFd) < 0) ChildFail(err_fd, kStepFds, errno);
  if (syscall(SYS_close_range, protocol::kControlFd + 1, ~0U, CLOSE_RANGE_CLOEXEC) != 0)
    ChildFail(err_fd, kStepFds, errno);

  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ChildFail(err_fd, kStepNoNewPrivs, errno);
  if (int e = DropAllCapabilities(a.last_cap)) ChildFail(err_fd, kStepDropCaps, e);
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &a.seccomp) != 0)
    ChildFail(err_fd, kStepSeccomp, errno);
  Mark(a, kStepSeccomp);

  execve(a.argv[0], const_cast<char* const*>(a.argv), const_cast<char* const*>(a.envp));
  ChildFail(err_fd, kStepExec, errno);
}

// ---- parent side ----

bool ValidId(const std::string& id) {
  if (id.empty() || id.size() > 48) return false;
  for (char ch : id) {
    if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) return false;
  }
  return true;
}

bool ValidInstance(const std::string& s) {
  if (s.empty() || s.size() > 64 || s[0] == '.') return false;
  for (char ch : s) {
    if (!(isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.')) return false;
  }
  return true;
}

// What a factory learned about the host, shared with its sandboxes (which may outlive it).
struct JailHost {
  JailOptions options;
  Status init;  // non-OK: the host cannot run jails; every Create returns it
  CgroupLayout cgroups;
  RootTemplate host_root;
  SeccompProgram seccomp;
  std::string root_dir;  // state_dir/root: the mount point of every sandbox's tmpfs root
  int last_cap = 40;
  std::string favor_dynmods;  // what EnableFavorDynmods did
  std::atomic<bool> clone_into_cgroup{true};  // cleared if this kernel refuses CLONE_INTO_CGROUP

  std::mutex mu;
  std::map<std::string, RootTemplate> image_roots;  // probed root file systems, by host path
  std::vector<bool> slots;  // uid slots in use
  uint32_t next_slot = 0;

  // The template of a root file system other than the host's (a runtime image: its contents never
  // change while it is mounted at that path, so one probe serves every sandbox).
  RootTemplate RootOf(const std::string& source) {
    std::lock_guard lock(mu);
    auto it = image_roots.find(source);
    if (it == image_roots.end()) it = image_roots.emplace(source, RootTemplate::Probe(source)).first;
    return it->second;
  }

  Result<uint32_t> AcquireSlot() {
    std::lock_guard<std::mutex> lock(mu);
    if (slots.size() < options.uid_count) slots.resize(options.uid_count, false);
    for (uint32_t i = 0; i < options.uid_count; ++i) {
      uint32_t s = (next_slot + i) % options.uid_count;
      if (!slots[s]) {
        slots[s] = true;
        next_slot = (s + 1) % options.uid_count;
        return s;
      }
    }
    return Status::Error("all " + std::to_string(options.uid_count) + " sandbox uids are in use");
  }
  void ReleaseSlot(uint32_t s) {
    std::lock_guard<std::mutex> lock(mu);
    if (s < slots.size()) slots[s] = false;
  }
};

// Sets "favordynmods" on the cgroup2 superblock mounted at v2_root (see JailOptions). Uses the new
// mount API (fspick + fsconfig reconfigure) so the mount's own flags (nosuid, nodev, ...) are left
// exactly as they are. Returns "on" (already), "enabled", or why not.
std::string EnableFavorDynmods(const std::string& v2_root) {
  if (v2_root.empty()) return "no cgroup2";
  std::string features;
  if (!ReadCtl("/sys/kernel/cgroup/features", &features).ok() ||
      features.find("favordynmods") == std::string::npos)
    return "unsupported by kernel";
  std::string mounts;
  ReadCtl("/proc/self/mounts", &mounts);
  size_t at = mounts.find(" " + v2_root + " cgroup2 ");
  if (at != std::string::npos) {
    size_t eol = mounts.find('\n', at);
    if (mounts.substr(at, eol - at).find("favordynmods") != std::string::npos) return "on";
  }
  UniqueFd fs(static_cast<int>(syscall(SYS_fspick, AT_FDCWD, v2_root.c_str(), FSPICK_CLOEXEC)));
  if (!fs.valid()) return std::string("fspick: ") + strerror(errno);
  if (syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_FLAG, "favordynmods", nullptr, 0) != 0)
    return std::string("fsconfig favordynmods: ") + strerror(errno);
  if (syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_RECONFIGURE, nullptr, nullptr, 0) != 0)
    return std::string("fsconfig reconfigure: ") + strerror(errno);
  return "enabled";
}

int WaitStatusFrom(const siginfo_t& si) {
  switch (si.si_code) {
    case CLD_EXITED: return (si.si_status & 0xff) << 8;
    case CLD_KILLED: return si.si_status & 0x7f;
    case CLD_DUMPED: return (si.si_status & 0x7f) | 0x80;
    default: return 0;
  }
}

class JailSandbox final : public Sandbox {
 public:
  JailSandbox(std::shared_ptr<JailHost> host, std::string id, uint32_t slot, pid_t pid,
              UniqueFd pidfd, UniqueFd ctl, std::unique_ptr<SandboxCgroups> cgroups)
      : host_(std::move(host)), id_(std::move(id)), slot_(slot), pid_(pid),
        pidfd_(std::move(pidfd)), ctl_(std::move(ctl)), cgroups_(std::move(cgroups)) {}

  ~JailSandbox() override {
    Kill();
    // The first process is PID 1 of the sandbox's pid namespace: once it is reaped, the kernel has
    // killed and waited for every other process of the namespace.
    if (!exit_.exited) {
      struct pollfd p = {pidfd_.get(), POLLIN, 0};
      for (int i = 0; i < 50 && !exit_.exited; ++i) {
        poll(&p, 1, 100);
        Reap();
        if (!exit_.exited) Kill();
      }
    }
    cgroups_->Remove();
    host_->ReleaseSlot(slot_);
  }

  const std::string& id() const override { return id_; }
  int control_fd() const override { return ctl_.get(); }
  int exit_fd() const override { return pidfd_.get(); }

  Status Freeze() override { return cgroups_->Freeze(); }
  Status Thaw() override { return cgroups_->Thaw(); }
  Status Kill() override {
    Status s = cgroups_->Kill();
    // Killing PID 1 of the namespace takes down every process in it.
    if (!exit_.exited) syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    return s;
  }
  SandboxExit Exit() override {
    Reap();
    SandboxExit e = exit_;
    e.oom_killed = cgroups_->OomKills() > 0;
    return e;
  }
  uint64_t PeakMemoryBytes() override { return cgroups_->PeakMemoryBytes(); }
  uint64_t OomKills() override { return cgroups_->OomKills(); }

 private:
  void Reap() {
    if (exit_.exited) return;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_.get()), &si,
               WEXITED | WNOHANG | __WALL) == 0 &&
        si.si_pid != 0) {
      exit_.exited = true;
      exit_.wait_status = WaitStatusFrom(si);
    }
  }

  std::shared_ptr<JailHost> host_;
  std::string id_;
  uint32_t slot_;
  pid_t pid_;
  UniqueFd pidfd_;
  UniqueFd ctl_;
  std::unique_ptr<SandboxCgroups> cgroups_;
  SandboxExit exit_;
};

class JailFactory final : public SandboxFactory {
 public:
  explicit JailFactory(const JailOptions& options) : host_(std::make_shared<JailHost>()) {
    host_->options = options;
    host_->init = Init();
  }

  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;
  Status SweepLeftovers() override;
  Status RemoveAll() override;
  std::string Describe() const {
    if (!host_->init.ok()) return "jail unavailable: " + host_->init.message();
    std::string s = "cgroups: " + host_->cgroups.Describe() + " favordynmods=" + host_->favor_dynmods + "; seccomp: " +
                    std::to_string(host_->seccomp.filter.size()) + " BPF instructions";
    if (!host_->seccomp.skipped.empty()) {
      s += " (unknown syscalls skipped:";
      for (const auto& n : host_->seccomp.skipped) s += " " + n;
      s += ")";
    }
    return s;
  }

 private:
  Status Init();
  std::shared_ptr<JailHost> host_;
};

Status JailFactory::Init() {
  JailHost& h = *host_;
  if (geteuid() != 0) return Status::Error("the process jail needs root");
  if (!ValidInstance(h.options.instance)) return Status::Error("bad jail instance name '" + h.options.instance + "'");
  if (h.options.uid_count == 0 || uint64_t{h.options.uid_base} + h.options.uid_count > 0xfffffffeull)
    return Status::Error("bad uid range");
  std::string state = h.options.state_dir.empty() ? "/run/kindling-jail/" + h.options.instance
                                                  : h.options.state_dir;
  if (Status s = MakeDirs(state, 0755); !s.ok()) return s;
  h.root_dir = state + "/root";
  if (mkdir(h.root_dir.c_str(), 0755) != 0 && errno != EEXIST) return Status::Errno("mkdir " + h.root_dir);
  // The child (already its own host uid) must be able to reach the mount point.
  if (chmod(state.c_str(), 0755) != 0 || chmod(h.root_dir.c_str(), 0755) != 0)
    return Status::Errno("chmod " + state);

  auto layout = CgroupLayout::Probe(h.options.instance);
  if (!layout.ok()) return layout.status();
  h.cgroups = std::move(layout.value());
  if (h.options.favor_dynmods) h.favor_dynmods = EnableFavorDynmods(h.cgroups.v2_root);
  h.host_root = RootTemplate::Probe();
  auto prog = CompileSeccompPolicy();
  if (!prog.ok()) return prog.status();
  h.seccomp = std::move(prog.value());
  h.last_cap = ProbeLastCap();
  return Status::Ok();
}

Status JailFactory::SweepLeftovers() {
  if (!host_->init.ok()) return host_->init;
  Status result;
  for (const std::string& dir : host_->cgroups.InstanceDirs(host_->options.instance)) {
    bool is_v2 = dir.rfind(host_->cgroups.v2_root + "/", 0) == 0 && !host_->cgroups.v2_root.empty();
    Status s = SweepCgroupChildren(dir, is_v2 && host_->cgroups.v2_kill);
    if (!s.ok() && result.ok()) result = s;
  }
  return result;
}

Status JailFactory::RemoveAll() {
  Status result = SweepLeftovers();
  if (!host_->init.ok()) return result;
  for (const std::string& dir : host_->cgroups.InstanceDirs(host_->options.instance))
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT && result.ok()) result = Status::Errno("rmdir " + dir);
  return result;
}

// Closes a pidfd child on failure paths: SIGKILL and reap.
void KillAndReap(int pidfd) {
  syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
  siginfo_t si;
  while (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &si, WEXITED | __WALL) != 0 &&
         errno == EINTR) {
  }
}

Result<std::unique_ptr<Sandbox>> JailFactory::Create(const SandboxSpec& spec) {
  JailHost& h = *host_;
  if (!h.init.ok()) return h.init;
  static const bool trace = getenv("KINDLING_JAIL_TRACE") != nullptr;
  int64_t t_last = trace ? NowNs() : 0;
  std::string trace_line;
#define TRACE(name)                                                              \
  if (trace) {                                                                   \
    int64_t t = NowNs();                                                         \
    trace_line += std::string(" ") + name + "=" + std::to_string((t - t_last) / 1000); \
    t_last = t;                                                                  \
  }
  if (!ValidId(spec.id)) return Status::Error("bad sandbox id '" + spec.id + "' (want [a-z0-9-]{1,48})");
  if (spec.argv.empty() || spec.argv[0].empty() || spec.argv[0][0] != '/')
    return Status::Error("sandbox argv[0] must be an absolute path");

  auto plan = BuildMountPlan(spec.root_fs.empty() ? h.host_root : h.RootOf(spec.root_fs), spec, h.root_dir);
  TRACE("plan");
  if (!plan.ok()) return plan.status();

  auto slot = h.AcquireSlot();
  if (!slot.ok()) return slot.status();
  struct SlotGuard {
    JailHost* h;
    uint32_t slot;
    bool armed = true;
    ~SlotGuard() {
      if (armed) h->ReleaseSlot(slot);
    }
  } slot_guard{&h, slot.value()};
  const uint32_t host_id = h.options.uid_base + slot.value();

  CgroupLimits limits{spec.memory_bytes, spec.cpu_millis, spec.cpu_weight, spec.pids_max};
  auto cg = SandboxCgroups::Create(h.cgroups, h.options.instance, spec.id, limits);
  if (!cg.ok()) return cg.status();
  std::unique_ptr<SandboxCgroups> cgroups = std::move(cg.value());
  TRACE("cgroups");
  auto fail = [&](Status s) -> Result<std::unique_ptr<Sandbox>> {
    cgroups->Remove();
    return s;
  };

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return fail(Status::Errno("socketpair"));
  UniqueFd ctl_parent(sv[0]), ctl_child(sv[1]);
  if (fcntl(ctl_parent.get(), F_SETFL, O_NONBLOCK) != 0) return fail(Status::Errno("fcntl O_NONBLOCK"));
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return fail(Status::Errno("pipe2"));
  UniqueFd sync_read(p[0]), sync_write(p[1]);
  if (pipe2(p, O_CLOEXEC) != 0) return fail(Status::Errno("pipe2"));
  UniqueFd err_read(p[0]), err_write(p[1]);
  UniqueFd trace_read, trace_write;
  if (trace && pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0) {
    trace_read.reset(p[0]);
    trace_write.reset(p[1]);
  }
  TRACE("fds");

  std::vector<const char*> argv, envp;
  for (const auto& s : spec.argv) argv.push_back(s.c_str());
  argv.push_back(nullptr);
  for (const auto& s : spec.env) envp.push_back(s.c_str());
  envp.push_back(nullptr);

  ChildArgs args{};
  args.plan = &plan.value();
  args.argv = argv.data();
  args.envp = envp.data();
  args.seccomp.len = static_cast<unsigned short>(h.seccomp.filter.size());
  args.seccomp.filter = h.seccomp.filter.data();
  args.sync_fd = sync_read.get();
  args.err_fd = err_write.get();
  args.ctl_fd = ctl_child.get();
  args.new_net = !spec.network;
  args.last_cap = h.last_cap;
  args.trace_fd = trace_write.get();

  int pidfd = -1;
  struct clone_args ca;
  memset(&ca, 0, sizeof ca);
  ca.flags = CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_PIDFD;
  if (!spec.network) ca.flags |= CLONE_NEWNET;
  ca.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  ca.exit_signal = 0;  // no SIGCHLD: only our pidfd waits (with __WALL) can reap it
  bool into = h.clone_into_cgroup && cgroups->clone_into_fd() >= 0;
  if (into) {
    ca.flags |= CLONE_INTO_CGROUP;
    ca.cgroup = static_cast<uint64_t>(cgroups->clone_into_fd());
  }

  // Block signals so no handler of the daemon runs in the child before it resets them.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  long pid = syscall(SYS_clone3, &ca, sizeof ca);
  if (pid < 0 && into && (errno == EINVAL || errno == EOPNOTSUPP || errno == E2BIG)) {
    // A kernel without CLONE_INTO_CGROUP (< 5.7): join the v2 cgroup by cgroup.procs instead.
    h.clone_into_cgroup = false;
    into = false;
    ca.flags &= ~CLONE_INTO_CGROUP;
    ca.cgroup = 0;
    pid = syscall(SYS_clone3, &ca, sizeof ca);
  }
  if (pid == 0) ChildMain(args);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return fail(Status::Errno("clone3", clone_errno));
  UniqueFd pidfd_owner(pidfd);
  TRACE("clone");
  sync_read.reset();
  err_write.reset();
  ctl_child.reset();
  trace_write.reset();

  auto abort_child = [&](Status s) -> Result<std::unique_ptr<Sandbox>> {
    KillAndReap(pidfd_owner.get());
    return fail(s);
  };

  // Identity: inside 993 <-> host uid_base+slot, nothing else mapped. setgroups stays "allow" so
  // the child can drop root's supplementary groups (it loses CAP_SETGID before exec).
  std::string map = std::to_string(kSandboxUid) + " " + std::to_string(host_id) + " 1\n";
  std::string proc = "/proc/" + std::to_string(pid);
  if (Status s = WriteCtl(proc + "/uid_map", map); !s.ok()) return abort_child(s);
  map = std::to_string(kSandboxGid) + " " + std::to_string(host_id) + " 1\n";
  if (Status s = WriteCtl(proc + "/gid_map", map); !s.ok()) return abort_child(s);
  TRACE("maps");
  if (Status s = cgroups->Join(static_cast<pid_t>(pid), into); !s.ok()) return abort_child(s);
  TRACE("join");

  const int64_t t_release = trace ? NowNs() : 0;
  if (write(sync_write.get(), "g", 1) != 1) return abort_child(Status::Errno("release child"));
  sync_write.reset();

  ChildError ce{};
  size_t got = 0;
  while (got < sizeof ce) {
    ssize_t n = read(err_read.get(), reinterpret_cast<char*>(&ce) + got, sizeof ce - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got != 0) {
    std::string what = std::string("sandbox ") + spec.id + ": " + StepName(ce.step);
    if (ce.step == kStepMounts) what += " (" + plan->Describe(static_cast<size_t>(ce.op)) + ")";
    if (ce.step == kStepExec) what += " " + spec.argv[0];
    return abort_child(got == sizeof ce ? Status::Errno(what, ce.err) : Status::Error(what + ": short report"));
  }
  TRACE("exec");
  // EOF without a report: either execve succeeded or the child died before reporting.
  siginfo_t si;
  memset(&si, 0, sizeof si);
  if (waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd_owner.get()), &si,
             WEXITED | WNOHANG | WNOWAIT | __WALL) == 0 &&
      si.si_pid != 0 && (si.si_code != CLD_EXITED)) {
    return abort_child(Status::Error("sandbox " + spec.id + ": first process killed during setup (signal " +
                                     std::to_string(si.si_status) + ")"));
  }

  slot_guard.armed = false;
  if (trace) {
    TraceRecord tr;
    std::string child;
    int64_t prev = t_release;
    while (read(trace_read.get(), &tr, sizeof tr) == static_cast<ssize_t>(sizeof tr)) {
      child += std::string(" ") + StepName(tr.step) + "=" + std::to_string((tr.ns - prev) / 1000);
      prev = tr.ns;
    }
    fprintf(stderr, "jail create %s (us):%s | child (until done):%s\n", spec.id.c_str(), trace_line.c_str(),
            child.c_str());
  }
  return std::unique_ptr<Sandbox>(new JailSandbox(host_, spec.id, slot.value(), static_cast<pid_t>(pid),
                                                  std::move(pidfd_owner), std::move(ctl_parent),
                                                  std::move(cgroups)));
}

}  // namespace
}  // namespace jail

std::unique_ptr<SandboxFactory> NewJailFactory(const JailOptions& options) {
  return std::make_unique<jail::JailFactory>(options);
}

std::string DescribeJailFactory(const SandboxFactory& factory) {
  auto* f = dynamic_cast<const jail::JailFactory*>(&factory);
  return f ? f->Describe() : "not a jail factory";
}

}  // namespace kindling
