#include "sandbox/jail/seccomp_policy.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <cstddef>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sandbox/jail/sysutil.h"

namespace kindling::jail {

#if defined(__x86_64__)
constexpr uint32_t kNativeAuditArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr uint32_t kNativeAuditArch = AUDIT_ARCH_AARCH64;
#endif

constexpr unsigned long kNamespaceFlags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID |
                                          CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                                          CLONE_NEWCGROUP;

const std::vector<SeccompRule>& SeccompPolicy() {
  using C = SeccompCheck;
  static const std::vector<SeccompRule> kPolicy = {
      // --- undoing the jail: file system view ---
      {"mount", EPERM, C::kAlways, 0, {}, "read-only binds could be remounted rw; new mounts change the view"},
      {"umount2", EPERM, C::kAlways, 0, {}, "unmounting could reveal what a mount covers"},
      {"pivot_root", EPERM, C::kAlways, 0, {}, "the root is set up once by the jail"},
      {"chroot", EPERM, C::kAlways, 0, {}, "no reason to change root; classic escape building block"},
      {"fsopen", EPERM, C::kAlways, 0, {}, "new mount API: same power as mount(2)"},
      {"fsconfig", EPERM, C::kAlways, 0, {}, "new mount API: same power as mount(2)"},
      {"fsmount", EPERM, C::kAlways, 0, {}, "new mount API: same power as mount(2)"},
      {"fspick", EPERM, C::kAlways, 0, {}, "new mount API: reconfigures existing superblocks"},
      {"move_mount", EPERM, C::kAlways, 0, {}, "new mount API: attaches mounts"},
      {"open_tree", EPERM, C::kAlways, 0, {}, "new mount API: clones mount trees"},
      {"mount_setattr", EPERM, C::kAlways, 0, {}, "would flip read-only binds back to read-write"},
      {"open_by_handle_at", EPERM, C::kAlways, 0, {}, "opens files by handle, bypassing the mount view (shocker)"},
      {"name_to_handle_at", EPERM, C::kAlways, 0, {}, "companion of open_by_handle_at; leaks inode handles"},
      // --- undoing the jail: namespaces ---
      {"setns", EPERM, C::kAlways, 0, {}, "joining other namespaces leaves the jail"},
      {"unshare", EPERM, C::kAlways, 0, {}, "new user namespaces regain capabilities over new namespaces"},
      {"clone", EPERM, C::kArg0AnyFlag, kNamespaceFlags, {}, "clone with namespace flags = unshare"},
      {"clone3", ENOSYS, C::kAlways, 0, {}, "flags live in memory the filter cannot read; libc falls back to clone"},
      // --- other processes and the kernel's memory ---
      {"ptrace", EPERM, C::kAlways, 0, {}, "tracing; large kernel attack surface and seccomp bypass history"},
      {"process_vm_readv", EPERM, C::kAlways, 0, {}, "reads another process's memory"},
      {"process_vm_writev", EPERM, C::kAlways, 0, {}, "writes another process's memory"},
      {"kcmp", EPERM, C::kAlways, 0, {}, "compares kernel objects of other processes (KASLR leaks)"},
      {"pidfd_getfd", EPERM, C::kAlways, 0, {}, "steals file descriptors from other processes"},
      // --- kernel attack surface with no use in a function ---
      {"bpf", EPERM, C::kAlways, 0, {}, "eBPF verifier is a frequent privilege-escalation target"},
      {"perf_event_open", EPERM, C::kAlways, 0, {}, "perf events leak kernel addresses and timing"},
      {"userfaultfd", EPERM, C::kAlways, 0, {}, "stalls kernel page faults at will (race exploitation aid)"},
      {"io_uring_setup", EPERM, C::kAlways, 0, {}, "io_uring: large, frequently exploited surface; runtimes fall back"},
      {"io_uring_enter", EPERM, C::kAlways, 0, {}, "io_uring: see io_uring_setup"},
      {"io_uring_register", EPERM, C::kAlways, 0, {}, "io_uring: see io_uring_setup"},
      {"keyctl", EPERM, C::kAlways, 0, {}, "kernel keyrings are not namespaced"},
      {"add_key", EPERM, C::kAlways, 0, {}, "kernel keyrings are not namespaced"},
      {"request_key", EPERM, C::kAlways, 0, {}, "kernel keyrings are not namespaced"},
      {"fanotify_init", EPERM, C::kAlways, 0, {}, "file-system wide event monitoring"},
      {"lookup_dcookie", EPERM, C::kAlways, 0, {}, "profiling interface, leaks paths"},
      {"personality", EPERM, C::kArg0NotIn, 0, {0x0, 0x8, 0x20000, 0x20008, 0xffffffff},
       "READ_IMPLIES_EXEC / ADDR_NO_RANDOMIZE weaken exploit mitigations; query and PER_LINUX stay"},
      {"ioctl", EPERM, C::kArg1Equals, TIOCSTI, {}, "injects input into a terminal"},
      {"ioctl", EPERM, C::kArg1Equals, TIOCLINUX, {}, "virtual console control"},
      {"uselib", EPERM, C::kAlways, 0, {}, "obsolete a.out loader"},
      {"vhangup", EPERM, C::kAlways, 0, {}, "terminal hangup; no terminal here"},
      {"quotactl", EPERM, C::kAlways, 0, {}, "file-system quotas belong to the host"},
      {"quotactl_fd", EPERM, C::kAlways, 0, {}, "file-system quotas belong to the host"},
      {"nfsservctl", EPERM, C::kAlways, 0, {}, "obsolete kernel NFS server control"},
      // --- host-wide state ---
      {"kexec_load", EPERM, C::kAlways, 0, {}, "replaces the running kernel"},
      {"kexec_file_load", EPERM, C::kAlways, 0, {}, "replaces the running kernel"},
      {"init_module", EPERM, C::kAlways, 0, {}, "loads kernel code"},
      {"finit_module", EPERM, C::kAlways, 0, {}, "loads kernel code"},
      {"delete_module", EPERM, C::kAlways, 0, {}, "unloads kernel code"},
      {"create_module", EPERM, C::kAlways, 0, {}, "obsolete module interface"},
      {"get_kernel_syms", EPERM, C::kAlways, 0, {}, "obsolete module interface"},
      {"query_module", EPERM, C::kAlways, 0, {}, "obsolete module interface"},
      {"reboot", EPERM, C::kAlways, 0, {}, "host power state (in a pid ns it would signal init; not needed)"},
      {"swapon", EPERM, C::kAlways, 0, {}, "host swap configuration"},
      {"swapoff", EPERM, C::kAlways, 0, {}, "host swap configuration"},
      {"syslog", EPERM, C::kAlways, 0, {}, "kernel log leaks addresses and other tenants' events"},
      {"acct", EPERM, C::kAlways, 0, {}, "process accounting is host-wide"},
      {"settimeofday", EPERM, C::kAlways, 0, {}, "the clock is host-wide"},
      {"clock_settime", EPERM, C::kAlways, 0, {}, "the clock is host-wide"},
      {"clock_adjtime", EPERM, C::kAlways, 0, {}, "the clock is host-wide"},
      {"adjtimex", EPERM, C::kAlways, 0, {}, "the clock is host-wide (read-only use is rare in functions)"},
      {"stime", EPERM, C::kAlways, 0, {}, "the clock is host-wide"},
      {"iopl", EPERM, C::kAlways, 0, {}, "raw I/O port access"},
      {"ioperm", EPERM, C::kAlways, 0, {}, "raw I/O port access"},
      {"mbind", EPERM, C::kAlways, 0, {}, "NUMA placement is the host's decision"},
      {"set_mempolicy", EPERM, C::kAlways, 0, {}, "NUMA placement is the host's decision"},
      {"migrate_pages", EPERM, C::kAlways, 0, {}, "NUMA placement is the host's decision"},
      {"move_pages", EPERM, C::kAlways, 0, {}, "NUMA placement is the host's decision"},
  };
  return kPolicy;
}

Result<SeccompProgram> CompileSeccompPolicy() {
  SeccompProgram prog;
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (!ctx) return Status::Error("seccomp_init failed");
  struct CtxGuard {
    scmp_filter_ctx c;
    ~CtxGuard() { seccomp_release(c); }
  } guard{ctx};
  seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);

  std::vector<std::pair<int, const SeccompRule*>> not_in;
  for (const SeccompRule& r : SeccompPolicy()) {
    int nr = seccomp_syscall_resolve_name(r.syscall);
    if (nr == __NR_SCMP_ERROR || nr < 0) {  // < 0: a pseudo number, not on this arch
      prog.skipped.push_back(r.syscall);
      continue;
    }
    uint32_t action = SCMP_ACT_ERRNO(static_cast<uint16_t>(r.err));
    int rc = 0;
    switch (r.check) {
      case SeccompCheck::kAlways:
        rc = seccomp_rule_add_exact(ctx, action, nr, 0);
        break;
      case SeccompCheck::kArg0AnyFlag:
        for (int bit = 0; bit < 64 && rc == 0; ++bit) {
          unsigned long f = 1ul << bit;
          if (!(r.value & f)) continue;
          rc = seccomp_rule_add_exact(ctx, action, nr, 1, SCMP_A0(SCMP_CMP_MASKED_EQ, f, f));
        }
        break;
      case SeccompCheck::kArg0NotIn:
        // libseccomp 2.5 cannot AND two comparisons of one argument: hand-written prefix below.
        not_in.push_back({nr, &r});
        break;
      case SeccompCheck::kArg1Equals:
        rc = seccomp_rule_add_exact(ctx, action, nr, 1, SCMP_A1(SCMP_CMP_EQ, r.value));
        break;
    }
    if (rc != 0) return Status::Errno(std::string("seccomp rule for ") + r.syscall, -rc);
  }

  // libseccomp 2.5 exports only to a file descriptor: go through a memfd.
  UniqueFd mem(memfd_create("kindling-seccomp", MFD_CLOEXEC));
  if (!mem.valid()) return Status::Errno("memfd_create");
  if (int rc = seccomp_export_bpf(ctx, mem.get()); rc != 0) return Status::Errno("seccomp_export_bpf", -rc);
  off_t size = lseek(mem.get(), 0, SEEK_END);
  if (size <= 0 || size % sizeof(sock_filter) != 0) return Status::Error("seccomp: bad BPF size");
  std::vector<sock_filter> lib(static_cast<size_t>(size) / sizeof(sock_filter));
  if (pread(mem.get(), lib.data(), static_cast<size_t>(size), 0) != size)
    return Status::Errno("seccomp: read back BPF");

  // Prefix for "deny unless arg0 is one of": for each such rule
  //   if (arch == native && nr == rule.nr && low32(arg0) not in allowed) return ERRNO(err)
  // then fall through to libseccomp's program (which starts by loading the arch itself). The
  // kernel's personality(2) takes an unsigned int, so only the low 32 bits of arg0 matter.
  std::vector<sock_filter>& f = prog.filter;
  for (const auto& [nr, rule] : not_in) {
#if defined(__x86_64__) || defined(__aarch64__)
    const size_t n = rule->allowed.size();
    // Layout: [0] ld arch [1] jeq native [2] ld nr [3] jeq nr [4] ld arg0 [5..5+n) jeq allowed
    //         [5+n] ret errno, then the next block.
    const uint8_t to_next = static_cast<uint8_t>(n + 1);  // from [4+n] past the ret
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kNativeAuditArch, 0, static_cast<uint8_t>(n + 4)));
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, static_cast<uint8_t>(n + 2)));
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[0])));
    for (size_t i = 0; i < n; ++i) {
      f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(rule->allowed[i]),
                           static_cast<uint8_t>(to_next - 1 - i), 0));
    }
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<uint32_t>(rule->err) & SECCOMP_RET_DATA)));
#else
    // Unknown arch layout: deny the call outright.
    f.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
    f.push_back(BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
    f.push_back(BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<uint32_t>(rule->err) & SECCOMP_RET_DATA)));
#endif
  }
  f.insert(f.end(), lib.begin(), lib.end());
  if (f.size() > BPF_MAXINSNS) return Status::Error("seccomp program too long");
  return prog;
}

}  // namespace kindling::jail
