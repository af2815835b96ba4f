// Capabilities of the sandbox's first process.
//
// After clone(CLONE_NEWUSER) the child holds every capability in its own user namespace; it needs
// them to build its mount namespace, and must lose all of them before execve: a process that keeps
// CAP_SYS_ADMIN could remount our read-only binds read-write.
//
// Child-side functions (marked "async-signal-safe") make raw system calls only: no allocation, no
// locks, usable between clone and execve in a multithreaded daemon. They return 0 or an errno.
#pragma once

namespace kindling::jail {

// Parent side: the highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap).
int ProbeLastCap();

// Async-signal-safe. Keeps the permitted set across the setresuid that makes the child uid 993
// (PR_SET_KEEPCAPS); call RaiseEffectiveCaps after the switch.
int KeepCapsAcrossSetuid();
// Async-signal-safe. effective := permitted. Returns EPERM if CAP_SYS_ADMIN is not effective after.
int RaiseEffectiveCaps();
// Async-signal-safe. Empties the bounding set (0..last_cap), the ambient set, and the inheritable,
// permitted and effective sets, and clears keep-caps. Irreversible for this process and its
// descendants (with no_new_privs, execve of setuid/file-capability binaries cannot add any).
int DropAllCapabilities(int last_cap);

}  // namespace kindling::jail
