"""The seccomp allow-list, proved from inside a REAL sandbox (docs/security.md, "Functions against the
host"): a provided.al2023 bootstrap written in C, compiled here, makes every system call a function
must not make, directly (no libc wrapper that could refuse first), and reports each result; then it
does ordinary work (files in /tmp, threads, loopback sockets, a subprocess, JIT-style memory) that
must keep working. The policy itself is src/sandbox/jail/seccomp_policy.cc; its unit tests are
seccomp_policy_test.cc."""

import json

import pytest

import kindling_harness as h
from kindling_harness import create_fn, invoke

# C: kindling_probe() answers an event holding "probe" with {"denied": {case: result},
# "allowed": {case: result}}; a result is "ok" or the errno's name (strerrorname_np).
PROBE_C = r'''
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static char *out;
static size_t len, cap;

static void put(const char *s) {
  size_t n = strlen(s);
  if (len + n + 1 > cap) {
    cap = (len + n + 1) * 2;
    out = realloc(out, cap);
  }
  memcpy(out + len, s, n + 1);
  len += n;
}

static void add(const char *name, long rc, int e) {
  char buf[256];
  const char *v = rc >= 0 ? "ok" : strerrorname_np(e);
  snprintf(buf, sizeof buf, "\"%s\":\"%s\",", name, v ? v : "E?");
  put(buf);
}

/* errno is read right after the call, before anything else can touch it. */
#define P(name, call)        \
  do {                       \
    errno = 0;               \
    long rc_ = (long)(call); \
    int e_ = errno;          \
    add(name, rc_, e_);      \
  } while (0)

/* clone-like calls: a child that was created anyway exits at once. */
static long reap(long rc) {
  if (rc == 0) _exit(0);
  if (rc > 0) waitpid((pid_t)rc, NULL, __WALL);
  return rc;
}

struct clone_args_v0 {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static void *thread_main(void *arg) {
  *(int *)arg = 42;
  return NULL;
}

static void denied(void) {
  char buf[512] = {0};
  struct iovec iov = {buf, sizeof buf};
  /* mounts and the file-system view */
  P("mount", syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, NULL));
  P("umount2", syscall(SYS_umount2, "/var/task", 2 /* MNT_DETACH */));
  P("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
  P("chroot", syscall(SYS_chroot, "/tmp"));
  P("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
  P("fsconfig", syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0));
  P("fsmount", syscall(SYS_fsmount, -1, 0, 0));
  P("fspick", syscall(SYS_fspick, AT_FDCWD, "/tmp", 0));
  P("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/tmp", 1 /* OPEN_TREE_CLONE */));
  P("move_mount", syscall(SYS_move_mount, -1, "", AT_FDCWD, "/tmp", 0));
  P("mount_setattr", syscall(SYS_mount_setattr, AT_FDCWD, "/var/task", 0, buf, 32));
  int mount_id = 0;
  P("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/var/task", buf, &mount_id, 0));
  P("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, buf, O_RDONLY));
  /* namespaces */
  static const struct { const char *name; unsigned long flag; } ns[] = {
      {"CLONE_NEWUSER", CLONE_NEWUSER}, {"CLONE_NEWNS", CLONE_NEWNS},   {"CLONE_NEWNET", CLONE_NEWNET},
      {"CLONE_NEWPID", CLONE_NEWPID},   {"CLONE_NEWIPC", CLONE_NEWIPC}, {"CLONE_NEWUTS", CLONE_NEWUTS},
      {"CLONE_NEWCGROUP", CLONE_NEWCGROUP}};
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    char name[64];
    snprintf(name, sizeof name, "unshare(%s)", ns[i].name);
    P(name, syscall(SYS_unshare, ns[i].flag));
    snprintf(name, sizeof name, "clone(%s)", ns[i].name);
    P(name, reap(syscall(SYS_clone, ns[i].flag | SIGCHLD, 0, 0, 0, 0)));
    struct clone_args_v0 ca = {.flags = ns[i].flag, .exit_signal = SIGCHLD};
    snprintf(name, sizeof name, "clone3(%s)", ns[i].name);
    P(name, reap(syscall(SYS_clone3, &ca, sizeof ca)));
  }
  P("unshare(CLONE_NEWTIME)", syscall(SYS_unshare, 0x80));
  int nsfd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  P("setns", syscall(SYS_setns, nsfd, 0));
  if (nsfd >= 0) close(nsfd);
  P("sethostname", syscall(SYS_sethostname, "evil", 4));
  /* other processes: kindling-init is PID 1 and holds the control socket */
  P("ptrace(PTRACE_ATTACH, 1)", syscall(SYS_ptrace, 16, 1, 0, 0));
  P("ptrace(PTRACE_TRACEME)", syscall(SYS_ptrace, 0, 0, 0, 0));
  P("process_vm_readv", syscall(SYS_process_vm_readv, 1, &iov, 1, &iov, 1, 0));
  P("process_vm_writev", syscall(SYS_process_vm_writev, 1, &iov, 1, &iov, 1, 0));
  P("kcmp", syscall(SYS_kcmp, getpid(), 1, 0 /* KCMP_FILE */, 0, 0));
  long pidfd = syscall(SYS_pidfd_open, 1, 0);
  P("pidfd_getfd", syscall(SYS_pidfd_getfd, pidfd, 3, 0));
  if (pidfd >= 0) close((int)pidfd);
  /* kernel attack surface */
  P("bpf", syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, buf, 128));
  P("perf_event_open", syscall(SYS_perf_event_open, buf, 0, -1, -1, 0));
  P("userfaultfd", syscall(SYS_userfaultfd, 0));
  P("open /dev/userfaultfd", open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
  P("io_uring_setup", syscall(SYS_io_uring_setup, 1, buf));
  P("io_uring_enter", syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0));
  P("io_uring_register", syscall(SYS_io_uring_register, -1, 0, NULL, 0));
  P("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
  P("add_key", syscall(SYS_add_key, "user", "kindling", "v", 1, -2));
  P("request_key", syscall(SYS_request_key, "user", "kindling", NULL, 0));
  P("fanotify_init", syscall(SYS_fanotify_init, 0, 0));
#ifdef SYS_modify_ldt
  P("modify_ldt", syscall(SYS_modify_ldt, 0, buf, sizeof buf));
#endif
#ifdef SYS_iopl
  P("iopl", syscall(SYS_iopl, 3));
  P("ioperm", syscall(SYS_ioperm, 0x80, 1, 1));
#endif
  /* host-wide state */
  P("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
  P("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0, "", 0));
  P("init_module", syscall(SYS_init_module, buf, sizeof buf, ""));
  P("finit_module", syscall(SYS_finit_module, -1, "", 0));
  P("delete_module", syscall(SYS_delete_module, "kindling", 0));
  P("swapon", syscall(SYS_swapon, "/tmp/swap", 0));
  P("swapoff", syscall(SYS_swapoff, "/tmp/swap"));
  P("reboot", syscall(SYS_reboot, 0xfee1dead, 672274793, 0 /* CAD_OFF */, NULL));
  P("settimeofday", syscall(SYS_settimeofday, NULL, NULL));
  P("clock_settime", syscall(SYS_clock_settime, 0, NULL));
  P("clock_adjtime", syscall(SYS_clock_adjtime, 0, buf));
  P("adjtimex", syscall(SYS_adjtimex, buf));
  P("acct", syscall(SYS_acct, "/tmp/acct"));
  P("quotactl", syscall(SYS_quotactl, 0, NULL, 0, NULL));
  P("syslog", syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0));
  P("mbind", syscall(SYS_mbind, buf, 4096, 0, NULL, 0, 0));
  P("set_mempolicy", syscall(SYS_set_mempolicy, 0, NULL, 0));
  /* argument filters */
  P("socket(AF_PACKET)", socket(AF_PACKET, SOCK_RAW, 0));
  P("socket(AF_ALG)", socket(AF_ALG, SOCK_SEQPACKET, 0));
  P("socket(AF_VSOCK)", socket(AF_VSOCK, SOCK_STREAM, 0));
  P("socket(AF_KEY)", socket(AF_KEY, SOCK_RAW, 2));
  P("socket(AF_NETLINK, NETLINK_AUDIT)", socket(AF_NETLINK, SOCK_RAW, 9));
  char c = 'x';
  P("ioctl(TIOCSTI)", syscall(SYS_ioctl, 0, TIOCSTI, &c));
  P("ioctl(TIOCSTI, sign-extended)", syscall(SYS_ioctl, 0, 0xffffffff00005412ul, &c));
  P("personality(ADDR_NO_RANDOMIZE)", syscall(SYS_personality, PER_LINUX | ADDR_NO_RANDOMIZE));
  P("personality(READ_IMPLIES_EXEC)", syscall(SYS_personality, PER_LINUX | READ_IMPLIES_EXEC));
  /* numbers no rule knows */
  P("syscall 999", syscall(999));
  P("syscall 4095", syscall(4095));
}

static void allowed(void) {
  /* files in /tmp */
  int fd = open("/tmp/kindling-probe", O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
  P("tmp open", fd);
  P("tmp write", write(fd, "hello", 5));
  P("tmp lseek", lseek(fd, 0, SEEK_SET));
  char rbuf[8] = {0};
  long r = read(fd, rbuf, 5);
  P("tmp read back", r == 5 && !memcmp(rbuf, "hello", 5) ? 0 : (errno = EIO, -1));
  close(fd);
  P("tmp unlink", unlink("/tmp/kindling-probe"));
  /* threads (glibc tries clone3 first, gets ENOSYS, falls back to clone) */
  pthread_t t;
  int v = 0;
  P("pthread_create", pthread_create(&t, NULL, thread_main, &v) == 0 ? 0 : (errno = EAGAIN, -1));
  pthread_join(t, NULL);
  P("thread ran", v == 42 ? 0 : (errno = ESRCH, -1));
  /* sockets on loopback */
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  P("loopback listen", bind(ls, (struct sockaddr *)&a, sizeof a) == 0 && listen(ls, 1) == 0 &&
                           getsockname(ls, (struct sockaddr *)&a, &al) == 0 ? 0 : -1);
  int cs = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  P("loopback connect", connect(cs, (struct sockaddr *)&a, sizeof a));
  int as = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  P("loopback accept", as);
  P("loopback send", send(cs, "ping", 4, 0));
  char pbuf[4];
  P("loopback recv", recv(as, pbuf, 4, MSG_WAITALL) == 4 && !memcmp(pbuf, "ping", 4) ? 0 : -1);
  int one = 1;
  P("ioctl(FIONBIO)", ioctl(cs, FIONBIO, &one));
  close(as);
  close(cs);
  close(ls);
  P("socket(AF_INET6)", socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  P("socket(AF_UNIX)", socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct if_nameindex *ifs = if_nameindex(); /* NETLINK_ROUTE */
  P("if_nameindex", ifs ? 0 : -1);
  if (ifs) if_freenameindex(ifs);
  /* subprocesses: fork, and posix_spawn of this bootstrap (exits with the given code) */
  pid_t child = fork();
  if (child == 0) _exit(5);
  int st = 0;
  P("fork", child > 0 && waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 5 ? 0 : -1);
  char *argv[] = {"/var/task/bootstrap", "--exit", "7", NULL};
  pid_t sp;
  int rc = posix_spawn(&sp, argv[0], NULL, NULL, argv, environ);
  P("posix_spawn", rc == 0 && waitpid(sp, &st, 0) == sp && WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : (errno = rc ? rc : ECHILD, -1));
  /* JIT-style memory */
  void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  P("mmap rw then exec", m != MAP_FAILED && mprotect(m, 4096, PROT_READ | PROT_EXEC) == 0 ? 0 : -1);
  P("unshare(CLONE_FILES)", syscall(SYS_unshare, CLONE_FILES));
  P("personality(query)", syscall(SYS_personality, 0xffffffff));
  P("getrandom", syscall(SYS_getrandom, rbuf, sizeof rbuf, 0));
}

char *kindling_probe(const char *event) {
  (void)event;
  out = NULL;
  len = cap = 0;
  put("{\"denied\":{");
  denied();
  if (out[len - 1] == ',') out[--len] = 0;
  put("},\"allowed\":{");
  allowed();
  if (out[len - 1] == ',') out[--len] = 0;
  put("}}");
  return out;
}

int kindling_probe_main(int argc, char **argv) {
  if (argc > 2 && !strcmp(argv[1], "--exit")) return atoi(argv[2]);
  return 2;
}
'''

# Every call the probe makes in denied() and the errno the policy must answer with. EPERM: a DENY
# rule; ENOSYS: no rule allows it (or clone3, which must make libc fall back); EAFNOSUPPORT /
# ENOTTY: argument filters. Nothing here may succeed.
NAMESPACES = ["CLONE_NEWUSER", "CLONE_NEWNS", "CLONE_NEWNET", "CLONE_NEWPID", "CLONE_NEWIPC", "CLONE_NEWUTS",
              "CLONE_NEWCGROUP"]
EXPECTED_DENIED = {
    **{name: "EPERM" for name in [
        "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree",
        "move_mount", "mount_setattr", "name_to_handle_at", "open_by_handle_at", "unshare(CLONE_NEWTIME)", "setns",
        "sethostname", "ptrace(PTRACE_ATTACH, 1)", "ptrace(PTRACE_TRACEME)", "process_vm_readv",
        "process_vm_writev", "kcmp", "pidfd_getfd", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
        "io_uring_enter", "io_uring_register", "keyctl", "add_key", "request_key", "fanotify_init", "modify_ldt",
        "iopl", "ioperm", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "swapon",
        "swapoff", "reboot", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "acct", "quotactl",
        "syslog", "mbind", "set_mempolicy", "personality(ADDR_NO_RANDOMIZE)", "personality(READ_IMPLIES_EXEC)"]},
    **{"unshare(%s)" % ns: "EPERM" for ns in NAMESPACES},
    **{"clone(%s)" % ns: "EPERM" for ns in NAMESPACES},
    **{"clone3(%s)" % ns: "ENOSYS" for ns in NAMESPACES},
    "open /dev/userfaultfd": "ENOENT",  # not in the sandbox's /dev at all
    "socket(AF_PACKET)": "EAFNOSUPPORT", "socket(AF_ALG)": "EAFNOSUPPORT", "socket(AF_VSOCK)": "EAFNOSUPPORT",
    "socket(AF_KEY)": "EAFNOSUPPORT", "socket(AF_NETLINK, NETLINK_AUDIT)": "ENOSYS",
    "ioctl(TIOCSTI)": "ENOTTY", "ioctl(TIOCSTI, sign-extended)": "ENOTTY",
    "syscall 999": "ENOSYS", "syscall 4095": "ENOSYS",
}


@pytest.fixture(scope="module")
def seccomp_report(client, build_dir):
    pkg = h.make_zip({"bootstrap": h.compile_bootstrap(build_dir, "seccomp-probe", extra_c=PROBE_C)})
    name = h.unique_name("seccomp")
    create_fn(client, name, runtime="provided.al2023", handler="bootstrap", zip_bytes=pkg, Timeout=20)
    resp, body = invoke(client, name, {"probe": True})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    # The sandbox is still healthy afterwards: an ordinary invoke on the same function.
    resp2, body2 = invoke(client, name, {"hello": 1})
    assert "FunctionError" not in resp2 and body2["event"] == {"hello": 1}, body2
    return body


def test_forbidden_syscalls_fail_inside_a_sandbox(seccomp_report):
    got = seccomp_report["denied"]
    import platform
    expected = dict(EXPECTED_DENIED)
    if platform.machine() != "x86_64":  # x86-only calls are not compiled in elsewhere
        for name in ("modify_ldt", "iopl", "ioperm"):
            expected.pop(name)
    assert set(got) == set(expected), (set(got) ^ set(expected))
    wrong = {k: (got[k], want) for k, want in expected.items() if got[k] != want}
    assert not wrong, "case: (got, expected) %s" % json.dumps(wrong, indent=1)
    assert len(got) >= 80  # count reported in docs/security.md


def test_ordinary_work_still_succeeds(seccomp_report):
    got = seccomp_report["allowed"]
    failed = {k: v for k, v in got.items() if v != "ok"}
    assert not failed, failed
    assert len(got) >= 20, got
