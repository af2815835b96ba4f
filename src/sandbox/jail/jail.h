// The process-jail backend of the Sandbox interface (what Firecracker's jailer does, without the VM).
//
// A sandbox is one process tree in fresh user, pid, mount, network, ipc, uts and cgroup namespaces:
//   identity   inside uid/gid 993 (Lambda's sbx_user1051), mapped to a host uid/gid unique to the
//              sandbox (uid_base + slot; slots are reused after destroy); no supplementary groups
//   files      a tmpfs root of read-only binds (see mounts.h); writable: /tmp (spec.tmp_bytes),
//              /dev/shm and writable spec.binds only
//   network    loopback only (spec.network=true shares the host network namespace instead)
//   limits     cgroups (cgroup.h): memory+swap, CPU quota and weight, pids
//   privilege  no capabilities at all, no_new_privs, a seccomp deny list (seccomp_policy.h)
// The first process gets the control socket as fd 3, /dev/null as fds 0-2, cwd /var/task.
//
// Startup order (jail.cc), child steps each report {step, errno} over a CLOEXEC pipe:
//   parent: cgroup dirs + limits, sockets/pipes, argv/env/mount plan/seccomp program prepared
//   clone3(CLONE_NEW* | CLONE_PIDFD | CLONE_INTO_CGROUP)
//   parent: uid_map/gid_map, v1 cgroup.procs joins, release the child
//   child:  setgroups/setresgid/setresuid(993) at once, unshare cgroup ns, mounts + pivot_root,
//           hostname, lo up, fds, no_new_privs, drop caps, seccomp, execve
//   parent: EOF on the pipe = exec'd (Create returns), data = failure (Create returns the step)
//
// Diagnostics: with KINDLING_JAIL_TRACE set in kindlingd's environment, every Create prints the
// time of each parent and child phase (microseconds) to stderr.
//
// Requirements: root in the initial user namespace, Linux >= 5.12 (mount_setattr; clone3 with
// CLONE_INTO_CGROUP is used when a cgroup2 hierarchy is mounted). Host paths handed to a sandbox
// (code_dir, bind sources) must be searchable by "other": the child mounts them as its own host uid.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "sandbox/sandbox.h"

namespace kindling {

struct JailOptions {
  // Names this daemon's cgroups (/sys/fs/cgroup/<ctrl>/<instance>/<sandbox id>) and state dirs;
  // SweepLeftovers only touches this instance. [A-Za-z0-9_.-], not starting with '.'.
  std::string instance = "kindling";
  // Host dir this factory may use (the root mount point lives here); created if missing.
  // "" = /run/kindling-jail/<instance>.
  std::string state_dir;
  // Host uids/gids handed to sandboxes: uid_base + slot, slot < uid_count. A slot is reused after
  // its sandbox is destroyed: files a sandbox left in a writable bind belong to the next user of
  // the slot, so writable bind sources should be per sandbox (or cleaned by the daemon).
  uint32_t uid_base = 100000;
  uint32_t uid_count = 65536;
  // Turn on the cgroup2 "favordynmods" option (kernel >= 6.0) of the cgroup2 mount this jail uses,
  // if it is off. Moving a process between cgroups (the v1 cgroup.procs writes each sandbox needs
  // for its limits) otherwise waits for an RCU grace period when none happened for a while:
  // measured here 5-16 ms per cold start after 300 ms idle, ~0.09 ms with the option. Its cost is
  // host-wide and small: fork and exit take the slow path of a per-cpu rwsem. It persists after
  // kindlingd exits (undo: mount -o remount,nofavordynmods <cgroup2 mount>).
  bool favor_dynmods = true;
};

// Never returns null. Problems found while probing the host (no cgroups, not root, ...) are
// returned by every Create() and SweepLeftovers() call. Sandboxes may outlive their factory.
std::unique_ptr<SandboxFactory> NewJailFactory(const JailOptions& options);

// One line describing what the jail found on this host (cgroup layout, seccomp rules skipped), or
// the probe error. For logs and tests; factory must come from NewJailFactory.
std::string DescribeJailFactory(const SandboxFactory& factory);

}  // namespace kindling
