// The seccomp policy as data (every rule has a reason; what must be denied is) and as a program:
// installed for real in a forked child, which then makes the calls and reports what it saw. The
// same calls from inside a real sandbox are in tests/e2e/test_e2e_security.py.
#include "sandbox/jail/seccomp_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <set>
#include <string>
#include <thread>

namespace kindling::jail {
namespace {

// System calls a function must never make (docs/security.md); each must be denied by a rule
// (EPERM) and allowed by none.
const char* const kMustDeny[] = {
    "mount", "umount2", "pivot_root", "chroot", "ptrace", "bpf", "perf_event_open", "keyctl", "add_key",
    "request_key", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "setns",
    "userfaultfd", "open_by_handle_at", "name_to_handle_at", "swapon", "swapoff", "reboot", "settimeofday",
    "clock_settime", "acct", "quotactl", "syslog", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree",
    "move_mount", "mount_setattr", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "iopl",
    "ioperm", "io_uring_setup", "io_uring_enter", "io_uring_register", "modify_ldt", "sethostname",
};

std::set<std::string> UnconditionallyDenied() {
  std::set<std::string> out;
  for (const SeccompRule& r : SeccompPolicy())
    if (r.action == SeccompAction::kErrno && r.conds.empty())
      for (const char* n : r.syscalls) out.insert(n);
  return out;
}

TEST(SeccompPolicy, EveryRuleHasAReasonAndAWellFormedCheck) {
  for (const SeccompRule& r : SeccompPolicy()) {
    ASSERT_FALSE(r.syscalls.empty());
    EXPECT_NE(r.reason, nullptr) << r.syscalls[0];
    EXPECT_GT(std::string(r.reason ? r.reason : "").size(), 10u) << r.syscalls[0];
    if (r.action == SeccompAction::kErrno) EXPECT_GT(r.err, 0) << r.syscalls[0];
    for (const SeccompCond& c : r.conds) {
      EXPECT_GE(c.arg, 0);
      EXPECT_LE(c.arg, 5);
      if (c.check == SeccompCheck::kNotIn || c.check == SeccompCheck::kAnyFlag) EXPECT_EQ(r.conds.size(), 1u);
      if (c.check == SeccompCheck::kNotIn) {
        EXPECT_EQ(r.action, SeccompAction::kErrno) << r.syscalls[0];
        EXPECT_FALSE(c.values.empty());
      }
    }
  }
}

TEST(SeccompPolicy, NothingIsBothAllowedAndDenied) {
  std::set<std::string> denied = UnconditionallyDenied();
  std::vector<std::string> allowed = SeccompAllowedSyscalls();
  std::set<std::string> seen;
  for (const std::string& n : allowed) {
    EXPECT_EQ(denied.count(n), 0u) << n << " is allowed and denied";
    EXPECT_TRUE(seen.insert(n).second) << n << " is allowed twice";
  }
  EXPECT_GT(allowed.size(), 150u);  // an allow-list, not a deny-list with a few allows
}

TEST(SeccompPolicy, MustDenySyscallsAreDeniedWithEperm) {
  std::set<std::string> denied = UnconditionallyDenied();
  std::vector<std::string> allowed = SeccompAllowedSyscalls();
  for (const char* n : kMustDeny) {
    EXPECT_EQ(denied.count(n), 1u) << n << " has no deny rule";
    EXPECT_EQ(std::count(allowed.begin(), allowed.end(), n), 0) << n << " is allowed";
    for (const SeccompRule& r : SeccompPolicy())
      for (const char* s : r.syscalls)
        if (std::string(s) == n && r.conds.empty()) EXPECT_EQ(r.err, EPERM) << n;
  }
}

TEST(SeccompPolicy, CompilesForThisArchitecture) {
  auto prog = CompileSeccompPolicy();
  ASSERT_TRUE(prog.ok()) << prog.status().message();
  EXPECT_LE(prog->filter.size(), static_cast<size_t>(BPF_MAXINSNS));
  EXPECT_GT(prog->filter.size(), 20u);
  // Only names this architecture does not have are skipped (e.g. open on aarch64, umount and
  // stime on x86_64); nothing a function commonly calls.
  for (const std::string& n : prog->skipped) {
    int nr = seccomp_syscall_resolve_name(n.c_str());
    EXPECT_TRUE(nr == __NR_SCMP_ERROR || nr < 0) << n;
  }
  for (const char* common : {"read", "write", "openat", "mmap", "clone", "execve", "socket", "futex", "exit_group"})
    EXPECT_EQ(std::count(prog->skipped.begin(), prog->skipped.end(), common), 0) << common;
}

// ---- the program, installed for real ----

struct Outcome {
  int status = 0;       // waitpid status of the child
  std::string report;   // what the child wrote: one line per failed expectation
};

// Forks; the child installs the compiled policy (with no_new_privs, as the jail does), runs
// `body` (which appends to its report), writes the report and exits 0.
Outcome RunFiltered(const std::function<void(std::string*)>& body) {
  auto prog = CompileSeccompPolicy();
  EXPECT_TRUE(prog.ok());
  int p[2];
  EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    sock_fprog fprog{static_cast<unsigned short>(prog->filter.size()), prog->filter.data()};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0)
      _exit(99);
    std::string report;
    body(&report);
    ssize_t unused = write(p[1], report.data(), report.size());
    (void)unused;
    _exit(0);
  }
  close(p[1]);
  Outcome out;
  char buf[4096];
  for (ssize_t n; (n = read(p[0], buf, sizeof buf)) > 0;) out.report.append(buf, static_cast<size_t>(n));
  close(p[0]);
  waitpid(pid, &out.status, 0);
  return out;
}

// Appends a line unless `rc`/errno are what is expected: want_errno 0 means success (rc >= 0).
void Expect(std::string* report, const char* what, long rc, int want_errno) {
  int e = errno;
  bool ok = want_errno == 0 ? rc >= 0 : (rc == -1 && e == want_errno);
  if (!ok)
    *report += std::string(what) + ": rc=" + std::to_string(rc) + " errno=" + std::to_string(rc < 0 ? e : 0) +
               " want errno " + std::to_string(want_errno) + "\n";
}

TEST(SeccompPolicy, DeniedCallsFailAndOrdinaryWorkSucceeds) {
  Outcome out = RunFiltered([](std::string* r) {
    // Denied outright: EPERM.
    Expect(r, "mount", mount("none", "/tmp", "tmpfs", 0, nullptr), EPERM);
    Expect(r, "umount2", umount2("/", MNT_DETACH), EPERM);
    Expect(r, "pivot_root", syscall(SYS_pivot_root, "/", "/"), EPERM);
    Expect(r, "ptrace", syscall(SYS_ptrace, 16 /*PTRACE_ATTACH*/, getppid(), 0, 0), EPERM);
    Expect(r, "bpf", syscall(SYS_bpf, 0, nullptr, 0), EPERM);
    Expect(r, "perf_event_open", syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0), EPERM);
    Expect(r, "keyctl", syscall(SYS_keyctl, 0, 0, 0, 0, 0), EPERM);
    Expect(r, "add_key", syscall(SYS_add_key, "user", "k", "v", 1, -3), EPERM);
    Expect(r, "request_key", syscall(SYS_request_key, "user", "k", nullptr, 0), EPERM);
    Expect(r, "kexec_load", syscall(SYS_kexec_load, 0, 0, nullptr, 0), EPERM);
    Expect(r, "init_module", syscall(SYS_init_module, nullptr, 0, ""), EPERM);
    Expect(r, "finit_module", syscall(SYS_finit_module, -1, "", 0), EPERM);
    Expect(r, "delete_module", syscall(SYS_delete_module, "x", 0), EPERM);
    Expect(r, "setns", syscall(SYS_setns, -1, 0), EPERM);
    Expect(r, "userfaultfd", syscall(SYS_userfaultfd, 0), EPERM);
    Expect(r, "open_by_handle_at", syscall(SYS_open_by_handle_at, -1, nullptr, 0), EPERM);
    Expect(r, "process_vm_readv", syscall(SYS_process_vm_readv, getppid(), nullptr, 0, nullptr, 0, 0), EPERM);
    Expect(r, "kcmp", syscall(SYS_kcmp, getpid(), getppid(), 0, 0, 0), EPERM);
    Expect(r, "io_uring_setup", syscall(SYS_io_uring_setup, 1, nullptr), EPERM);
    Expect(r, "fsopen", syscall(SYS_fsopen, "tmpfs", 0), EPERM);
    Expect(r, "reboot", syscall(SYS_reboot, 0, 0, 0, nullptr), EPERM);
    Expect(r, "clock_settime", syscall(SYS_clock_settime, CLOCK_REALTIME, nullptr), EPERM);
    // Namespaces by flags: EPERM; the same calls without them work.
    static const std::pair<const char*, unsigned long> kNamespaces[] = {
        {"unshare(CLONE_NEWUSER)", CLONE_NEWUSER}, {"unshare(CLONE_NEWNS)", CLONE_NEWNS},
        {"unshare(CLONE_NEWNET)", CLONE_NEWNET},   {"unshare(CLONE_NEWPID)", CLONE_NEWPID},
        {"unshare(CLONE_NEWIPC)", CLONE_NEWIPC},   {"unshare(CLONE_NEWUTS)", CLONE_NEWUTS},
        {"unshare(CLONE_NEWCGROUP)", CLONE_NEWCGROUP}, {"unshare(CLONE_NEWTIME)", 0x80ul}};
    for (const auto& [name, flag] : kNamespaces) Expect(r, name, syscall(SYS_unshare, flag), EPERM);
    Expect(r, "unshare(CLONE_FILES)", syscall(SYS_unshare, CLONE_FILES), 0);
    Expect(r, "clone(CLONE_NEWUSER)", syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0), EPERM);
    Expect(r, "clone(CLONE_NEWNET)", syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0), EPERM);
    Expect(r, "clone3", syscall(SYS_clone3, nullptr, 0), ENOSYS);
    // Not on the allow-list: ENOSYS, as from a kernel without the call.
    Expect(r, "syscall 1000", syscall(1000), ENOSYS);
    Expect(r, "syscall 999", syscall(999), ENOSYS);
    // Socket families.
    Expect(r, "socket(AF_PACKET)", socket(AF_PACKET, SOCK_DGRAM, 0), EAFNOSUPPORT);
    Expect(r, "socket(AF_ALG)", socket(AF_ALG, SOCK_SEQPACKET, 0), EAFNOSUPPORT);
    Expect(r, "socket(AF_VSOCK)", socket(AF_VSOCK, SOCK_STREAM, 0), EAFNOSUPPORT);
    Expect(r, "socket(AF_KEY)", socket(AF_KEY, SOCK_RAW, 2), EAFNOSUPPORT);
    Expect(r, "socket(AF_NETLINK, NETLINK_AUDIT)", socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT), ENOSYS);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    Expect(r, "socket(AF_INET)", s, 0);
    Expect(r, "socket(AF_INET6)", socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0), 0);
    Expect(r, "socket(AF_UNIX)", socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), 0);
    Expect(r, "socket(AF_NETLINK, NETLINK_ROUTE)", socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), 0);
    // ioctl: a short allow-list of requests, ENOTTY for the rest (also when sign-extended).
    int one = 1;
    Expect(r, "ioctl(FIONBIO)", ioctl(s, FIONBIO, &one), 0);
    char c = 'x';
    Expect(r, "ioctl(TIOCSTI)", ioctl(0, TIOCSTI, &c), ENOTTY);
    Expect(r, "ioctl(TIOCSTI, sign-extended)", syscall(SYS_ioctl, 0, 0xffffffff00005412ul, &c), ENOTTY);
    Expect(r, "ioctl(TIOCLINUX)", ioctl(0, TIOCLINUX, &c), ENOTTY);
    // personality: the query and PER_LINUX; not ADDR_NO_RANDOMIZE / READ_IMPLIES_EXEC.
    Expect(r, "personality(query)", personality(0xffffffff), 0);
    Expect(r, "personality(ADDR_NO_RANDOMIZE)", personality(PER_LINUX | ADDR_NO_RANDOMIZE), EPERM);
    Expect(r, "personality(READ_IMPLIES_EXEC)", personality(PER_LINUX | READ_IMPLIES_EXEC), EPERM);
    // Ordinary work: files in /tmp, threads, processes, pipes.
    char path[] = "/tmp/kindling-seccomp-XXXXXX";
    int fd = mkstemp(path);
    Expect(r, "mkstemp", fd, 0);
    Expect(r, "write", write(fd, "x", 1), 0);
    Expect(r, "unlink", unlink(path), 0);
    bool ran = false;
    std::thread([&] { ran = true; }).join();
    if (!ran) *r += "thread did not run\n";
    pid_t child = fork();
    if (child == 0) _exit(7);
    int st = 0;
    Expect(r, "fork", child, 0);
    Expect(r, "waitpid", waitpid(child, &st, 0), 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 7) *r += "forked child did not exit 7\n";
  });
  ASSERT_TRUE(WIFEXITED(out.status)) << "child status " << out.status;
  EXPECT_EQ(WEXITSTATUS(out.status), 0);
  EXPECT_EQ(out.report, "");
}

TEST(SeccompPolicy, ForeignAbiCallsKillTheProcess) {
#if defined(__x86_64__)
  // An x32 system call (the same arch value, __X32_SYSCALL_BIT set) is killed, not served.
  Outcome out = RunFiltered([](std::string*) { syscall(0x40000000 | SYS_getpid); });
  ASSERT_TRUE(WIFSIGNALED(out.status)) << out.status;
  EXPECT_EQ(WTERMSIG(out.status), SIGSYS);
#else
  GTEST_SKIP() << "x32 is x86_64 only";
#endif
}

}  // namespace
}  // namespace kindling::jail
