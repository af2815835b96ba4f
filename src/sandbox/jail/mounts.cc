#include "sandbox/jail/mounts.h"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <set>

namespace kindling::jail {
namespace {

// Host /etc entries runtimes read. Anything else in the host's /etc stays invisible.
const char* const kEtcEntries[] = {
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "ca-certificates.conf",
    "alternatives", "localtime", "timezone", "nsswitch.conf", "mime.types", "host.conf",
    "gai.conf", "protocols", "services", "os-release", "debian_version", "python3",
    "python3.11", "python3.12", "python3.13",
};
const char* const kTopDirs[] = {"bin", "lib", "lib32", "lib64", "libx32", "sbin"};
const char* const kDevNodes[] = {"null", "zero", "full", "random", "urandom", "tty"};

constexpr uint64_t kRoAttrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

std::string JoinPath(const std::string& a, const std::string& b) {
  if (b.empty()) return a;
  if (b[0] == '/') return a + b;
  return a + "/" + b;
}

bool ValidSandboxPath(const std::string& p) {
  if (p.empty() || p[0] != '/' || p == "/") return false;
  size_t pos = 0;
  while (pos < p.size()) {
    size_t next = p.find('/', pos + 1);
    std::string comp = p.substr(pos + 1, next == std::string::npos ? std::string::npos : next - pos - 1);
    if (comp.empty() || comp == "." || comp == "..") return false;
    pos = next == std::string::npos ? p.size() : next;
  }
  return true;
}

class Planner {
 public:
  explicit Planner(std::string root) : root_(std::move(root)) {}
  MountPlan plan;

  void Op(MountOp op) { plan.ops.push_back(std::move(op)); }
  // mkdir -p below the root for a sandbox path (the root itself exists).
  void Mkdirs(const std::string& sandbox_path, unsigned mode = 0755) {
    size_t pos = 0;
    while ((pos = sandbox_path.find('/', pos + 1)) != std::string::npos) Mkdir(sandbox_path.substr(0, pos), mode);
    Mkdir(sandbox_path, mode);
  }
  void Mkdir(const std::string& sandbox_path, unsigned mode = 0755) {
    if (sandbox_path.empty() || !made_.insert(sandbox_path).second) return;
    Op({MountOpKind::kMkdir, "", Host(sandbox_path), "", "", mode});
  }
  void MountPoint(const std::string& sandbox_path, bool dir) {
    size_t slash = sandbox_path.rfind('/');
    if (slash > 0) Mkdirs(sandbox_path.substr(0, slash));
    if (dir) {
      Mkdir(sandbox_path);
    } else if (made_.insert(sandbox_path).second) {
      Op({MountOpKind::kTouch, "", Host(sandbox_path), "", "", 0644});
    }
  }
  void Bind(const std::string& host, const std::string& sandbox_path, bool dir, uint64_t attrs) {
    MountPoint(sandbox_path, dir);
    Op({MountOpKind::kBind, host, Host(sandbox_path), "", "", 0, attrs});
  }
  void Tmpfs(const std::string& sandbox_path, unsigned long flags, const std::string& opts) {
    Mkdirs(sandbox_path);
    Op({MountOpKind::kMount, "tmpfs", Host(sandbox_path), "tmpfs", opts, flags});
  }
  void Symlink(const std::string& target, const std::string& sandbox_path) {
    if (!made_.insert(sandbox_path).second) return;
    Op({MountOpKind::kSymlink, "", Host(sandbox_path), "", target});
  }
  void File(const std::string& sandbox_path, std::string content) {
    if (!made_.insert(sandbox_path).second) return;
    Op({MountOpKind::kWriteFile, "", Host(sandbox_path), "", std::move(content), 0644});
  }
  std::string Host(const std::string& sandbox_path) const { return JoinPath(root_, sandbox_path); }

 private:
  std::string root_;
  std::set<std::string> made_;
};

}  // namespace

RootTemplate RootTemplate::Probe(const std::string& source) {
  RootTemplate t;
  t.source = source;
  t.top_dirs.push_back("usr");
  for (const char* name : kTopDirs) {
    std::string path = source + "/" + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
      if (n > 0) t.top_symlinks.push_back({name, std::string(buf, static_cast<size_t>(n))});
    } else if (S_ISDIR(st.st_mode)) {
      t.top_dirs.push_back(name);  // a host without merged /usr
    }
  }
  // A runtime image carries its runtime client.
  struct stat runtime_st;
  if (!source.empty() && stat((source + "/var/runtime").c_str(), &runtime_st) == 0 && S_ISDIR(runtime_st.st_mode))
    t.top_dirs.push_back("var/runtime");
  for (const char* name : kEtcEntries) {
    std::string path = source + "/etc/" + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0) continue;
    EtcEntry e;
    e.name = name;
    if (S_ISLNK(st.st_mode)) {
      char buf[4096];
      ssize_t n = readlink(path.c_str(), buf, sizeof buf - 1);
      if (n <= 0) continue;
      e.symlink_target.assign(buf, static_cast<size_t>(n));
    } else if (S_ISDIR(st.st_mode)) {
      e.is_dir = true;
    } else if (!S_ISREG(st.st_mode)) {
      continue;
    }
    t.etc.push_back(std::move(e));
  }
  return t;
}

Result<MountPlan> BuildMountPlan(const RootTemplate& rootfs, const SandboxSpec& spec,
                                 const std::string& root_dir) {
  Planner p(root_dir);
  // Nothing we mount may propagate back to the host (and nothing of the host's later mounts in).
  p.Op({MountOpKind::kMount, "", "/", "", "", MS_REC | MS_PRIVATE});
  p.Op({MountOpKind::kMount, "tmpfs", root_dir, "tmpfs", "mode=0755,size=1m,nr_inodes=4096",
        MS_NOSUID | MS_NODEV | MS_NOEXEC});

  for (const std::string& d : rootfs.top_dirs) p.Bind(rootfs.source + "/" + d, "/" + d, true, kRoAttrs);
  for (const auto& [name, target] : rootfs.top_symlinks) p.Symlink(target, "/" + name);

  p.Mkdir("/etc");
  for (const auto& e : rootfs.etc) {
    if (!e.symlink_target.empty()) {
      p.Symlink(e.symlink_target, "/etc/" + e.name);
    } else {
      p.Bind(rootfs.source + "/etc/" + e.name, "/etc/" + e.name, e.is_dir, kRoAttrs);
    }
  }
  p.File("/etc/passwd",
         "root:x:0:0:root:/root:/usr/sbin/nologin\n"
         "sbx_user1051:x:993:993::/tmp:/usr/sbin/nologin\n"
         "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n");
  p.File("/etc/group", "root:x:0:\nsbx_user1051:x:993:\nnogroup:x:65534:\n");
  p.File("/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
  p.File("/etc/hostname", "localhost\n");
  if (spec.network) {
    struct stat st;
    if (stat("/etc/resolv.conf", &st) == 0 && S_ISREG(st.st_mode))
      p.Bind("/etc/resolv.conf", "/etc/resolv.conf", false, kRoAttrs);
  }

  p.Mkdirs("/var/task");
  if (!spec.code_dir.empty()) {
    struct stat st;
    if (stat(spec.code_dir.c_str(), &st) != 0) return Status::Errno("code_dir " + spec.code_dir);
    if (!S_ISDIR(st.st_mode)) return Status::Error("code_dir " + spec.code_dir + " is not a directory");
    p.Op({MountOpKind::kBind, spec.code_dir, p.Host("/var/task"), "", "", 0, kRoAttrs});
  }

  p.Tmpfs("/tmp", MS_NOSUID | MS_NODEV,
          "mode=1777,size=" + std::to_string(spec.tmp_bytes ? spec.tmp_bytes : (512ull << 20)));
  p.Mkdir("/proc", 0555);
  p.Op({MountOpKind::kMount, "proc", p.Host("/proc"), "proc", "", MS_NOSUID | MS_NODEV | MS_NOEXEC});

  p.Tmpfs("/dev", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64");
  for (const char* node : kDevNodes) {
    std::string path = std::string("/dev/") + node;
    if (access(path.c_str(), F_OK) != 0) continue;
    // Device binds keep "dev" (the host's /dev mount allows devices); read-only does not stop
    // writes to device nodes, only to files.
    p.Bind(path, path, false, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
  }
  p.Symlink("/proc/self/fd", "/dev/fd");
  p.Symlink("/proc/self/fd/0", "/dev/stdin");
  p.Symlink("/proc/self/fd/1", "/dev/stdout");
  p.Symlink("/proc/self/fd/2", "/dev/stderr");
  p.Tmpfs("/dev/shm", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=" + std::to_string(64ull << 20));
  p.Op({MountOpKind::kSetAttr, "", p.Host("/dev"), "", "", 0, MOUNT_ATTR_RDONLY});

  for (const BindMount& b : spec.binds) {
    if (!ValidSandboxPath(b.sandbox_path))
      return Status::Error("bind target must be an absolute normalized path: '" + b.sandbox_path + "'");
    struct stat st;
    if (stat(b.host_path.c_str(), &st) != 0) return Status::Errno("bind source " + b.host_path);
    p.Bind(b.host_path, b.sandbox_path, S_ISDIR(st.st_mode),
           b.writable ? (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV) : kRoAttrs);
  }

  p.Op({MountOpKind::kPivotRoot, "", root_dir, "", ""});
  p.Op({MountOpKind::kSetAttr, "", "/", "", "", 0, MOUNT_ATTR_RDONLY});
  return std::move(p.plan);
}

std::string MountPlan::Describe(size_t i) const {
  if (i >= ops.size()) return "mount op " + std::to_string(i);
  const MountOp& op = ops[i];
  switch (op.kind) {
    case MountOpKind::kMkdir: return "mkdir " + op.dst;
    case MountOpKind::kTouch: return "create mount point " + op.dst;
    case MountOpKind::kSymlink: return "symlink " + op.dst + " -> " + op.data;
    case MountOpKind::kWriteFile: return "write " + op.dst;
    case MountOpKind::kMount:
      return op.fstype.empty() ? "make " + op.dst + " private" : "mount " + op.fstype + " on " + op.dst;
    case MountOpKind::kBind: return "bind " + op.src + " -> " + op.dst;
    case MountOpKind::kSetAttr: return "set mount attributes of " + op.dst;
    case MountOpKind::kPivotRoot: return "pivot_root into " + op.dst;
  }
  return "mount op";
}

namespace {
inline const char* OrNull(const std::string& s) { return s.empty() ? nullptr : s.c_str(); }

int SetAttr(const char* path, uint64_t attr_set, bool recursive) {
  struct mount_attr attr = {};
  attr.attr_set = attr_set;
  unsigned flags = AT_NO_AUTOMOUNT | (recursive ? AT_RECURSIVE : 0);
  return syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof attr) == 0 ? 0 : errno;
}
}  // namespace

int ExecuteMountPlan(const MountPlan& plan, int* failed_op) {
  const size_t n = plan.ops.size();
  for (size_t i = 0; i < n; ++i) {
    const MountOp& op = plan.ops[i];
    *failed_op = static_cast<int>(i);
    const char* dst = op.dst.c_str();
    switch (op.kind) {
      case MountOpKind::kMkdir:
        if (mkdir(dst, static_cast<mode_t>(op.flags)) != 0 && errno != EEXIST) return errno;
        break;
      case MountOpKind::kTouch: {
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, static_cast<mode_t>(op.flags));
        if (fd < 0) return errno;
        close(fd);
        break;
      }
      case MountOpKind::kSymlink:
        if (symlink(op.data.c_str(), dst) != 0) return errno;
        break;
      case MountOpKind::kWriteFile: {
        int fd = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(op.flags));
        if (fd < 0) return errno;
        ssize_t w = write(fd, op.data.data(), op.data.size());
        int e = errno;
        close(fd);
        if (w != static_cast<ssize_t>(op.data.size())) return w < 0 ? e : EIO;
        break;
      }
      case MountOpKind::kMount:
        if (mount(OrNull(op.src), dst, OrNull(op.fstype), op.flags, OrNull(op.data)) != 0) return errno;
        break;
      case MountOpKind::kBind:
        if (mount(op.src.c_str(), dst, nullptr, MS_BIND | MS_REC, nullptr) != 0) return errno;
        if (op.attr_set != 0) {
          if (int e = SetAttr(dst, op.attr_set, true)) return e;
        }
        break;
      case MountOpKind::kSetAttr:
        if (int e = SetAttr(dst, op.attr_set, op.recursive)) return e;
        break;
      case MountOpKind::kPivotRoot:
        if (chdir(dst) != 0) return errno;
        if (syscall(SYS_pivot_root, ".", ".") != 0) return errno;
        if (umount2(".", MNT_DETACH) != 0) return errno;
        if (chdir("/") != 0) return errno;
        break;
    }
  }
  *failed_op = -1;
  return 0;
}

}  // namespace kindling::jail
