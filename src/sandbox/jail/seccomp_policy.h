// The sandbox's seccomp policy: DATA (a table of rules, each with a reason, in seccomp_policy.cc),
// compiled once per factory into a classic BPF program, then installed by each sandbox's first
// process just before execve (the program is plain memory: the child only makes the seccomp(2)
// call, no allocation). It applies to kindling-init and everything it starts.
//
// Shape: an ALLOW-LIST. A system call no rule allows fails with ENOSYS, what an older kernel
// answers for a call it does not have, so runtimes and libc take their fallback path (glibc's
// clone3 -> clone, faccessat2 -> faccessat, rseq, close_range, ...) instead of reporting a
// failed operation, which EPERM would make them do (a new syscall must not break functions).
// Calls that could undo the jail or reach kernel attack surface are listed as DENY rules with
// EPERM, the kernel's own "not permitted" answer, so the reason is visible in the table and in
// tests. A few allowed calls are filtered by argument: clone/unshare without namespace flags,
// socket families, ioctl requests, personality values. Foreign-ABI system calls (i386 int 0x80,
// x32) kill the process.
//
// Nothing in a sandbox may trace or read other processes (ptrace, process_vm_*, kcmp, pidfd_getfd
// are denied); a snapshot/restore feature does that from the daemon side, outside the filter.
#pragma once

#include <errno.h>
#include <linux/filter.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace kindling::jail {

enum class SeccompAction {
  kAllow,  // the call runs
  kErrno,  // the call fails with `err` without running
};

// When a rule applies, looking at one argument (`arg`, 0-5). Comparisons on flags and request
// numbers look at the low 32 bits only where the kernel's parameter is 32 bits wide (ioctl's cmd,
// socket's family, personality's persona): a caller that sign-extends an int must not slip by.
enum class SeccompCheck {
  kAnyFlag,  // arg has any bit of `value` set (alone in a rule: one BPF comparison per bit)
  kNoFlag,   // arg has none of the bits of `value` set
  kEquals,   // low 32 bits of arg == value
  kNotIn,    // low 32 bits of arg is not one of `values` (alone, only in a kErrno rule)
};

struct SeccompCond {
  SeccompCheck check;
  int arg;  // 0-5
  unsigned long value = 0;
  std::vector<unsigned long> values = {};
};

// A rule applies to a call of one of `syscalls` when every condition holds (none: always).
struct SeccompRule {
  std::vector<const char*> syscalls;  // names as libseccomp knows them; unknown on this arch: skipped
  SeccompAction action;
  int err;  // errno for kErrno, 0 for kAllow
  std::vector<SeccompCond> conds;
  const char* reason;
};

// The errno of calls no rule allows (see above).
constexpr int kSeccompDefaultErrno = ENOSYS;

// The policy table, in order. Contract (checked by seccomp_policy_test): every rule has a reason;
// no syscall is both allowed unconditionally and denied; kNotIn rules are kErrno rules.
const std::vector<SeccompRule>& SeccompPolicy();

// Every syscall name an unconditional kAllow rule lists (for tests and reports).
std::vector<std::string> SeccompAllowedSyscalls();

// The compiled program for the native architecture.
struct SeccompProgram {
  std::vector<sock_filter> filter;
  std::vector<std::string> skipped;  // syscalls of the table this kernel/arch does not know
};
Result<SeccompProgram> CompileSeccompPolicy();

}  // namespace kindling::jail
