// Fuzzes kindling-init's Runtime API end to end, as a hostile runtime would attack it: the real
// event loop (kindling::init::Run, in a thread of this process so its code is coverage-guided)
// serves 127.0.0.1:<port>; this target plays both the worker (control socket: sends kInvoke frames
// as the worker does, only when no invocation is outstanding, and drains what init sends) and the
// runtime (raw bytes on up to four TCP connections per input).
//
// Input: byte 0 = flags (bit 0: hand init an invocation, id "fuzz-id", before the requests; bit 1:
// send each connection's bytes in two writes). The rest is split on "\0\0" into connections.
// The worker's rules are kept: one invocation at a time, none after kInitError (the worker destroys
// such a sandbox; kindling-init exits on a protocol violation by the worker, which is trusted).
// Properties: no crash or sanitizer report, and kindling-init never exits (a runtime's bytes must
// only ever end its own connection): exit() from the init thread ends the process, which libFuzzer
// reports.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "init/init.h"
#include "init/protocol.h"

namespace {

using kindling::protocol::Encode;
using kindling::protocol::Frame;
using kindling::protocol::FrameDecoder;
using kindling::protocol::FrameType;

int g_ctl = -1;  // the worker's end of the control socket
int g_port = 0;
std::atomic<bool> g_outstanding{false};
std::atomic<bool> g_init_failed{false};  // after kInitError the worker destroys the sandbox: no more invokes

int FreePort() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len);
  close(s);
  return ntohs(sa.sin_port);
}

// Drains init's frames; an invocation stops being outstanding with its result.
void ReadControl() {
  FrameDecoder dec;
  char buf[65536];
  for (;;) {
    ssize_t n = read(g_ctl, buf, sizeof buf);
    if (n <= 0) {
      fprintf(stderr, "init_runtime_api_fuzz: kindling-init closed its control socket\n");
      abort();
    }
    dec.Feed(buf, static_cast<size_t>(n));
    Frame f;
    int r;
    while ((r = dec.Next(&f)) > 0) {
      if (f.type == FrameType::kResponse || f.type == FrameType::kError) g_outstanding = false;
      if (f.type == FrameType::kInitError) g_init_failed = true;
    }
    if (r < 0) {
      fprintf(stderr, "init_runtime_api_fuzz: malformed frame from kindling-init\n");
      abort();
    }
  }
}

void SendInvoke() {
  if (g_init_failed) return;
  bool expected = false;
  if (!g_outstanding.compare_exchange_strong(expected, true)) return;  // the worker's rule
  std::string frame;
  Encode(FrameType::kInvoke,
         {"fuzz-id", "4102444800000", "arn:aws:lambda:us-east-1:000000000000:function:f", "Root=1-2-3", "", "",
          "{\"event\":1}"},
         &frame);
  for (size_t off = 0; off < frame.size();) {
    ssize_t w = write(g_ctl, frame.data() + off, frame.size() - off);
    if (w <= 0) abort();
    off += static_cast<size_t>(w);
  }
}

int Connect() {
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(g_port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < 2000; ++i) {
    if (connect(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return s;
    usleep(1000);  // the listener is not up yet (first input only)
  }
  fprintf(stderr, "init_runtime_api_fuzz: cannot connect to kindling-init\n");
  abort();
}

void SendAll(int s, const char* p, size_t n) {
  while (n) {
    ssize_t w = send(s, p, n, MSG_NOSIGNAL);
    if (w <= 0) return;  // init closed the connection: fine
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// Reads what init answers within a few milliseconds (a /next without an event just waits).
void Drain(int s) {
  char buf[65536];
  pollfd p{s, POLLIN, 0};
  while (poll(&p, 1, 3) > 0) {
    if (read(s, buf, sizeof buf) <= 0) break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  g_ctl = sv[0];
  g_port = FreePort();
  // SIGCHLD reaches init's signalfd only if no thread takes it first.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  static kindling::init::Options opts;
  opts.listen = "127.0.0.1:" + std::to_string(g_port);
  opts.runtime_argv = {"/bin/sleep", "1000000"};  // the real runtime stays quiet: the fuzzer is it
  opts.control_fd = sv[1];
  std::thread([] {
    int rc = kindling::init::Run(opts);
    fprintf(stderr, "init_runtime_api_fuzz: kindling-init returned %d\n", rc);
    abort();
  }).detach();
  std::thread(ReadControl).detach();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  uint8_t flags = data[0];
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (flags & 1) SendInvoke();
  std::vector<std::string_view> conns;
  while (conns.size() < 3) {
    size_t cut = rest.find(std::string_view("\0\0", 2));
    if (cut == std::string_view::npos) break;
    conns.push_back(rest.substr(0, cut));
    rest.remove_prefix(cut + 2);
  }
  conns.push_back(rest);
  std::vector<int> open;
  for (std::string_view bytes : conns) {
    int s = Connect();
    if (flags & 2 && bytes.size() > 1) {
      SendAll(s, bytes.data(), bytes.size() / 2);
      Drain(s);
      SendAll(s, bytes.data() + bytes.size() / 2, bytes.size() - bytes.size() / 2);
    } else {
      SendAll(s, bytes.data(), bytes.size());
    }
    Drain(s);
    open.push_back(s);  // kept until every connection of this input spoke (a /next may get an event)
  }
  for (int s : open) {
    Drain(s);
    close(s);
  }
  return 0;
}
