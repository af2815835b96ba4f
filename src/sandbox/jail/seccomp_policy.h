// The sandbox's seccomp policy: DATA (a table of {syscall, action, reason} in seccomp_policy.cc),
// compiled once per factory into a classic BPF program with libseccomp, then installed by each
// sandbox's first process just before execve (the program is plain memory: the child only makes
// the seccomp(2) call, no allocation).
//
// Shape: default ALLOW, with a deny list for kernel attack surface and for everything that could
// undo the jail (mount, namespaces, tracing other processes, kernel keyrings, modules, clocks).
// Denials return EPERM so runtimes see an ordinary permission error; clone3 returns ENOSYS so libc
// falls back to clone(2), whose flags (unlike clone3's struct) the filter can inspect.
// Foreign-ABI system calls (i386 int 0x80, x32) kill the process.
#pragma once

#include <linux/filter.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace kindling::jail {

enum class SeccompCheck {
  kAlways,          // deny every call
  kArg0AnyFlag,     // deny when arg0 has any bit of `value` set (one BPF comparison per bit)
  kArg0NotIn,       // deny unless arg0 equals one of `allowed`
  kArg1Equals,      // deny when arg1 == value (ioctl requests)
};

struct SeccompRule {
  const char* syscall;
  int err;                 // errno returned (EPERM, ENOSYS)
  SeccompCheck check;
  unsigned long value;     // flag mask / request number
  std::vector<unsigned long> allowed;
  const char* reason;
};

// The policy table, in order.
const std::vector<SeccompRule>& SeccompPolicy();

// The compiled program for the native architecture.
struct SeccompProgram {
  std::vector<sock_filter> filter;
  std::vector<std::string> skipped;  // syscalls of the table this kernel/arch does not know
};
Result<SeccompProgram> CompileSeccompPolicy();

}  // namespace kindling::jail
