#include "sandbox/jail/seccomp_policy.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/fs.h>
#include <linux/netlink.h>
#include <linux/random.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <linux/sockios.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <set>

#include "sandbox/jail/sysutil.h"

namespace kindling::jail {

#if defined(__x86_64__)
constexpr uint32_t kNativeAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kNativeAuditArch = AUDIT_ARCH_AARCH64;
#endif

// Flags of clone(2) and unshare(2) that create namespaces. CLONE_NEWTIME (0x80) shares its bit with
// clone's exit-signal field, so it is checked for unshare only (clone cannot make a time namespace).
constexpr unsigned long kCloneNamespaceFlags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET |
                                               CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
constexpr unsigned long kUnshareNamespaceFlags = kCloneNamespaceFlags | CLONE_NEWTIME;

// _IOR('T', 0x2A, struct termios2) on x86_64 and aarch64 (the header macro needs the struct).
constexpr unsigned long kTcgets2 = 0x802c542a;
#ifndef FICLONE
#define FICLONE 0x40049409
#endif

namespace {

using A = SeccompAction;
using C = SeccompCheck;

SeccompRule Allow(std::vector<const char*> names, const char* reason) {
  return {std::move(names), A::kAllow, 0, {}, reason};
}
SeccompRule AllowIf(const char* name, std::vector<SeccompCond> conds, const char* reason) {
  return {{name}, A::kAllow, 0, std::move(conds), reason};
}
SeccompRule Deny(std::vector<const char*> names, int err, const char* reason) {
  return {std::move(names), A::kErrno, err, {}, reason};
}
SeccompRule DenyIf(const char* name, int err, SeccompCond cond, const char* reason) {
  return {{name}, A::kErrno, err, {std::move(cond)}, reason};
}

}  // namespace

const std::vector<SeccompRule>& SeccompPolicy() {
  static const std::vector<SeccompRule> kPolicy = {
      // ================= DENY: undoing the jail =================
      Deny({"mount", "umount", "umount2", "pivot_root", "chroot"}, EPERM,
           "the file-system view is set up once by the jail: read-only binds could be remounted rw, new "
           "mounts or unmounts change or reveal what the sandbox sees"),
      Deny({"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr"}, EPERM,
           "the new mount API has the power of mount(2); mount_setattr would flip read-only binds back to rw"),
      Deny({"open_by_handle_at", "name_to_handle_at"}, EPERM,
           "opening files by handle bypasses the mount view (the 'shocker' escape); handles leak inode ids"),
      Deny({"setns"}, EPERM, "joining another namespace leaves the jail"),
      DenyIf("unshare", EPERM, {C::kAnyFlag, 0, kUnshareNamespaceFlags},
             "a new user namespace regains every capability over namespaces made inside it; new mount/net/"
             "pid/... namespaces are kernel attack surface a function has no use for"),
      DenyIf("clone", EPERM, {C::kAnyFlag, 0, kCloneNamespaceFlags}, "clone with namespace flags = unshare"),
      Deny({"clone3"}, ENOSYS,
           "clone3's flags live in memory the filter cannot read; ENOSYS makes glibc and runtimes fall back "
           "to clone(2), whose flags it can (this is the default errno: the rule documents it)"),
      Deny({"sethostname", "setdomainname"}, EPERM, "the UTS namespace is configured by the jail"),
      // ================= DENY: other processes and the kernel's memory =================
      Deny({"ptrace"}, EPERM,
           "tracing: large kernel attack surface and seccomp-bypass history; snapshots trace from the daemon, "
           "outside any sandbox"),
      Deny({"process_vm_readv", "process_vm_writev"}, EPERM, "reads / writes another process's memory"),
      Deny({"kcmp"}, EPERM, "compares kernel objects of other processes (KASLR and fd-sharing leaks)"),
      Deny({"pidfd_getfd"}, EPERM, "steals file descriptors from other processes (kindling-init's control socket)"),
      // ================= DENY: kernel attack surface with no use in a function =================
      Deny({"bpf"}, EPERM, "the eBPF verifier is a frequent privilege-escalation target"),
      Deny({"perf_event_open"}, EPERM, "perf events leak kernel addresses and timing; frequent CVE source"),
      Deny({"userfaultfd"}, EPERM,
           "stalls kernel page faults at will (race-exploitation aid); /dev/userfaultfd is not in the sandbox"),
      Deny({"io_uring_setup", "io_uring_enter", "io_uring_register"}, EPERM,
           "io_uring: large, frequently exploited surface that bypasses per-syscall filtering; libuv and others "
           "fall back to epoll and threads"),
      Deny({"keyctl", "add_key", "request_key"}, EPERM, "kernel keyrings are not namespaced"),
      Deny({"fanotify_init", "lookup_dcookie"}, EPERM, "file-system wide monitoring / profiling interfaces"),
      Deny({"modify_ldt"}, EPERM, "16-bit segments: historical kernel bugs, no use in 64-bit runtimes"),
      Deny({"uselib", "vhangup", "nfsservctl", "create_module", "get_kernel_syms", "query_module"}, EPERM,
           "obsolete interfaces"),
      Deny({"quotactl", "quotactl_fd"}, EPERM, "file-system quotas belong to the host"),
      // ================= DENY: host-wide state =================
      Deny({"kexec_load", "kexec_file_load"}, EPERM, "replaces the running kernel"),
      Deny({"init_module", "finit_module", "delete_module"}, EPERM, "loads or unloads kernel code"),
      Deny({"reboot"}, EPERM, "host power state (in a pid namespace it would signal init)"),
      Deny({"swapon", "swapoff"}, EPERM, "host swap configuration"),
      Deny({"syslog"}, EPERM, "the kernel log leaks addresses and other tenants' events"),
      Deny({"acct"}, EPERM, "process accounting is host-wide"),
      Deny({"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "stime"}, EPERM,
           "the clock is host-wide (time namespaces cannot be created here)"),
      Deny({"iopl", "ioperm"}, EPERM, "raw I/O port access"),
      Deny({"mbind", "set_mempolicy", "migrate_pages", "move_pages"}, EPERM, "NUMA placement is the host's decision"),

      // ================= ALLOW with argument filters =================
      AllowIf("clone", {{C::kNoFlag, 0, kCloneNamespaceFlags}},
              "threads and processes (fork, pthread_create, posix_spawn) without new namespaces"),
      AllowIf("unshare", {{C::kNoFlag, 0, kUnshareNamespaceFlags}},
              "unsharing this process's own fd table / fs info (CLONE_FILES, CLONE_FS, CLONE_SYSVSEM)"),
      {{"socket"}, A::kErrno, EAFNOSUPPORT,
       {{C::kNotIn, 0, 0, {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK}}},
       "only local, IP and routing-netlink sockets: packet, key, alg (kernel crypto), vsock, bluetooth, ... "
       "families are kernel surface; EAFNOSUPPORT is what a kernel without them answers"},
      AllowIf("socket", {{C::kEquals, 0, AF_UNIX}}, "local sockets"),
      AllowIf("socket", {{C::kEquals, 0, AF_INET}}, "IPv4 (the Runtime API on 127.0.0.1, the network when allowed)"),
      AllowIf("socket", {{C::kEquals, 0, AF_INET6}}, "IPv6 sockets (dual-stack clients and servers)"),
      AllowIf("socket", {{C::kEquals, 0, AF_NETLINK}, {C::kEquals, 2, NETLINK_ROUTE}},
              "NETLINK_ROUTE only: getifaddrs / if_nameindex / getaddrinfo(AI_ADDRCONFIG) read interfaces"),
      {{"ioctl"}, A::kErrno, ENOTTY,
       {{C::kNotIn, 1, 0,
         {TCGETS, TCSETS, TCSETSW, TCSETSF, kTcgets2, TIOCGWINSZ, TIOCSWINSZ, TIOCGPGRP, TIOCSPGRP, TIOCOUTQ,
          FIONREAD, FIONBIO, FIOASYNC, FIOCLEX, FIONCLEX, SIOCATMARK, SIOCGIFNAME, SIOCGIFCONF, SIOCGIFFLAGS,
          SIOCGIFADDR, SIOCGIFBRDADDR, SIOCGIFNETMASK, SIOCGIFMTU, SIOCGIFHWADDR, SIOCGIFINDEX, FIGETBSZ,
          FS_IOC_GETFLAGS, FICLONE, RNDGETENTCNT}}},
       "ioctl requests runtimes make (terminal queries, non-blocking and close-on-exec, bytes readable, "
       "interface queries, reflink copies, entropy count); any other request gets ENOTTY, what a file "
       "without that request answers: TIOCSTI (terminal input injection), TIOCLINUX and device-specific "
       "requests are out"},
      {{"personality"}, A::kErrno, EPERM,
       {{C::kNotIn, 0, 0, {0x0000 /*PER_LINUX*/, 0x0020000 /*| UNAME26*/, 0x0008 /*PER_LINUX32*/, 0x0020008, 0xffffffff}}},
       "READ_IMPLIES_EXEC / ADDR_NO_RANDOMIZE weaken exploit mitigations; the query (0xffffffff) and PER_LINUX "
       "stay"},
      Allow({"ioctl", "personality"}, "allowed once the argument checks above passed"),

      // ================= ALLOW: what runtimes (python, node, native) do =================
      Allow({"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
             "pwritev2", "lseek", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "flock", "fsync",
             "fdatasync", "syncfs", "sync_file_range", "ftruncate", "truncate", "fallocate", "fadvise64",
             "readahead", "sendfile", "splice", "tee", "vmsplice", "copy_file_range"},
            "file descriptor I/O"),
      Allow({"open", "openat", "openat2", "creat", "stat", "fstat", "lstat", "newfstatat", "statx", "statfs",
             "fstatfs", "access", "faccessat", "faccessat2", "getdents", "getdents64", "getcwd", "chdir",
             "fchdir", "mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2", "link", "linkat",
             "symlink", "symlinkat", "unlink", "unlinkat", "readlink", "readlinkat", "chmod", "fchmod", "fchmodat",
             "fchmodat2", "chown", "fchown", "fchownat", "lchown", "umask", "utime", "utimes", "utimensat",
             "futimesat", "mknod", "mknodat"},
            "paths: the mount view is read-only except /tmp; device nodes need CAP_MKNOD (dropped), fifos work"),
      Allow({"getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr", "setxattr",
             "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr"},
            "extended attributes (trusted./security. need capabilities the sandbox does not have)"),
      Allow({"inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch"}, "file watching (node fs.watch)"),
      Allow({"brk", "mmap", "munmap", "mremap", "mprotect", "madvise", "mincore", "msync", "mlock", "mlock2",
             "munlock", "mlockall", "munlockall", "membarrier", "memfd_create", "pkey_alloc", "pkey_free",
             "pkey_mprotect", "get_mempolicy"},
            "memory management (JIT code pages, allocators; locked memory is bounded by RLIMIT_MEMLOCK and the "
            "memory cgroup)"),
      Allow({"fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill", "tkill",
             "tgkill", "pidfd_open", "pidfd_send_signal", "getpid", "getppid", "gettid", "getpgid", "setpgid",
             "getpgrp", "getsid", "setsid", "set_tid_address", "prctl", "arch_prctl", "get_thread_area",
             "set_thread_area", "seccomp", "landlock_create_ruleset", "landlock_add_rule",
             "landlock_restrict_self"},
            "processes in the sandbox's own pid namespace; prctl options that matter need capabilities; "
            "seccomp and landlock can only restrict further"),
      Allow({"futex", "futex_waitv", "set_robust_list", "get_robust_list", "rseq", "sched_yield",
             "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam", "sched_getscheduler",
             "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min", "sched_rr_get_interval",
             "sched_getattr", "sched_setattr", "getpriority", "setpriority", "ioprio_get", "ioprio_set", "getcpu"},
            "threads and scheduling (raising priority needs CAP_SYS_NICE; the CPU quota is the cgroup's)"),
      Allow({"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait",
             "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd", "signalfd4", "pause",
             "restart_syscall"},
            "signal handling and delivery inside the sandbox's pid namespace"),
      Allow({"clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time", "alarm",
             "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
             "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime", "times"},
            "reading clocks and timers"),
      Allow({"epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "poll",
             "ppoll", "select", "pselect6", "eventfd", "eventfd2", "pipe", "pipe2"},
            "event loops (kindling-init, libuv, asyncio)"),
      Allow({"socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname", "getpeername",
             "getsockopt", "setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
             "shutdown"},
            "sockets of the families allowed above, in the sandbox's own network namespace"),
      Allow({"io_setup", "io_destroy", "io_submit", "io_cancel", "io_getevents", "io_pgetevents"},
            "Linux AIO on the sandbox's own files"),
      Allow({"getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups", "setuid", "setgid",
             "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid", "capget",
             "capset"},
            "identity: without capabilities a process can only move between ids it already has"),
      Allow({"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd",
             "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
             "mq_getsetattr"},
            "System V and POSIX IPC, in the sandbox's own IPC namespace (python multiprocessing)"),
      Allow({"uname", "sysinfo", "getrlimit", "setrlimit", "prlimit64", "getrusage", "getrandom"},
            "system information and own resource limits (raising a hard limit needs CAP_SYS_RESOURCE)"),
  };
  return kPolicy;
}

std::vector<std::string> SeccompAllowedSyscalls() {
  std::vector<std::string> out;
  for (const SeccompRule& r : SeccompPolicy())
    if (r.action == SeccompAction::kAllow && r.conds.empty())
      for (const char* n : r.syscalls) out.push_back(n);
  return out;
}

namespace {

// libseccomp comparison for one condition (not kAnyFlag / kNotIn, which expand differently).
// 32-bit parameters are compared on their low word (MASKED_EQ with 0xffffffff ignores the high word).
scmp_arg_cmp ToCmp(const SeccompCond& c) {
  unsigned int arg = static_cast<unsigned int>(c.arg);
  switch (c.check) {
    case SeccompCheck::kNoFlag:
      return {arg, SCMP_CMP_MASKED_EQ, c.value, 0};
    case SeccompCheck::kEquals:
    default:
      return {arg, SCMP_CMP_MASKED_EQ, 0xffffffffull, c.value & 0xffffffffull};
  }
}

}  // namespace

Result<SeccompProgram> CompileSeccompPolicy() {
  SeccompProgram prog;
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(kSeccompDefaultErrno));
  if (!ctx) return Status::Error("seccomp_init failed");
  struct CtxGuard {
    scmp_filter_ctx c;
    ~CtxGuard() { seccomp_release(c); }
  } guard{ctx};
  seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  // A binary search over syscall numbers instead of a linear list: an allow-list is long.
  seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);

  struct NotIn {
    int nr;
    const SeccompRule* rule;
  };
  std::vector<NotIn> not_in;
  std::set<std::string> skipped;
  for (const SeccompRule& r : SeccompPolicy()) {
    for (const char* name : r.syscalls) {
      int nr = seccomp_syscall_resolve_name(name);
      if (nr == __NR_SCMP_ERROR || nr < 0) {  // < 0: a pseudo number, not on this arch
        skipped.insert(name);
        continue;
      }
      uint32_t action = r.action == SeccompAction::kAllow ? SCMP_ACT_ALLOW
                                                           : SCMP_ACT_ERRNO(static_cast<uint16_t>(r.err));
      int rc = 0;
      if (r.conds.empty()) {
        // An unconditional errno equal to the default adds nothing (libseccomp refuses it).
        if (action != SCMP_ACT_ERRNO(kSeccompDefaultErrno)) rc = seccomp_rule_add_exact(ctx, action, nr, 0);
      } else if (r.conds.size() == 1 && r.conds[0].check == SeccompCheck::kNotIn) {
        if (r.action != SeccompAction::kErrno) return Status::Error(std::string("seccomp: kNotIn allow rule for ") + name);
        not_in.push_back({nr, &r});
      } else if (r.conds.size() == 1 && r.conds[0].check == SeccompCheck::kAnyFlag) {
        const SeccompCond& c = r.conds[0];
        for (int bit = 0; bit < 64 && rc == 0; ++bit) {
          unsigned long f = 1ul << bit;
          if (!(c.value & f)) continue;
          scmp_arg_cmp cmp{static_cast<unsigned int>(c.arg), SCMP_CMP_MASKED_EQ, f, f};
          rc = seccomp_rule_add_exact_array(ctx, action, nr, 1, &cmp);
        }
      } else {
        std::vector<scmp_arg_cmp> cmps;
        for (const SeccompCond& c : r.conds) {
          if (c.check == SeccompCheck::kNotIn || c.check == SeccompCheck::kAnyFlag)
            return Status::Error(std::string("seccomp: kNotIn/kAnyFlag must be a rule's only condition: ") + name);
          cmps.push_back(ToCmp(c));
        }
        rc = seccomp_rule_add_exact_array(ctx, action, nr, static_cast<unsigned int>(cmps.size()), cmps.data());
      }
      if (rc != 0) return Status::Errno(std::string("seccomp rule for ") + name, -rc);
    }
  }
  prog.skipped.assign(skipped.begin(), skipped.end());

  // libseccomp 2.5 exports only to a file descriptor: go through a memfd.
  UniqueFd mem(memfd_create("kindling-seccomp", MFD_CLOEXEC));
  if (!mem.valid()) return Status::Errno("memfd_create");
  if (int rc = seccomp_export_bpf(ctx, mem.get()); rc != 0) return Status::Errno("seccomp_export_bpf", -rc);
  off_t size = lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0) return Status::Error("seccomp: bad BPF size");
  std::vector<sock_filter> lib(static_cast<size_t>(size) / sizeof(sock_filter));
  if (pread(mem.get(), lib.data(), static_cast<size_t>(size), 0) != size)
    return Status::Errno("seccomp: read back BPF");

  // Prefix for "fail unless arg is one of" (libseccomp 2.5 cannot AND two comparisons of one
  // argument): for each such rule
  //   if (arch == native && nr == rule.nr && low32(arg) not in allowed) return ERRNO(err)
  // then fall through to libseccomp's program (which starts by loading the arch itself and applies
  // the rule's allow). The argument's low word is at offsetof(args[i]) on little-endian x86_64 and
  // aarch64; the kernel parameters these rules filter are 32 bits wide.
  std::vector<sock_filter>& f = prog.filter;
  for (const NotIn& item : not_in) {
    const SeccompCond& c = item.rule->conds[0];
    const uint32_t ret = SECCOMP_RET_ERRNO | (static_cast<uint32_t>(item.rule->err) & SECCOMP_RET_DATA);
#if defined(__x86_64__) || defined(__aarch64__)
    const size_t n = c.values.size();
    if (n > 250) return Status::Error("seccomp: too many values in one kNotIn rule");
    // Layout: [0] ld arch [1] jeq native [2] ld nr [3] jeq nr [4] ld arg [5..5+n) jeq allowed
    //         [5+n] ret errno, then the next block.
    const uint8_t to_next = static_cast<uint8_t>(n + 1);  // from [4+n] past the ret
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kNativeAuditArch, 0, static_cast<uint8_t>(n + 4)));
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(item.nr), 0, static_cast<uint8_t>(n + 2)));
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                         static_cast<uint32_t>(offsetof(seccomp_data, args) + 8 * static_cast<size_t>(c.arg))));
    for (size_t i = 0; i < n; ++i) {
      f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(c.values[i]),
                           static_cast<uint8_t>(to_next - 1 - i), 0));
    }
    f.push_back(BPF_STMT(BPF_RET | BPF_K, ret));
#else
    // Unknown arch layout: fail the call outright.
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(item.nr), 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, ret));
#endif
  }
  f.insert(f.end(), lib.begin(), lib.end());
  if (f.size() > BPF_MAXINSNS) return Status::Error("seccomp program too long");
  return prog;
}

}  // namespace kindling::jail
