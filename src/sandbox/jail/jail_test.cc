// Escape and limit tests for the process jail. They start real sandboxes (root only) running this
// same binary in "--jail-helper" mode (bound read-only at /kt/sandbox_test), which probes from the
// inside and writes key=value lines to the control socket (fd 3).
#include "sandbox/jail/jail.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/mount.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace kindling {
namespace {

// ---------------------------------------------------------------- helper (runs inside the jail)

void Out(const std::string& key, const std::string& value) {
  std::string line = key + "=" + value + "\n";
  ssize_t unused = write(3, line.data(), line.size());
  (void)unused;
}
void OutErr(const std::string& key, int rc) { Out(key, rc == 0 ? "ok" : strerrorname_np(errno)); }

int TryCreate(const char* path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  close(fd);
  return 0;
}

std::string Slurp(const char* path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void Probe(const char* marker, int host_port) {
  Out("uid", std::to_string(getuid()) + "," + std::to_string(geteuid()));
  Out("gid", std::to_string(getgid()) + "," + std::to_string(getegid()));
  Out("ngroups", std::to_string(getgroups(0, nullptr)));
  char cwd[256] = {};
  Out("cwd", getcwd(cwd, sizeof cwd) ? cwd : "?");
  char host[64] = {};
  gethostname(host, sizeof host);
  Out("hostname", host);
  OutErr("read_root", open("/root", O_RDONLY) < 0 ? -1 : 0);
  OutErr("read_shadow", open("/etc/shadow", O_RDONLY) < 0 ? -1 : 0);
  struct stat st;
  OutErr("marker", stat(marker, &st));
  OutErr("host_home", stat("/home", &st));
  OutErr("host_var_lib", stat("/var/lib", &st));
  OutErr("host_sys", stat("/sys/kernel", &st));
  OutErr("write_root", TryCreate("/x"));
  OutErr("write_task", TryCreate("/var/task/x"));
  OutErr("write_usr", TryCreate("/usr/x"));
  OutErr("write_etc", TryCreate("/etc/x"));
  OutErr("write_etc_passwd", TryCreate("/etc/passwd"));
  OutErr("write_dev", TryCreate("/dev/x"));
  OutErr("write_kt", TryCreate("/kt/x"));
  OutErr("write_tmp", TryCreate("/tmp/x"));
  OutErr("write_devnull", TryCreate("/dev/null"));
  OutErr("mount_tmpfs", mount("tmpfs", "/tmp", "tmpfs", 0, nullptr));
  OutErr("remount_usr_rw", mount(nullptr, "/usr", nullptr, MS_REMOUNT | MS_BIND, nullptr));
  struct mount_attr attr = {};
  attr.attr_clr = MOUNT_ATTR_RDONLY;
  OutErr("mount_setattr", static_cast<int>(syscall(SYS_mount_setattr, AT_FDCWD, "/usr", 0, &attr, sizeof attr)));
  OutErr("umount_proc", umount2("/proc", MNT_DETACH));
  OutErr("unshare_user", unshare(CLONE_NEWUSER));
  OutErr("unshare_ns", unshare(CLONE_NEWNS));
  OutErr("unshare_net", unshare(CLONE_NEWNET));
  long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, nullptr, nullptr, nullptr, 0);
  if (r == 0) _exit(0);
  OutErr("clone_newuser", r > 0 ? 0 : -1);
  if (r > 0) waitpid(static_cast<pid_t>(r), nullptr, 0);
  OutErr("clone3", static_cast<int>(syscall(SYS_clone3, nullptr, 0)));
  OutErr("chroot", chroot("/tmp"));
  OutErr("ptrace", static_cast<int>(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr)));
  OutErr("bpf", static_cast<int>(syscall(SYS_bpf, 0, nullptr, 0)));
  OutErr("personality_norandom", personality(ADDR_NO_RANDOMIZE) == -1 ? -1 : 0);
  OutErr("personality_query", personality(0xffffffff) == -1 ? -1 : 0);
  OutErr("setuid0", setuid(0));
  OutErr("keyctl", static_cast<int>(syscall(SYS_keyctl, 0, 0, 0, 0, 0)));
  pid_t child = fork();
  if (child == 0) _exit(7);
  int ws = 0;
  waitpid(child, &ws, 0);
  Out("fork", child > 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 7 ? "ok" : "fail");
  std::thread t([] {});
  t.join();
  Out("thread", "ok");

  std::istringstream status(Slurp("/proc/self/status"));
  std::string line;
  while (std::getline(status, line)) {
    for (const char* k : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp"}) {
      if (line.rfind(std::string(k) + ":", 0) == 0) {
        std::string v = line.substr(strlen(k) + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        Out(k, v);
      }
    }
  }
  std::string pids;
  if (DIR* d = opendir("/proc")) {
    std::vector<int> v;
    while (dirent* e = readdir(d)) {
      if (isdigit(static_cast<unsigned char>(e->d_name[0]))) v.push_back(atoi(e->d_name));
    }
    closedir(d);
    std::sort(v.begin(), v.end());
    for (int p : v) pids += (pids.empty() ? "" : ",") + std::to_string(p);
  }
  Out("pids", pids);
  std::string fds;
  if (DIR* d = opendir("/proc/self/fd")) {
    std::vector<int> v;
    int self = dirfd(d);
    while (dirent* e = readdir(d)) {
      if (isdigit(static_cast<unsigned char>(e->d_name[0])) && atoi(e->d_name) != self) v.push_back(atoi(e->d_name));
    }
    closedir(d);
    std::sort(v.begin(), v.end());
    for (int p : v) fds += (fds.empty() ? "" : ",") + std::to_string(p);
  }
  Out("fds", fds);
  std::string cg = Slurp("/proc/self/cgroup");
  Out("cgroup_lines_rooted", cg.find(":/\n") != std::string::npos && cg.find("kindling") == std::string::npos ? "yes" : cg);

  // Network: the host's listener is unreachable, our own loopback works.
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(host_port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  OutErr("connect_host", connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a));
  close(s);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  a.sin_port = htons(9001);
  int rc = bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a);
  if (rc == 0) rc = listen(l, 1);
  int c = socket(AF_INET, SOCK_STREAM, 0);
  if (rc == 0) rc = connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
  OutErr("loopback", rc);
  sockaddr_in ext{};
  ext.sin_family = AF_INET;
  ext.sin_port = htons(53);
  inet_pton(AF_INET, "8.8.8.8", &ext.sin_addr);
  int u = socket(AF_INET, SOCK_DGRAM, 0);
  OutErr("connect_external", connect(u, reinterpret_cast<sockaddr*>(&ext), sizeof ext));
  Out("done", "1");
}

int HelperMain(int argc, char** argv) {
  std::string cmd = argc > 2 ? argv[2] : "";
  if (cmd == "probe") {
    Probe(argc > 3 ? argv[3] : "/nonexistent", argc > 4 ? atoi(argv[4]) : 1);
  } else if (cmd == "filltmp") {
    int fd = open("/tmp/fill", O_WRONLY | O_CREAT, 0600);
    static char buf[1 << 16];
    memset(buf, 'x', sizeof buf);
    uint64_t total = 0;
    for (;;) {
      ssize_t n = write(fd, buf, sizeof buf);
      if (n <= 0) {
        Out("errno", strerrorname_np(errno));
        break;
      }
      total += static_cast<uint64_t>(n);
    }
    Out("bytes", std::to_string(total));
  } else if (cmd == "alloc") {
    // Touch memory until the OOM killer stops us.
    for (uint64_t mb = 1;; ++mb) {
      char* p = static_cast<char*>(malloc(1 << 20));
      if (!p) {
        Out("malloc_failed_mb", std::to_string(mb));
        pause();
      }
      memset(p, 1, 1 << 20);
    }
  } else if (cmd == "forkbomb") {
    int ok = 0, err = 0;
    for (int i = 0; i < 500; ++i) {
      pid_t p = fork();
      if (p == 0) {
        pause();
        _exit(0);
      }
      if (p < 0) {
        err = errno;
        break;
      }
      ++ok;
    }
    Out("forked", std::to_string(ok));
    Out("errno", err ? strerrorname_np(err) : "none");
    pause();
  } else if (cmd == "tick") {
    // One byte per millisecond on the control socket, forever.
    for (;;) {
      if (write(3, "t", 1) != 1) _exit(1);
      usleep(1000);
    }
  } else if (cmd == "secret") {
    int fd = open("/tmp/secret", O_WRONLY | O_CREAT, 0600);
    ssize_t unused = write(fd, "s", 1);
    (void)unused;
    close(fd);
    Out("written", "1");
    pause();
  } else if (cmd == "ls") {
    std::string names;
    if (DIR* d = opendir(argc > 3 ? argv[3] : "/tmp")) {
      while (dirent* e = readdir(d)) {
        if (e->d_name[0] != '.') names += std::string(e->d_name) + ",";
      }
      closedir(d);
    }
    Out("names", names);
  } else {
    return 100;
  }
  return 0;
}

// ---------------------------------------------------------------- test side

bool IsRoot() { return geteuid() == 0; }

class JailTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!IsRoot()) return;
    char tmpl[] = "/tmp/kindling-jail-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    chmod(dir_.c_str(), 0755);
    kt_ = dir_ + "/kt";
    mkdir(kt_.c_str(), 0755);
    // A copy of this binary, world-readable, for the sandbox to run.
    std::ifstream src("/proc/self/exe", std::ios::binary);
    std::ofstream dst(kt_ + "/sandbox_test", std::ios::binary);
    dst << src.rdbuf();
    dst.close();
    chmod((kt_ + "/sandbox_test").c_str(), 0755);
    code_ = dir_ + "/code";
    mkdir(code_.c_str(), 0755);
    std::ofstream(code_ + "/handler.txt") << "code";
    marker_ = dir_ + "/host-marker";
    std::ofstream(marker_) << "secret";
    JailOptions o;
    o.instance = "kindling-jail-test";
    o.state_dir = dir_ + "/state";
    o.uid_base = 200000;
    o.uid_count = 1000;
    factory_ = NewJailFactory(o).release();
    fprintf(stderr, "jail: %s\n", DescribeJailFactory(*factory_).c_str());
  }
  static void TearDownTestSuite() {
    delete factory_;
    factory_ = nullptr;
    for (const char* h : {"unified", "memory", "cpu", "pids", "freezer"}) {
      rmdir((std::string("/sys/fs/cgroup/") + h + "/kindling-jail-test").c_str());
    }
    if (!dir_.empty()) {
      std::string cmd = "rm -rf " + dir_;
      int unused = system(cmd.c_str());
      (void)unused;
    }
  }
  void SetUp() override {
    if (!IsRoot()) GTEST_SKIP() << "needs root";
    if (access("/sys/fs/cgroup/memory", F_OK) != 0 && access("/sys/fs/cgroup/cgroup.controllers", F_OK) != 0)
      GTEST_SKIP() << "no cgroups";
  }

  SandboxSpec Spec(const std::string& id, std::vector<std::string> helper_args) {
    SandboxSpec s;
    s.id = id;
    s.argv = {"/kt/sandbox_test", "--jail-helper"};
    for (auto& a : helper_args) s.argv.push_back(a);
    s.env = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8"};
    s.code_dir = code_;
    s.binds = {{kt_, "/kt", false}};
    s.memory_bytes = 128ull << 20;
    s.tmp_bytes = 8ull << 20;
    return s;
  }

  std::unique_ptr<Sandbox> Start(const SandboxSpec& spec) {
    auto r = factory_->Create(spec);
    EXPECT_TRUE(r.ok()) << r.status().message();
    if (!r.ok()) return nullptr;
    return std::move(r.value());
  }

  // Reads the control socket until EOF or timeout; parses key=value lines.
  static std::map<std::string, std::string> ReadKv(Sandbox& sb, int timeout_ms = 10000,
                                                   const std::string& until_key = "") {
    std::string buf;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    std::map<std::string, std::string> kv;
    for (;;) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now()).count());
      if (left <= 0) break;
      pollfd p = {sb.control_fd(), POLLIN, 0};
      if (poll(&p, 1, left) <= 0) break;
      char tmp[4096];
      ssize_t n = read(sb.control_fd(), tmp, sizeof tmp);
      if (n <= 0) break;
      buf.append(tmp, static_cast<size_t>(n));
      kv.clear();
      std::istringstream ss(buf);
      std::string line;
      while (std::getline(ss, line)) {
        size_t eq = line.find('=');
        if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
      }
      if (!until_key.empty() && kv.count(until_key)) break;
    }
    return kv;
  }

  static bool WaitExit(Sandbox& sb, int timeout_ms) {
    pollfd p = {sb.exit_fd(), POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1;
  }

  static pid_t HostPid(Sandbox& sb) {
    std::ifstream f("/proc/self/fdinfo/" + std::to_string(sb.exit_fd()));
    std::string line;
    while (std::getline(f, line)) {
      if (line.rfind("Pid:", 0) == 0) return atoi(line.c_str() + 4);
    }
    return -1;
  }

  static std::vector<std::string> CgroupDirs(const std::string& id) {
    std::vector<std::string> out;
    for (const char* h : {"unified", "memory", "cpu", "pids", "freezer"}) {
      out.push_back(std::string("/sys/fs/cgroup/") + h + "/kindling-jail-test/" + id);
    }
    return out;
  }

  static inline SandboxFactory* factory_ = nullptr;
  static inline std::string dir_, kt_, code_, marker_;
};

TEST_F(JailTest, ProbeFromInside) {
  // A host TCP listener on 127.0.0.1 that the sandbox must not reach.
  int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(l, 4), 0);
  socklen_t len = sizeof a;
  getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);

  auto sb = Start(Spec("probe", {"probe", marker_, std::to_string(port)}));
  ASSERT_TRUE(sb);
  auto kv = ReadKv(*sb);
  ASSERT_TRUE(WaitExit(*sb, 10000));
  SandboxExit ex = sb->Exit();
  EXPECT_TRUE(ex.exited);
  EXPECT_TRUE(WIFEXITED(ex.wait_status) && WEXITSTATUS(ex.wait_status) == 0) << ex.wait_status;
  ASSERT_EQ(kv["done"], "1") << "helper did not finish";
  for (auto& [k, v] : kv) fprintf(stderr, "  %s=%s\n", k.c_str(), v.c_str());

  EXPECT_EQ(kv["uid"], "993,993");
  EXPECT_EQ(kv["gid"], "993,993");
  EXPECT_EQ(kv["ngroups"], "0");
  EXPECT_EQ(kv["cwd"], "/var/task");
  EXPECT_EQ(kv["hostname"], "localhost");
  EXPECT_NE(kv["read_root"], "ok");
  EXPECT_NE(kv["read_shadow"], "ok");
  EXPECT_EQ(kv["marker"], "ENOENT");
  EXPECT_EQ(kv["host_home"], "ENOENT");
  EXPECT_EQ(kv["host_var_lib"], "ENOENT");
  EXPECT_EQ(kv["host_sys"], "ENOENT");
  for (const char* k : {"write_root", "write_task", "write_usr", "write_etc", "write_etc_passwd",
                        "write_dev", "write_kt"}) {
    EXPECT_NE(kv[k], "ok") << k;
  }
  EXPECT_EQ(kv["write_tmp"], "ok");
  EXPECT_EQ(kv["write_devnull"], "ok");
  for (const char* k : {"mount_tmpfs", "remount_usr_rw", "mount_setattr", "umount_proc", "unshare_user",
                        "unshare_ns", "unshare_net", "clone_newuser", "chroot", "ptrace", "bpf",
                        "personality_norandom", "keyctl"}) {
    EXPECT_EQ(kv[k], "EPERM") << k;
  }
  EXPECT_EQ(kv["clone3"], "ENOSYS");
  EXPECT_NE(kv["setuid0"], "ok");  // EINVAL: uid 0 is not even mapped
  EXPECT_EQ(kv["personality_query"], "ok");
  EXPECT_EQ(kv["fork"], "ok");
  EXPECT_EQ(kv["thread"], "ok");
  EXPECT_EQ(kv["CapEff"], "0000000000000000");
  EXPECT_EQ(kv["CapPrm"], "0000000000000000");
  EXPECT_EQ(kv["CapInh"], "0000000000000000");
  EXPECT_EQ(kv["CapBnd"], "0000000000000000");
  EXPECT_EQ(kv["CapAmb"], "0000000000000000");
  EXPECT_EQ(kv["NoNewPrivs"], "1");
  EXPECT_EQ(kv["Seccomp"], "2");
  EXPECT_EQ(kv["pids"], "1");  // only itself (the fork above was reaped)
  EXPECT_EQ(kv["fds"], "0,1,2,3");
  EXPECT_EQ(kv["cgroup_lines_rooted"], "yes");
  EXPECT_NE(kv["connect_host"], "ok");
  EXPECT_EQ(kv["loopback"], "ok");
  EXPECT_NE(kv["connect_external"], "ok");
  close(l);
}

TEST_F(JailTest, ShellScriptRunsAsSandboxUser) {
  SandboxSpec s = Spec("shell", {});
  s.argv = {"/bin/sh", "-c", "echo \"id=$(id -u):$(id -g)\" >&3; cat /var/task/handler.txt >&3; echo >&3; "
                             "ls /proc | grep -c '^[0-9]' >&3"};
  auto sb = Start(s);
  ASSERT_TRUE(sb);
  std::string out;
  for (;;) {
    pollfd p = {sb->control_fd(), POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) break;
    char b[256];
    ssize_t n = read(sb->control_fd(), b, sizeof b);
    if (n <= 0) break;
    out.append(b, static_cast<size_t>(n));
  }
  EXPECT_EQ(out, "id=993:993\ncode\n3\n");  // sh, ls and grep (the $(...) subshells ended)
}

TEST_F(JailTest, Python3RunsWithSslAndTimezone) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  SandboxSpec s = Spec("python", {});
  s.argv = {"/usr/bin/python3", "-c",
            "import os, ssl, json, socket, time, mimetypes\n"
            "ctx = ssl.create_default_context()\n"
            "n = len(ctx.get_ca_certs()) + ctx.cert_store_stats()['x509']\n"
            "os.write(3, json.dumps({'certs': n > 0, 'host': socket.gethostname(),\n"
            "  'lo': socket.gethostbyname('localhost'), 'tz': time.tzname[0],\n"
            "  'mime': mimetypes.guess_type('a.json')[0]}).encode())\n"};
  auto sb = Start(s);
  ASSERT_TRUE(sb);
  ASSERT_TRUE(WaitExit(*sb, 10000));
  std::string out;
  char b[512];
  ssize_t n;
  while ((n = read(sb->control_fd(), b, sizeof b)) > 0) out.append(b, static_cast<size_t>(n));
  EXPECT_EQ(out, R"({"certs": true, "host": "localhost", "lo": "127.0.0.1", "tz": "UTC", "mime": "application/json"})");
  SandboxExit ex = sb->Exit();
  EXPECT_TRUE(WIFEXITED(ex.wait_status) && WEXITSTATUS(ex.wait_status) == 0) << ex.wait_status;
}

TEST_F(JailTest, TmpIsLimitedToTmpBytes) {
  SandboxSpec s = Spec("filltmp", {"filltmp"});
  s.tmp_bytes = 4ull << 20;
  auto sb = Start(s);
  ASSERT_TRUE(sb);
  auto kv = ReadKv(*sb, 10000, "bytes");
  EXPECT_EQ(kv["errno"], "ENOSPC");
  uint64_t bytes = strtoull(kv["bytes"].c_str(), nullptr, 10);
  EXPECT_LE(bytes, 4ull << 20);
  EXPECT_GE(bytes, 3ull << 20);
}

TEST_F(JailTest, MemoryLimitOomKills) {
  SandboxSpec s = Spec("oom", {"alloc"});
  s.memory_bytes = 32ull << 20;
  auto sb = Start(s);
  ASSERT_TRUE(sb);
  ASSERT_TRUE(WaitExit(*sb, 20000));
  SandboxExit ex = sb->Exit();
  EXPECT_TRUE(ex.exited);
  EXPECT_TRUE(WIFSIGNALED(ex.wait_status) && WTERMSIG(ex.wait_status) == SIGKILL) << ex.wait_status;
  EXPECT_TRUE(ex.oom_killed);
  EXPECT_GT(sb->OomKills(), 0u);
  EXPECT_GE(sb->PeakMemoryBytes(), 24ull << 20);
  EXPECT_LE(sb->PeakMemoryBytes(), 33ull << 20);
}

TEST_F(JailTest, PidsLimitStopsForkBomb) {
  SandboxSpec s = Spec("forkbomb", {"forkbomb"});
  s.pids_max = 20;
  auto sb = Start(s);
  ASSERT_TRUE(sb);
  auto kv = ReadKv(*sb, 10000, "errno");
  EXPECT_EQ(kv["errno"], "EAGAIN");
  EXPECT_EQ(kv["forked"], "19");
}

TEST_F(JailTest, FreezeStopsProgressThawResumesKillWorksFrozen) {
  auto sb = Start(Spec("tick", {"tick"}));
  ASSERT_TRUE(sb);
  auto drain = [&](int ms) {
    size_t total = 0;
    auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
      pollfd p = {sb->control_fd(), POLLIN, 0};
      poll(&p, 1, 10);
      char b[4096];
      ssize_t n;
      while ((n = read(sb->control_fd(), b, sizeof b)) > 0) total += static_cast<size_t>(n);
    }
    return total;
  };
  EXPECT_GT(drain(100), 20u);
  ASSERT_TRUE(sb->Freeze().ok());
  drain(20);  // bytes written before the freeze took effect
  EXPECT_EQ(drain(200), 0u);
  ASSERT_TRUE(sb->Freeze().ok());  // idempotent
  ASSERT_TRUE(sb->Thaw().ok());
  EXPECT_GT(drain(100), 20u);
  ASSERT_TRUE(sb->Freeze().ok());
  ASSERT_TRUE(sb->Kill().ok());
  ASSERT_TRUE(WaitExit(*sb, 5000));
  SandboxExit ex = sb->Exit();
  EXPECT_TRUE(ex.exited);
  EXPECT_TRUE(WIFSIGNALED(ex.wait_status));
}

TEST_F(JailTest, DestroyLeavesNothing) {
  auto sb = Start(Spec("destroy", {"forkbomb"}));
  ASSERT_TRUE(sb);
  auto kv = ReadKv(*sb, 10000, "errno");
  pid_t pid = HostPid(*sb);
  ASSERT_GT(pid, 0);
  for (auto& d : CgroupDirs("destroy")) {
    if (access(("/sys/fs/cgroup/" + d.substr(15, d.find('/', 15) - 15)).c_str(), F_OK) == 0) {
      // hierarchy exists on this host
    }
  }
  EXPECT_EQ(access("/sys/fs/cgroup/memory/kindling-jail-test/destroy", F_OK), 0);
  sb.reset();
  EXPECT_NE(kill(pid, 0), 0);
  for (auto& d : CgroupDirs("destroy")) EXPECT_NE(access(d.c_str(), F_OK), 0) << d;
}

TEST_F(JailTest, SandboxesCannotSeeEachOthersTmp) {
  auto a = Start(Spec("tmp-a", {"secret"}));
  ASSERT_TRUE(a);
  ASSERT_EQ(ReadKv(*a, 10000, "written")["written"], "1");
  auto b = Start(Spec("tmp-b", {"ls", "/tmp"}));
  ASSERT_TRUE(b);
  auto kv = ReadKv(*b);
  EXPECT_EQ(kv["names"], "");
}

TEST_F(JailTest, CreateFailureNamesTheStep) {
  SandboxSpec s = Spec("badexec", {});
  s.argv = {"/nonexistent/binary"};
  auto r = factory_->Create(s);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("execve"), std::string::npos) << r.status().message();
  EXPECT_EQ(r.status().err(), ENOENT);
  for (auto& d : CgroupDirs("badexec")) EXPECT_NE(access(d.c_str(), F_OK), 0) << d;

  SandboxSpec s2 = Spec("badbind", {"ls"});
  // A source below a directory the sandbox's host uid cannot search.
  std::string priv = dir_ + "/private";
  mkdir(priv.c_str(), 0700);
  mkdir((priv + "/sub").c_str(), 0755);
  s2.binds.push_back({priv + "/sub", "/secret", false});
  auto r2 = factory_->Create(s2);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("bind " + priv), std::string::npos) << r2.status().message();
  EXPECT_EQ(r2.status().err(), EACCES);
}

TEST_F(JailTest, WritableBindIsWritable) {
  std::string out = dir_ + "/out";
  mkdir(out.c_str(), 0777);
  chmod(out.c_str(), 0777);
  SandboxSpec s = Spec("wbind", {});
  s.binds.push_back({out, "/mnt/out", true});
  s.argv = {"/bin/sh", "-c", "echo hi > /mnt/out/f && echo ok >&3"};
  auto sb = Start(s);
  ASSERT_TRUE(sb);
  ASSERT_TRUE(WaitExit(*sb, 5000));
  std::ifstream f(out + "/f");
  std::string line;
  std::getline(f, line);
  EXPECT_EQ(line, "hi");
  struct stat st;
  ASSERT_EQ(stat((out + "/f").c_str(), &st), 0);
  EXPECT_GE(st.st_uid, 200000u);  // the sandbox's own host uid, never root
}

TEST_F(JailTest, SweepLeftoversRemovesCgroups) {
  // A leftover from a "crashed" run: cgroup dirs with a live process.
  std::vector<std::string> dirs;
  for (const char* h : {"unified", "memory", "pids"}) {
    std::string d = std::string("/sys/fs/cgroup/") + h + "/kindling-jail-test/leftover";
    if (mkdir(d.c_str(), 0755) == 0) dirs.push_back(d);
  }
  ASSERT_FALSE(dirs.empty());
  pid_t child = fork();
  if (child == 0) {
    for (;;) pause();
  }
  for (auto& d : dirs) {
    std::ofstream(d + "/cgroup.procs") << child;
  }
  ASSERT_TRUE(factory_->SweepLeftovers().ok());
  int ws = 0;
  ASSERT_EQ(waitpid(child, &ws, 0), child);
  EXPECT_TRUE(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
  for (auto& d : dirs) EXPECT_NE(access(d.c_str(), F_OK), 0) << d;
}

TEST_F(JailTest, CreateAfterIdle) {
  // The first cgroup v1 cgroup.procs write after ~100 ms without one can wait for an RCU grace
  // period; report what a cold start after idle costs (KINDLING_JAIL_TRACE=1 shows the phases).
  SandboxSpec s = Spec("idle", {});
  s.argv = {"/usr/bin/true"};
  s.binds.clear();
  std::vector<double> ms;
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    s.id = "idle" + std::to_string(i);
    auto t0 = std::chrono::steady_clock::now();
    auto r = factory_->Create(s);
    auto t1 = std::chrono::steady_clock::now();
    ASSERT_TRUE(r.ok()) << r.status().message();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    WaitExit(*r.value(), 5000);
  }
  std::sort(ms.begin(), ms.end());
  fprintf(stderr, "jail /usr/bin/true after 300 ms idle: Create p50 %.2f ms max %.2f ms\n", ms[ms.size() / 2], ms.back());
}

TEST_F(JailTest, LaunchTimeOfTrue) {
  SandboxSpec s = Spec("true", {});
  s.argv = {"/usr/bin/true"};
  s.binds.clear();
  auto run = [&](const std::string& id, std::vector<double>* create_ms, std::vector<double>* total_ms) {
    s.id = id;
    auto t0 = std::chrono::steady_clock::now();
    auto r = factory_->Create(s);
    auto t1 = std::chrono::steady_clock::now();
    if (!r.ok()) {
      ADD_FAILURE() << r.status().message();
      return;
    }
    WaitExit(*r.value(), 5000);
    auto t2 = std::chrono::steady_clock::now();
    r.value().reset();
    auto t3 = std::chrono::steady_clock::now();
    if (create_ms) create_ms->push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    if (total_ms) total_ms->push_back(std::chrono::duration<double, std::milli>(t3 - t0).count());
    (void)t2;
  };
  for (int i = 0; i < 10; ++i) run("warm" + std::to_string(i), nullptr, nullptr);
  std::vector<double> create, total;
  for (int i = 0; i < 200; ++i) run("t" + std::to_string(i), &create, &total);
  std::sort(create.begin(), create.end());
  std::sort(total.begin(), total.end());
  fprintf(stderr, "jail /usr/bin/true: Create p50 %.2f ms p90 %.2f ms; Create+exit+destroy p50 %.2f ms p90 %.2f ms\n",
          create[create.size() / 2], create[create.size() * 9 / 10], total[total.size() / 2],
          total[total.size() * 9 / 10]);

  // Throughput: 2 threads creating and destroying for ~2 s.
  std::atomic<int> done{0};
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  std::vector<std::thread> ts;
  for (int t = 0; t < 2; ++t) {
    ts.emplace_back([&, t] {
      SandboxSpec mine = s;
      for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
        mine.id = "rate-" + std::to_string(t) + "-" + std::to_string(i);
        auto r = factory_->Create(mine);
        if (!r.ok()) {
          ADD_FAILURE() << r.status().message();
          return;
        }
        WaitExit(*r.value(), 5000);
        ++done;
      }
    });
  }
  auto start = std::chrono::steady_clock::now();
  for (auto& t : ts) t.join();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  fprintf(stderr, "jail /usr/bin/true: %.0f creations/s (2 threads, create+exit+destroy)\n", done / secs);
}

}  // namespace
}  // namespace kindling

int main(int argc, char** argv) {
  if (argc > 1 && strcmp(argv[1], "--jail-helper") == 0) return kindling::HelperMain(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
