#include "init/init.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "init/buffer.h"
#include "init/http.h"
#include "init/protocol.h"

extern char** environ;

namespace kindling::init {
namespace {

using protocol::FrameType;

constexpr size_t kReadChunk = 64 * 1024;          // socket/pipe read size
constexpr size_t kCtlHighWater = 1 << 20;         // stop reading runtime output above this
constexpr size_t kKeepBuffer = 256 * 1024;        // idle buffers above this are freed
constexpr size_t kInlineField = 256;              // smaller frame fields are copied, not gathered
constexpr int kExitFlushMs = 5000;                // bound on flushing the last frames at exit
// Runtime output is forwarded in frames of up to kLogFlushBytes, at most kLogFlushNs after it was
// read, or with the invocation's result, whichever comes first: a runtime that writes in many small
// pieces (unbuffered print) does not wake the worker once per piece.
constexpr size_t kLogFlushBytes = 64 * 1024;
constexpr uint64_t kLogFlushNs = 5 * 1000 * 1000;

// epoll tags: fixed fds, then connections as (generation << 32 | slot).
constexpr uint64_t kTagCtl = 1, kTagListen = 2, kTagSignal = 3, kTagPipe = 4;
constexpr uint64_t kTagConn = 1ull << 31;

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + ts.tv_nsec;
}

void AppendU64(std::string* s, uint64_t v) {
  char b[24];
  auto r = std::to_chars(b, b + sizeof b, v);
  s->append(b, r.ptr - b);
}

void AppendMs(std::string* s, uint64_t ns) {  // "%.2f" of ns in ms, rounded
  uint64_t centi = (ns + 5000) / 10000;
  AppendU64(s, centi / 100);
  s->push_back('.');
  s->push_back(static_cast<char>('0' + centi / 10 % 10));
  s->push_back(static_cast<char>('0' + centi % 10));
}

// Appends s to out without CR, LF and NUL (header values come from the worker; keep them from
// splitting the response head).
void AppendHeaderValue(std::string* out, std::string_view s) {
  if (s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos) {
    out->append(s);
    return;
  }
  for (char c : s)
    if (c != '\r' && c != '\n' && c != '\0') out->push_back(c);
}

std::string JsonError(std::string_view message, std::string_view type) {
  std::string s = "{\"errorMessage\":\"";
  s.append(message);
  s.append("\",\"errorType\":\"");
  s.append(type);
  s.append("\"}");
  return s;
}

// The frames of one control-socket write: small pieces are copied into scratch, large fields are
// referenced in place and gathered by writev (the referenced memory must outlive Send).
class FrameBatch {
 public:
  FrameBatch() {
    scratch_.reserve(4096);
    segs_.reserve(32);
  }
  bool empty() const { return segs_.empty(); }
  void Clear() {
    scratch_.clear();
    segs_.clear();
  }
  void Add(FrameType type, std::initializer_list<std::string_view> fields) {
    size_t bytes = 0;
    for (auto f : fields) bytes += protocol::kFieldHeaderBytes + f.size();
    char h[protocol::kFrameHeaderBytes];
    protocol::EncodeFrameHeader(type, bytes, h);
    Copy(h, sizeof h);
    for (auto f : fields) {
      char fh[protocol::kFieldHeaderBytes];
      protocol::EncodeFieldHeader(static_cast<uint32_t>(f.size()), fh);
      Copy(fh, sizeof fh);
      if (f.size() <= kInlineField) {
        Copy(f.data(), f.size());
      } else {
        segs_.push_back({f.data(), 0, f.size()});
      }
    }
  }
  // Fills iov (at most max entries; the batch never holds more than a handful), returns the count.
  int Iov(iovec* iov, int max, size_t* total) const {
    int n = 0;
    *total = 0;
    for (const Seg& s : segs_) {
      if (n == max) break;
      iov[n].iov_base = const_cast<char*>(s.ext ? s.ext : scratch_.data() + s.off);
      iov[n].iov_len = s.len;
      *total += s.len;
      ++n;
    }
    return n;
  }

 private:
  struct Seg {
    const char* ext;  // nullptr: bytes at scratch_[off]
    size_t off;
    size_t len;
  };
  void Copy(const char* p, size_t n) {
    if (n == 0) return;
    if (!segs_.empty() && !segs_.back().ext) {
      segs_.back().len += n;
    } else {
      segs_.push_back({nullptr, scratch_.size(), n});
    }
    scratch_.append(p, n);
  }
  std::string scratch_;
  std::vector<Seg> segs_;
};

struct Conn {
  enum State { kHead, kBody, kChunked, kDiscard, kWaitNext, kClosing };
  int fd = -1;
  uint32_t gen = 0;
  uint64_t last_active = 0;
  State state = kHead;
  bool want_out = false;     // EPOLLOUT registered
  bool half_closed = false;  // the peer shut down its side while waiting in /next
  Buffer in;
  Buffer out;
  size_t scan = 0;
  // The request being read (owned: `in` may move while its body arrives).
  http::Route route = http::Route::kNotFound;
  std::string method;
  std::string id;
  std::string error_type;
  bool keep_alive = true;
  size_t head_bytes = 0;
  uint64_t content_length = 0;
  size_t chunk_pos = 0, chunk_out = 0;
  http::ChunkedDecoder chunk;
  uint64_t discard_left = 0;
  int reject_status = 0;  // response to send once a discarded body is consumed
  std::string reject_body;
};

class Init {
 public:
  explicit Init(const Options& opts) : opts_(opts) {}
  int Run();

 private:
  // Setup.
  bool Listen();
  bool SetupSignals();
  void Spawn();
  void Watch(int fd, uint64_t tag, uint32_t events);
  void Modify(int fd, uint64_t tag, uint32_t events);

  // Control socket.
  void OnCtlReadable();
  void OnCtlWritable();
  void HandleFrame(protocol::Frame& f);
  void SendBatch();
  void SetPipeReading(bool on);
  bool FlushCtlBlocking(int timeout_ms);
  [[noreturn]] void Exit(int code);

  // Runtime process.
  void OnSignal();
  void OnRuntimeExited(int status, const rusage& ru);
  void KillRuntime();
  // Reads the runtime's output once into log_. Returns the bytes read (0 on EAGAIN/EOF).
  size_t ReadOutput();
  void OnPipeReadable();
  // Reads what the pipe holds now (bounded), sending full chunks; the rest stays in log_.
  void DrainOutput();
  // Adds a pending START and the buffered output to batch_; the caller sends the batch, then
  // clears log_.
  void AddLog();
  void FlushLog();
  void AddStartIfPending();
  uint64_t ReadMaxRssKb();
  void AddEndReport(uint64_t max_rss_kb);

  // Runtime API.
  void OnAccept();
  void OnConnEvent(size_t slot, uint32_t gen, uint32_t events);
  void ReadConn(Conn& c);
  void ProcessConn(Conn& c);
  bool StartRequest(Conn& c, const http::RequestHead& head);
  void CompleteRequest(Conn& c, std::string_view body, size_t consumed);
  void HandleNext(Conn& c);
  void HandleResult(Conn& c, bool is_error, std::string_view body);
  void HandleInitError(Conn& c, std::string_view body);
  void Deliver(Conn& c);
  void Reply(Conn& c, int status, std::string_view reason, std::string_view body, bool close);
  void SendConn(Conn& c, const iovec* iov, int n);
  void FlushConn(Conn& c);
  void CloseConn(Conn& c);
  uint64_t ConnTag(const Conn& c) const { return kTagConn | (uint64_t{c.gen} << 32) | SlotOf(c); }
  size_t SlotOf(const Conn& c) const { return &c - conns_.data(); }
  bool IsCurrentInvocation(std::string_view id) const {
    return inv_present_ && inv_.field(0) == id;
  }
  void FinishInvocation(FrameType type, std::string_view error_type, std::string_view payload);

  const Options& opts_;
  int epfd_ = -1;
  int ctl_fd_ = -1;
  int listen_fd_ = -1;
  int sig_fd_ = -1;
  int pipe_fd_ = -1;
  bool pipe_reading_ = true;
  pid_t runtime_pid_ = -1;   // -1 once reaped
  pid_t runtime_pgid_ = -1;  // the runtime's process group (it leads it)
  int status_fd_ = -1;  // /proc/<runtime>/status, kept open for VmHWM
  uint64_t spawn_ns_ = 0;

  protocol::FrameDecoder decoder_;
  protocol::Frame frame_;
  Buffer ctl_out_;
  bool ctl_want_out_ = false;
  FrameBatch batch_;
  Buffer log_;                 // runtime output not yet sent to the worker
  uint64_t log_deadline_ns_ = 0;  // when log_ must go out at the latest
  std::string text_;  // scratch for log lines and response heads

  std::array<Conn, kMaxConnections> conns_;
  size_t nconns_ = 0;
  uint64_t activity_ = 0;
  Conn* waiter_ = nullptr;  // the connection blocked in GET /next

  // The current invocation: from kInvoke until its result. Nothing else outlives an invocation
  // except the id of the last one (to tell a repeated result from an unknown id).
  bool inv_present_ = false;
  bool inv_delivered_ = false;
  protocol::Frame inv_;
  uint64_t inv_start_ns_ = 0;
  bool start_pending_ = false;
  std::string last_id_;

  bool ready_sent_ = false;
  bool waiting_sent_ = false;  // kWaiting went out since the last invocation arrived
  uint64_t init_ns_ = 0;
  bool init_reported_ = false;
  std::string version_;
  std::string memory_mb_;
};

// ---------------------------------------------------------------------------------------------
// Setup

void Init::Watch(int fd, uint64_t tag, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
}

void Init::Modify(int fd, uint64_t tag, uint32_t events) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev);
}

bool Init::Listen() {
  std::string_view addr = opts_.listen;
  size_t colon = addr.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string host(addr.substr(0, colon));
  if (host == "localhost") host = "127.0.0.1";
  unsigned port = 0;
  auto portstr = addr.substr(colon + 1);
  auto r = std::from_chars(portstr.data(), portstr.data() + portstr.size(), port);
  if (r.ec != std::errc() || r.ptr != portstr.data() + portstr.size() || port > 65535) return false;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) return false;
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return false;
  int one = 1;
  setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(listen_fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return false;
  if (listen(listen_fd_, 128) != 0) return false;
  if (!getenv("AWS_LAMBDA_RUNTIME_API")) {
    socklen_t len = sizeof sa;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    std::string value = host + ":" + std::to_string(ntohs(sa.sin_port));
    setenv("AWS_LAMBDA_RUNTIME_API", value.c_str(), 1);
  }
  Watch(listen_fd_, kTagListen, EPOLLIN);
  return true;
}

bool Init::SetupSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (sigprocmask(SIG_BLOCK, &set, nullptr) != 0) return false;
  // Blocked signals are queued for the signalfd, even in PID 1 of a pid namespace (which drops
  // unblocked SIG_DFL signals sent from outside): see InitTest.Pid1ReceivesSigtermFromOutside.
  sig_fd_ = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sig_fd_ < 0) return false;
  signal(SIGPIPE, SIG_IGN);  // reset to default for the runtime by posix_spawn
  Watch(sig_fd_, kTagSignal, EPOLLIN);
  return true;
}

void Init::Spawn() {
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
    perror("kindling-init: pipe2");
    Exit(2);
  }
  // The runtime must block on a full pipe, not see EAGAIN: only our end is non-blocking.
  fcntl(p[1], F_SETFL, fcntl(p[1], F_GETFL) & ~O_NONBLOCK);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  // stdout and stderr share one pipe: the runtime's interleaving of the two is kept exactly, and
  // one read drains both.
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_adddup2(&fa, p[1], 2);
  // Lambda runtimes read nothing from stdin; do not hand them whatever init was given.
  if (access("/dev/null", R_OK) == 0)
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  if (access("/var/task", X_OK) == 0) posix_spawn_file_actions_addchdir_np(&fa, "/var/task");
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t empty, def;
  sigemptyset(&empty);
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  posix_spawnattr_setsigmask(&at, &empty);
  posix_spawnattr_setsigdefault(&at, &def);
  posix_spawnattr_setpgroup(&at, 0);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                    POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_USEVFORK);
  std::vector<char*> argv;
  for (const auto& a : opts_.runtime_argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  spawn_ns_ = NowNs();
  int rc = posix_spawnp(&runtime_pid_, argv[0], &fa, &at, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(p[1]);
  if (rc == 0) runtime_pgid_ = runtime_pid_;
  pipe_fd_ = p[0];
  Watch(pipe_fd_, kTagPipe, EPOLLIN);
  if (rc != 0) {
    text_ = "kindling-init: cannot start runtime ";
    text_.append(argv[0]);
    text_.append(": ");
    text_.append(strerror(rc));
    text_.push_back('\n');
    runtime_pid_ = -1;
    batch_.Add(FrameType::kLog, {text_});
    std::string status = std::to_string(W_EXITCODE(127, 0));
    batch_.Add(FrameType::kExited, {status, "0"});
    SendBatch();
    FlushCtlBlocking(kExitFlushMs);
    Exit(0);
  }
}

int Init::Run() {
  const char* v = getenv("AWS_LAMBDA_FUNCTION_VERSION");
  version_ = v && *v ? v : "$LATEST";
  const char* m = getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE");
  memory_mb_ = m && *m ? m : "128";

  ctl_fd_ = opts_.control_fd;
  // Nothing the worker may have left open reaches the untrusted runtime.
  close_range(ctl_fd_ + 1, ~0u, CLOSE_RANGE_CLOEXEC);
  if (fcntl(ctl_fd_, F_SETFD, FD_CLOEXEC) != 0) {  // never leak the control socket to the runtime
    perror("kindling-init: control socket");
    return 2;
  }
  fcntl(ctl_fd_, F_SETFL, fcntl(ctl_fd_, F_GETFL) | O_NONBLOCK);
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return 2;
  Watch(ctl_fd_, kTagCtl, EPOLLIN);
  if (!SetupSignals()) {
    perror("kindling-init: signals");
    return 2;
  }
  if (getpid() != 1) prctl(PR_SET_CHILD_SUBREAPER, 1);  // reap the runtime's orphans too
  if (!Listen()) {
    fprintf(stderr, "kindling-init: cannot listen on %s: %s\n", opts_.listen.c_str(),
            strerror(errno));
    return 2;
  }
  Spawn();

  epoll_event evs[64];
  for (;;) {
    int timeout = -1;
    if (!log_.empty()) {
      uint64_t now = NowNs();
      if (now >= log_deadline_ns_) {
        FlushLog();
      } else {
        timeout = static_cast<int>((log_deadline_ns_ - now + 999999) / 1000000);
      }
    }
    int n = epoll_wait(epfd_, evs, 64, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("kindling-init: epoll_wait");
      Exit(2);
    }
    for (int i = 0; i < n; ++i) {
      uint64_t tag = evs[i].data.u64;
      uint32_t e = evs[i].events;
      if (tag & kTagConn) {
        OnConnEvent(tag & 0xffffffffu & ~kTagConn, static_cast<uint32_t>(tag >> 32), e);
      } else if (tag == kTagCtl) {
        if (e & EPOLLOUT) OnCtlWritable();
        if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) OnCtlReadable();
      } else if (tag == kTagPipe) {
        OnPipeReadable();
      } else if (tag == kTagListen) {
        OnAccept();
      } else if (tag == kTagSignal) {
        OnSignal();
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Control socket

void Init::OnCtlReadable() {
  size_t want = kReadChunk;
  for (;;) {
    ssize_t n = read(ctl_fd_, decoder_.FeedSpace(want), want);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      n = 0;  // ECONNRESET and friends: the worker is gone
    }
    if (n == 0) {  // the worker closed the control socket: the sandbox is being torn down
      KillRuntime();
      Exit(0);
    }
    decoder_.Commit(n);
    int rc;
    while ((rc = decoder_.Next(&frame_)) == 1) HandleFrame(frame_);
    if (rc < 0) {
      fprintf(stderr, "kindling-init: malformed control frame\n");
      KillRuntime();
      Exit(2);
    }
    decoder_.ShrinkIfEmpty(kKeepBuffer);
    // A large frame in flight: read the rest in bigger steps (bounded by the frame limit).
    if (static_cast<size_t>(n) < want || decoder_.buffered() < protocol::kFrameHeaderBytes) return;
    want = 1 << 20;
  }
}

void Init::HandleFrame(protocol::Frame& f) {
  if (f.type != FrameType::kInvoke) {
    fprintf(stderr, "kindling-init: unexpected control frame type %d\n", static_cast<int>(f.type));
    KillRuntime();
    Exit(2);
  }
  if (inv_present_) {
    fprintf(stderr, "kindling-init: kInvoke while an invocation is outstanding\n");
    KillRuntime();
    Exit(2);
  }
  std::swap(inv_, f);  // keeps both frames' string capacity for reuse
  inv_present_ = true;
  inv_delivered_ = false;
  waiting_sent_ = false;
  inv_start_ns_ = NowNs();
  if (waiter_) {
    Conn& c = *waiter_;
    waiter_ = nullptr;
    Deliver(c);
    if (c.fd >= 0 && c.state == Conn::kHead && !c.in.empty()) ProcessConn(c);  // pipelined
  }
}

void Init::SendBatch() {
  if (batch_.empty()) return;
  iovec iov[64];
  size_t total = 0;
  int n = batch_.Iov(iov, 64, &total);
  size_t written = 0;
  if (ctl_out_.empty()) {
    ssize_t w;
    do {
      w = writev(ctl_fd_, iov, n);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
      if (errno != EAGAIN) {  // the worker is gone
        KillRuntime();
        Exit(0);
      }
      w = 0;
    }
    written = static_cast<size_t>(w);
  }
  if (written < total) {
    for (int i = 0; i < n; ++i) {
      size_t len = iov[i].iov_len;
      if (written >= len) {
        written -= len;
        continue;
      }
      ctl_out_.Append(static_cast<char*>(iov[i].iov_base) + written, len - written);
      written = 0;
    }
    if (!ctl_want_out_) {
      ctl_want_out_ = true;
      Modify(ctl_fd_, kTagCtl, EPOLLIN | EPOLLOUT);
    }
    if (ctl_out_.size() > kCtlHighWater) SetPipeReading(false);
  }
  batch_.Clear();
}

void Init::OnCtlWritable() {
  while (!ctl_out_.empty()) {
    ssize_t w = write(ctl_fd_, ctl_out_.data(), ctl_out_.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      KillRuntime();
      Exit(0);
    }
    ctl_out_.Consume(w);
  }
  ctl_out_.ShrinkIfEmpty(kKeepBuffer);
  if (ctl_want_out_) {
    ctl_want_out_ = false;
    Modify(ctl_fd_, kTagCtl, EPOLLIN);
  }
  SetPipeReading(true);
}

void Init::SetPipeReading(bool on) {
  if (pipe_fd_ < 0 || pipe_reading_ == on) return;
  pipe_reading_ = on;
  Modify(pipe_fd_, kTagPipe, on ? uint32_t{EPOLLIN} : 0u);
}

bool Init::FlushCtlBlocking(int timeout_ms) {
  uint64_t deadline = NowNs() + static_cast<uint64_t>(timeout_ms) * 1000000;
  while (!ctl_out_.empty()) {
    ssize_t w = write(ctl_fd_, ctl_out_.data(), ctl_out_.size());
    if (w > 0) {
      ctl_out_.Consume(w);
      continue;
    }
    if (w < 0 && errno != EAGAIN && errno != EINTR) return false;
    uint64_t now = NowNs();
    if (now >= deadline) return false;
    pollfd p{ctl_fd_, POLLOUT, 0};
    poll(&p, 1, static_cast<int>((deadline - now) / 1000000) + 1);
  }
  return true;
}

void Init::Exit(int code) {
  // As PID 1 our exit kills the whole pid namespace; unjailed, take the runtime's group down.
  if (runtime_pgid_ > 0 && getpid() != 1) kill(-runtime_pgid_, SIGKILL);
  _exit(code);
}

// ---------------------------------------------------------------------------------------------
// Runtime process and its output

void Init::KillRuntime() {
  if (runtime_pgid_ > 0) kill(-runtime_pgid_, SIGKILL);
  if (runtime_pid_ > 0) kill(runtime_pid_, SIGKILL);
}

void Init::OnSignal() {
  signalfd_siginfo si[8];
  bool child = false;
  for (;;) {
    ssize_t n = read(sig_fd_, si, sizeof si);
    if (n <= 0) break;
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof si[0]; ++i) {
      if (si[i].ssi_signo == SIGCHLD) {
        child = true;
      } else {  // SIGTERM / SIGINT
        KillRuntime();  // no wait: a frozen runtime would not die until thawed
        Exit(0);
      }
    }
  }
  if (!child) return;
  // Signals coalesce: reap everything that has exited.
  for (;;) {
    int status = 0;
    rusage ru{};
    pid_t pid = wait4(-1, &status, WNOHANG, &ru);
    if (pid <= 0) break;
    if (pid == runtime_pid_) OnRuntimeExited(status, ru);
  }
}

void Init::OnRuntimeExited(int status, const rusage& ru) {
  runtime_pid_ = -1;  // reaped: its pid may be reused (its group's orphans are killed in Exit)
  // Everything the runtime sent before it exited is already in our socket buffers: handle it
  // first (an init/error followed by exit(1) must arrive as kInitError, then kExited).
  for (Conn& c : conns_) {
    if (c.fd < 0) continue;
    for (int i = 0; i < 1024 && c.fd >= 0 && c.state != Conn::kWaitNext; ++i) {
      size_t before = c.in.size();
      ReadConn(c);
      if (c.fd < 0 || c.in.size() == before) break;
    }
  }
  // Then the rest of its output (bounded: other processes may still hold the pipe open).
  DrainOutput();
  AddLog();
  if (inv_present_ && inv_delivered_) {  // died during an invocation: close its log
    AddEndReport(static_cast<uint64_t>(ru.ru_maxrss));
  }
  std::string st = std::to_string(status);
  batch_.Add(FrameType::kExited, {st, inv_present_ && inv_delivered_ ? "1" : "0"});
  SendBatch();
  log_.Clear();
  FlushCtlBlocking(kExitFlushMs);
  Exit(0);
}

size_t Init::ReadOutput() {
  if (pipe_fd_ < 0) return 0;
  ssize_t n;
  do {
    n = read(pipe_fd_, log_.Tail(kReadChunk), kReadChunk);
  } while (n < 0 && errno == EINTR);
  if (n == 0 || (n < 0 && errno != EAGAIN)) {  // every writer closed it
    epoll_ctl(epfd_, EPOLL_CTL_DEL, pipe_fd_, nullptr);
    close(pipe_fd_);
    pipe_fd_ = -1;
    return 0;
  }
  if (n < 0) return 0;
  if (log_.empty()) log_deadline_ns_ = NowNs() + kLogFlushNs;
  log_.Commit(n);
  return static_cast<size_t>(n);
}

void Init::OnPipeReadable() {
  ReadOutput();
  if (log_.size() >= kLogFlushBytes) FlushLog();
}

void Init::DrainOutput() {
  // The runtime wrote its output before it posted its result or exited: read what the pipe holds
  // now. A short read proves it empty. Bounded to 1 MiB, the largest pipe an unprivileged process
  // can ask for (other processes may keep writing).
  for (int i = 0; i < 16; ++i) {
    size_t n = ReadOutput();
    if (log_.size() >= kLogFlushBytes) FlushLog();
    if (n < kReadChunk) return;
  }
}

void Init::AddLog() {
  AddStartIfPending();
  if (!log_.empty()) batch_.Add(FrameType::kLog, {log_.view()});
}

void Init::FlushLog() {
  if (log_.empty()) return;
  AddLog();
  SendBatch();
  log_.Clear();
  log_.ShrinkIfEmpty(kKeepBuffer);
}

void Init::AddStartIfPending() {
  if (!start_pending_) return;
  start_pending_ = false;
  text_.assign("START RequestId: ");
  text_.append(inv_.field(0));
  text_.append(" Version: ");
  text_.append(version_);
  text_.push_back('\n');
  batch_.Add(FrameType::kLog, {text_});  // copied unless the id is huge; text_ is not reused
                                         // before the batch is sent
  if (text_.size() > kInlineField) SendBatch();
}

uint64_t Init::ReadMaxRssKb() {
  if (runtime_pid_ <= 0) return 0;
  if (status_fd_ < 0) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", runtime_pid_);
    status_fd_ = open(path, O_RDONLY | O_CLOEXEC);
    if (status_fd_ < 0) return 0;
  }
  char buf[4096];
  ssize_t n = pread(status_fd_, buf, sizeof buf - 1, 0);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* p = strstr(buf, "VmHWM:");
  if (!p) return 0;
  return strtoull(p + 6, nullptr, 10);
}

void Init::AddEndReport(uint64_t max_rss_kb) {
  uint64_t ns = NowNs() - inv_start_ns_;
  const std::string& id = inv_.field(0);
  text_.assign("END RequestId: ");
  text_.append(id);
  text_.append("\nREPORT RequestId: ");
  text_.append(id);
  text_.append("\tDuration: ");
  AppendMs(&text_, ns);
  text_.append(" ms\tBilled Duration: ");
  uint64_t billed = (ns + 999999) / 1000000;
  AppendU64(&text_, billed ? billed : 1);
  text_.append(" ms\tMemory Size: ");
  text_.append(memory_mb_);
  text_.append(" MB\tMax Memory Used: ");
  AppendU64(&text_, (max_rss_kb + 1023) / 1024);
  text_.append(" MB");
  if (!init_reported_) {
    init_reported_ = true;
    text_.append("\tInit Duration: ");
    AppendMs(&text_, init_ns_);
    text_.append(" ms");
  }
  text_.push_back('\n');
  batch_.Add(FrameType::kLog, {text_});
}

// The runtime posted the result of the current invocation: its output, then END and REPORT, then
// the result, in one write to the worker.
void Init::FinishInvocation(FrameType type, std::string_view error_type, std::string_view payload) {
  DrainOutput();
  AddLog();
  AddEndReport(ReadMaxRssKb());
  if (type == FrameType::kResponse) {
    batch_.Add(type, {inv_.field(0), payload});
  } else {
    batch_.Add(type, {inv_.field(0), error_type, payload});
  }
  SendBatch();
  log_.Clear();
  last_id_.assign(inv_.field(0));
  inv_present_ = false;
  inv_delivered_ = false;
  for (auto* fr : {&inv_, &frame_})
    for (auto& field : fr->fields)
      if (field.capacity() > kKeepBuffer) std::string().swap(field);
}

// ---------------------------------------------------------------------------------------------
// Runtime API connections

void Init::OnAccept() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EAGAIN, or out of fds (the runtime's own doing): try again on the next event
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Conn* slot = nullptr;
    if (nconns_ == kMaxConnections) {
      // Full: drop the least recently active connection that is not waiting for an event.
      Conn* oldest = nullptr;
      for (Conn& c : conns_)
        if (&c != waiter_ && (!oldest || c.last_active < oldest->last_active)) oldest = &c;
      if (!oldest) {
        close(fd);
        continue;
      }
      CloseConn(*oldest);
    }
    for (Conn& c : conns_)
      if (c.fd < 0) {
        slot = &c;
        break;
      }
    Conn& c = *slot;
    c.fd = fd;
    ++c.gen;
    c.gen &= 0x7fffffff;
    c.state = Conn::kHead;
    c.scan = 0;
    c.want_out = false;
    c.half_closed = false;
    c.last_active = ++activity_;
    ++nconns_;
    Watch(fd, ConnTag(c), EPOLLIN);
  }
}

void Init::OnConnEvent(size_t slot, uint32_t gen, uint32_t events) {
  if (slot >= conns_.size()) return;
  Conn& c = conns_[slot];
  if (c.fd < 0 || c.gen != gen) return;  // closed earlier in this batch
  c.last_active = ++activity_;
  if (events & EPOLLOUT) {
    FlushConn(c);
    if (c.fd < 0) return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadConn(c);
}

void Init::ReadConn(Conn& c) {
  size_t want = kReadChunk;
  if (c.state == Conn::kBody) {  // read the rest of a known-length body in one go
    size_t end = c.head_bytes + c.content_length;
    if (end > c.in.size() && end - c.in.size() > want) want = end - c.in.size();
  }
  ssize_t n;
  do {
    n = read(c.fd, c.in.Tail(want), want);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return;
  if (n == 0 && c.state == Conn::kWaitNext && !c.half_closed) {
    // Half-closed while waiting for an event: still deliver it, then close.
    c.half_closed = true;
    Modify(c.fd, ConnTag(c), c.want_out ? uint32_t{EPOLLOUT} : 0u);
    return;
  }
  if (n <= 0) {
    CloseConn(c);
    return;
  }
  c.in.Commit(n);
  if (c.state == Conn::kWaitNext || c.state == Conn::kClosing) {
    // Pipelined behind a pending /next: parsed later, but bounded.
    if (c.in.size() > http::kMaxHeadBytes + http::kMaxBodyBytes) CloseConn(c);
    return;
  }
  ProcessConn(c);
}

void Init::ProcessConn(Conn& c) {
  while (c.fd >= 0) {
    switch (c.state) {
      case Conn::kHead: {
        if (c.in.empty()) {
          c.in.ShrinkIfEmpty(kKeepBuffer);
          return;
        }
        http::RequestHead head;
        auto st = http::ParseRequestHead(c.in.view(), &c.scan, &head);
        if (st == http::ParseStatus::kIncomplete) return;
        if (st != http::ParseStatus::kOk) {
          if (st == http::ParseStatus::kTooLarge) {
            Reply(c, 431, "Request Header Fields Too Large",
                  JsonError("Request header too large", "InvalidRequest"), true);
          } else if (st == http::ParseStatus::kNotImplemented) {
            Reply(c, 501, "Not Implemented",
                  JsonError("Unsupported Transfer-Encoding", "InvalidRequest"), true);
          } else {
            Reply(c, 400, "Bad Request", JsonError("Malformed HTTP request", "InvalidRequest"),
                  true);
          }
          return;
        }
        c.scan = 0;
        if (!StartRequest(c, head)) return;
        break;
      }
      case Conn::kBody: {
        size_t end = c.head_bytes + c.content_length;
        if (c.in.size() < end) return;
        CompleteRequest(c, std::string_view(c.in.data() + c.head_bytes, c.content_length), end);
        break;
      }
      case Conn::kChunked: {
        auto r = c.chunk.Run(c.in.data(), c.in.size(), &c.chunk_pos, &c.chunk_out,
                             http::kMaxBodyBytes);
        if (r == http::ChunkedDecoder::kNeedMore) return;
        if (r == http::ChunkedDecoder::kBad) {
          Reply(c, 400, "Bad Request", JsonError("Malformed chunked body", "InvalidRequest"), true);
          return;
        }
        if (r == http::ChunkedDecoder::kTooLarge) {
          if ((c.route == http::Route::kResponse || c.route == http::Route::kError) &&
              IsCurrentInvocation(c.id)) {
            std::string doc = JsonError(
                "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
                "Function.ResponseSizeTooLarge");
            FinishInvocation(FrameType::kError, "Function.ResponseSizeTooLarge", doc);
          }
          Reply(c, 413, "Payload Too Large",
                JsonError("Payload size exceeded maximum allowed payload size (6291556 bytes).",
                          "RequestTooLarge"),
                true);
          return;
        }
        CompleteRequest(c,
                        std::string_view(c.in.data() + c.head_bytes, c.chunk_out - c.head_bytes),
                        c.chunk_pos);
        break;
      }
      case Conn::kDiscard: {
        size_t take = c.in.size() < c.discard_left ? c.in.size() : c.discard_left;
        c.in.Consume(take);
        c.discard_left -= take;
        if (c.discard_left > 0) return;
        if (c.reject_status == 0) {
          CompleteRequest(c, {}, 0);
        } else {
          c.state = Conn::kHead;
          Reply(c, c.reject_status, "Payload Too Large", c.reject_body, !c.keep_alive);
        }
        break;
      }
      case Conn::kWaitNext:
      case Conn::kClosing:
        return;
    }
  }
}

// Head parsed. Copies what the request needs out of the buffer and decides how to read its body.
// Returns false when the connection stopped (closed or waiting).
bool Init::StartRequest(Conn& c, const http::RequestHead& head) {
  std::string_view id;
  c.route = http::MatchRoute(head.path, &id);
  c.method.assign(head.method);
  c.id.assign(id);
  c.error_type.assign(head.function_error_type);
  c.keep_alive = head.keep_alive;
  c.head_bytes = head.head_bytes;
  c.content_length = head.has_content_length ? head.content_length : 0;
  const bool chunked = head.chunked;
  const bool has_body = chunked || c.content_length > 0;
  // `head` points into c.in: not used below this line.

  if (head.expect_continue && has_body) {
    static constexpr char k100[] = "HTTP/1.1 100 Continue\r\n\r\n";
    iovec iov{const_cast<char*>(k100), sizeof k100 - 1};
    SendConn(c, &iov, 1);
    if (c.fd < 0) return false;
  }
  if (chunked) {
    c.state = Conn::kChunked;
    c.chunk.Reset();
    c.chunk_pos = c.chunk_out = c.head_bytes;
    return true;
  }
  // Only a result for the current invocation and an init error need their body; other bodies are
  // swallowed unbuffered, so a runtime cannot make init hold 64 connections' worth of them.
  const bool post = c.method == "POST";
  const bool needs_body =
      post && (c.route == http::Route::kInitError ||
               ((c.route == http::Route::kResponse || c.route == http::Route::kError) &&
                IsCurrentInvocation(c.id)));
  if (c.content_length <= http::kMaxBodyBytes && (needs_body || c.content_length == 0)) {
    c.state = Conn::kBody;
    c.in.Tail(c.head_bytes + c.content_length);  // one allocation for the whole request
    return true;
  }
  if (c.content_length <= http::kMaxBodyBytes) {
    c.reject_status = 0;  // answered as usual (with an empty body) once the body is gone
    c.in.Consume(c.head_bytes);
    c.head_bytes = 0;
    c.discard_left = c.content_length;
    c.state = Conn::kDiscard;
    return true;
  }
  // Too large: do not buffer it. Report now, swallow the body, then answer 413 on a connection that
  // stays usable.
  std::string doc = "{\"errorMessage\":\"Response payload size (";
  AppendU64(&doc, c.content_length);
  doc.append(" bytes) exceeded maximum allowed payload size (6291556 bytes).\","
             "\"errorType\":\"Function.ResponseSizeTooLarge\"}");
  if ((c.route == http::Route::kResponse || c.route == http::Route::kError) && post &&
      IsCurrentInvocation(c.id)) {
    FinishInvocation(FrameType::kError, "Function.ResponseSizeTooLarge", doc);
  }
  c.reject_status = 413;
  c.reject_body = std::move(doc);
  c.in.Consume(c.head_bytes);
  c.discard_left = c.content_length;
  c.state = Conn::kDiscard;
  return true;
}

void Init::CompleteRequest(Conn& c, std::string_view body, size_t consumed) {
  c.state = Conn::kHead;
  switch (c.route) {
    case http::Route::kNext:
      if (c.method != "GET") {
        Reply(c, 405, "Method Not Allowed", JsonError("Method not allowed", "InvalidRequest"),
              !c.keep_alive);
        break;
      }
      c.in.Consume(consumed);
      HandleNext(c);
      return;
    case http::Route::kResponse:
    case http::Route::kError:
      if (c.method != "POST") {
        Reply(c, 405, "Method Not Allowed", JsonError("Method not allowed", "InvalidRequest"),
              !c.keep_alive);
        break;
      }
      HandleResult(c, c.route == http::Route::kError, body);
      break;
    case http::Route::kInitError:
      if (c.method != "POST") {
        Reply(c, 405, "Method Not Allowed", JsonError("Method not allowed", "InvalidRequest"),
              !c.keep_alive);
        break;
      }
      HandleInitError(c, body);
      break;
    case http::Route::kNotFound:
      Reply(c, 404, "Not Found", JsonError("Unknown Runtime API path", "InvalidRequest"),
            !c.keep_alive);
      break;
  }
  if (c.fd >= 0) c.in.Consume(consumed);
}

void Init::HandleNext(Conn& c) {
  if (!ready_sent_) {
    ready_sent_ = true;
    init_ns_ = NowNs() - spawn_ns_;
    std::string us = std::to_string(init_ns_ / 1000);
    FlushLog();  // the init phase's output comes first
    batch_.Add(FrameType::kReady, {us});
    SendBatch();
  } else if (!inv_present_ && !waiting_sent_) {
    // Idle again after a result: only now may the worker freeze the sandbox (a runtime that exits
    // after posting its result is seen exiting instead, before anyone reuses it).
    waiting_sent_ = true;
    FlushLog();
    batch_.Add(FrameType::kWaiting, {});
    SendBatch();
  }
  if (waiter_ && waiter_ != &c) CloseConn(*waiter_);  // a reconnected runtime supersedes it
  if (inv_present_) {
    Deliver(c);  // a held event, or (after a reconnect) the same event again
    return;
  }
  waiter_ = &c;
  c.state = Conn::kWaitNext;
}

void Init::Deliver(Conn& c) {
  c.state = Conn::kHead;
  const protocol::Frame& f = inv_;
  std::string& h = text_;
  h.assign("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: ");
  AppendHeaderValue(&h, f.field(0));
  h.append("\r\nLambda-Runtime-Deadline-Ms: ");
  AppendHeaderValue(&h, f.field(1));
  h.append("\r\nLambda-Runtime-Invoked-Function-Arn: ");
  AppendHeaderValue(&h, f.field(2));
  h.append("\r\nLambda-Runtime-Trace-Id: ");
  AppendHeaderValue(&h, f.field(3));
  if (!f.field(4).empty()) {
    h.append("\r\nLambda-Runtime-Client-Context: ");
    AppendHeaderValue(&h, f.field(4));
  }
  if (!f.field(5).empty()) {
    h.append("\r\nLambda-Runtime-Cognito-Identity: ");
    AppendHeaderValue(&h, f.field(5));
  }
  h.append("\r\nContent-Length: ");
  AppendU64(&h, f.field(6).size());
  h.append("\r\n\r\n");
  iovec iov[2] = {{h.data(), h.size()},
                  {const_cast<char*>(f.field(6).data()), f.field(6).size()}};
  if (!inv_delivered_) {
    FlushLog();  // output read before this event must not follow its START
    inv_delivered_ = true;
    inv_start_ns_ = NowNs();
    start_pending_ = true;  // sent with the next frame to the worker (see protocol.h)
  }
  if (c.half_closed) c.state = Conn::kClosing;
  SendConn(c, iov, f.field(6).empty() ? 1 : 2);
}

void Init::HandleResult(Conn& c, bool is_error, std::string_view body) {
  if (!IsCurrentInvocation(c.id)) {
    if (!c.id.empty() && c.id == last_id_) {
      Reply(c, 400, "Bad Request",
            JsonError("Invalid state transition: the invocation already has a result",
                      "InvalidStateTransition"),
            !c.keep_alive);
    } else {
      Reply(c, 400, "Bad Request", JsonError("Invalid request ID", "InvalidRequestID"),
            !c.keep_alive);
    }
    return;
  }
  if (is_error) {
    std::string_view type = c.error_type;
    if (type.empty()) type = http::ExtractErrorType(body);
    if (type.empty()) type = "Unhandled";
    FinishInvocation(FrameType::kError, type, body);
  } else {
    FinishInvocation(FrameType::kResponse, {}, body);
  }
  static constexpr std::string_view kOk = "{\"status\":\"OK\"}";
  Reply(c, 202, "Accepted", kOk, !c.keep_alive);
}

void Init::HandleInitError(Conn& c, std::string_view body) {
  std::string_view type = c.error_type;
  if (type.empty()) type = http::ExtractErrorType(body);
  if (type.empty()) type = "Unhandled";
  DrainOutput();
  AddLog();
  batch_.Add(FrameType::kInitError, {type, body});
  SendBatch();
  log_.Clear();
  Reply(c, 202, "Accepted", "{\"status\":\"OK\"}", !c.keep_alive);
}

void Init::Reply(Conn& c, int status, std::string_view reason, std::string_view body, bool close) {
  char head[256];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %.*s\r\nContent-Type: application/json\r\nContent-Length: "
                   "%zu\r\n%s\r\n",
                   status, static_cast<int>(reason.size()), reason.data(), body.size(),
                   close ? "Connection: close\r\n" : "");
  iovec iov[2] = {{head, static_cast<size_t>(n)}, {const_cast<char*>(body.data()), body.size()}};
  if (close) c.state = Conn::kClosing;
  SendConn(c, iov, body.empty() ? 1 : 2);
}

void Init::SendConn(Conn& c, const iovec* iov, int n) {
  size_t total = 0;
  for (int i = 0; i < n; ++i) total += iov[i].iov_len;
  size_t written = 0;
  if (c.out.empty()) {
    ssize_t w;
    do {
      w = writev(c.fd, iov, n);
    } while (w < 0 && errno == EINTR);
    if (w < 0 && errno != EAGAIN) {
      CloseConn(c);
      return;
    }
    written = w < 0 ? 0 : static_cast<size_t>(w);
  }
  if (written == total) {
    if (c.state == Conn::kClosing) CloseConn(c);
    return;
  }
  for (int i = 0; i < n; ++i) {
    size_t len = iov[i].iov_len;
    if (written >= len) {
      written -= len;
      continue;
    }
    c.out.Append(static_cast<char*>(iov[i].iov_base) + written, len - written);
    written = 0;
  }
  if (!c.want_out) {
    c.want_out = true;
    Modify(c.fd, ConnTag(c), c.half_closed ? uint32_t{EPOLLOUT} : uint32_t{EPOLLIN | EPOLLOUT});
  }
}

void Init::FlushConn(Conn& c) {
  while (!c.out.empty()) {
    ssize_t w = write(c.fd, c.out.data(), c.out.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      CloseConn(c);
      return;
    }
    c.out.Consume(w);
  }
  c.out.ShrinkIfEmpty(kKeepBuffer);
  if (c.state == Conn::kClosing) {
    CloseConn(c);
    return;
  }
  if (c.want_out) {
    c.want_out = false;
    Modify(c.fd, ConnTag(c), c.half_closed ? 0u : uint32_t{EPOLLIN});
  }
}

void Init::CloseConn(Conn& c) {
  if (c.fd < 0) return;
  if (waiter_ == &c) waiter_ = nullptr;
  close(c.fd);  // also removes it from the epoll set
  c.fd = -1;
  c.in.Clear();
  c.out.Clear();
  c.in.ShrinkIfEmpty(kKeepBuffer);
  c.out.ShrinkIfEmpty(kKeepBuffer);
  --nconns_;
}

}  // namespace

bool ParseArgs(int argc, char** argv, Options* opts, std::string* error) {
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "--listen" && i + 1 < argc) {
      opts->listen = argv[++i];
    } else if (a.substr(0, 9) == "--listen=") {
      opts->listen = std::string(a.substr(9));
    } else if (a.substr(0, 2) == "--") {
      *error = "unknown option " + std::string(a);
      return false;
    } else {
      break;
    }
  }
  for (; i < argc; ++i) opts->runtime_argv.emplace_back(argv[i]);
  if (opts->runtime_argv.empty()) {
    *error = "no runtime command given";
    return false;
  }
  return true;
}

int Run(const Options& opts) {
  Init init(opts);
  return init.Run();
}

}  // namespace kindling::init
