// The sandbox's file-system view: a small tmpfs root assembled from read-only binds, then
// pivot_root'ed into.
//
// The parent (kindlingd) turns a SandboxSpec into a MountPlan: a flat list of operations with every
// path and option string prepared in advance. The sandbox's first process runs the plan with
// ExecuteMountPlan, which only makes system calls (no allocation, no locks): it runs between
// clone3 and execve in a child of a multithreaded daemon.
//
// The resulting tree (all read-only unless noted):
//   /            tmpfs (1 MiB, nosuid nodev noexec), remounted read-only after pivot_root
//   /usr         the root file system's /usr (recursive bind); /bin /lib /lib64 /sbin as there
//                (symlinks into usr on merged-/usr trees)
//   /etc         generated passwd, group (sbx_user1051 = 993), hosts, hostname; binds of the
//                root file system's entries runtimes need (ld.so.cache, ssl, ca-certificates,
//                alternatives, localtime, nsswitch.conf, mime.types, python3*)
// The root file system is spec.root_fs (a mounted runtime image) or, when empty, the host's own.
//   /var/runtime the runtime image's runtime client (when the root file system has one)
//   /var/task    spec.code_dir, or an empty directory
//   /tmp         private tmpfs of spec.tmp_bytes, mode 1777             (writable)
//   /proc        procfs of the sandbox's pid namespace
//   /dev         tmpfs with binds of null zero full random urandom tty, fd/std* symlinks,
//                /dev/shm (small tmpfs, writable)
//   spec.binds   read-only unless writable; parents are created in the tmpfs root
// Host paths the sandbox needs (code_dir, bind sources) must be reachable by the sandbox's host
// uid (world-searchable): the child mounts them after it switched away from host root.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "sandbox/sandbox.h"

namespace kindling::jail {

enum class MountOpKind : uint8_t {
  kMkdir,      // mkdir(dst, mode); EEXIST is fine
  kTouch,      // create empty file dst (bind target)
  kSymlink,    // symlink(data -> dst)
  kWriteFile,  // create dst with contents data
  kMount,      // mount(src, dst, fstype, flags, data); empty strings pass NULL
  kBind,       // mount(src, dst, MS_BIND|MS_REC) then mount_setattr(attr_set) when non-zero
  kSetAttr,    // mount_setattr(dst, attr_set; recursive)
  kPivotRoot,  // chdir(dst); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/")
};

struct MountOp {
  MountOpKind kind;
  std::string src, dst, fstype, data;
  unsigned long flags = 0;  // mount flags, or the mode for kMkdir/kTouch/kWriteFile
  uint64_t attr_set = 0;    // MOUNT_ATTR_* for kBind/kSetAttr
  bool recursive = false;   // kSetAttr: AT_RECURSIVE
};

struct MountPlan {
  std::vector<MountOp> ops;
  std::string Describe(size_t index) const;  // "bind /host/code -> /var/task" (for errors)
};

// What a root file system (the host's, or a mounted runtime image) offers to sandboxes, inspected
// once per root (stat of /etc entries etc.).
struct RootTemplate {
  std::string source;  // host directory of the root file system; "" = the host's /
  std::vector<std::string> top_dirs;  // e.g. "usr", "var/runtime": bound read-only at /<name>
  std::vector<std::pair<std::string, std::string>> top_symlinks;  // {name, target}: bin -> usr/bin
  struct EtcEntry {
    std::string name;
    bool is_dir = false;
    std::string symlink_target;  // non-empty: recreate as a symlink
  };
  std::vector<EtcEntry> etc;
  static RootTemplate Probe(const std::string& source = "");
};

// The sandbox user (Lambda's sbx_user1051).
constexpr unsigned kSandboxUid = 993;
constexpr unsigned kSandboxGid = 993;

// Builds the plan for one sandbox, mounting the new root at root_dir (an existing, empty host
// directory that every sandbox may share: each mounts over it in its own mount namespace).
Result<MountPlan> BuildMountPlan(const RootTemplate& rootfs, const SandboxSpec& spec,
                                 const std::string& root_dir);

// Child side, async-signal-safe. Runs ops in order; returns 0, or an errno with *failed_op set.
int ExecuteMountPlan(const MountPlan& plan, int* failed_op);

}  // namespace kindling::jail
