// Tests of the real kindling-init binary, run unjailed: the test is the worker (a socketpair as
// fd 3) and, in some tests, also the Runtime API client; runtimes are small python3/sh scripts or
// init_test_runtime. Every wait is bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "init/protocol.h"

namespace kindling::init {
namespace {

using protocol::Frame;
using protocol::FrameType;

constexpr int kTimeoutMs = 10000;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  close(fd);
  return ntohs(sa.sin_port);
}

std::string TempDir() {
  static std::string dir = [] {
    char tmpl[] = "/tmp/kindling-init-test.XXXXXX";
    return std::string(mkdtemp(tmpl));
  }();
  return dir;
}

// Writes a python3 runtime: a small Runtime API client library, then `body`.
std::string PythonRuntime(const std::string& name, const std::string& body) {
  std::string path = TempDir() + "/" + name + ".py";
  std::ofstream f(path);
  f << R"PY(import http.client, json, os, sys, time
api = os.environ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(api, timeout=30)
BASE = "/2018-06-01/runtime"
def next_event():
    conn.request("GET", BASE + "/invocation/next")
    r = conn.getresponse()
    return r, r.read()
def post(path, body, headers={}):
    conn.request("POST", BASE + path, body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()
)PY" << body;
  return path;
}

class InitProcess {
 public:
  // wrapper: a command that runs kindling-init (e.g. unshare, to make it PID 1).
  explicit InitProcess(std::vector<std::string> runtime,
                       std::vector<std::pair<std::string, std::string>> env = {},
                       std::vector<std::string> wrapper = {}) {
    port = FreePort();
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid = fork();
    if (pid == 0) {
      dup2(sv[1], protocol::kControlFd);  // dup2 clears close-on-exec
      unsetenv("AWS_LAMBDA_RUNTIME_API");
      for (auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
      std::string listen = "127.0.0.1:" + std::to_string(port);
      std::vector<char*> argv;
      for (auto& a : wrapper) argv.push_back(a.data());
      for (const char* a : {KINDLING_INIT_PATH, "--listen", listen.c_str(), "--"})
        argv.push_back(const_cast<char*>(a));
      for (auto& a : runtime) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(sv[1]);
    ctl = sv[0];
  }
  ~InitProcess() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    if (ctl >= 0) close(ctl);
  }

  void Send(FrameType t, const std::vector<std::string_view>& fields) {
    std::string s;
    protocol::Encode(t, fields, &s);
    SendRaw(s);
  }
  void SendRaw(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t w = write(ctl, s.data() + off, s.size() - off);
      ASSERT_GT(w, 0);
      off += w;
    }
  }
  void Invoke(const std::string& id, const std::string& payload, std::string client_context = "",
              std::string cognito = "") {
    Send(FrameType::kInvoke, {id, "1700000000123", "arn:aws:lambda:us-east-1:123456789012:function:f",
                              "Root=1-abc;Parent=def;Sampled=1", client_context, cognito, payload});
  }

  // The next frame; false on timeout or EOF (eof set).
  bool Recv(Frame* f, int timeout_ms = kTimeoutMs) {
    int64_t deadline = NowMs() + timeout_ms;
    for (;;) {
      int rc = decoder.Next(f);
      if (rc == 1) return true;
      EXPECT_EQ(rc, 0) << "malformed frame from kindling-init";
      if (rc < 0) return false;
      int64_t left = deadline - NowMs();
      if (left <= 0) return false;
      pollfd p{ctl, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char buf[1 << 16];
      ssize_t n = read(ctl, buf, sizeof buf);
      if (n <= 0) {
        eof = true;
        return false;
      }
      decoder.Feed(buf, n);
    }
  }
  // Receives frames until one of type t, appending kLog text to `logs` and counting kWaiting;
  // other frame types fail.
  Frame WaitFor(FrameType t, int timeout_ms = kTimeoutMs) {
    Frame f;
    int64_t deadline = NowMs() + timeout_ms;
    while (Recv(&f, static_cast<int>(std::max<int64_t>(1, deadline - NowMs())))) {
      if (f.type == FrameType::kLog) {
        logs += f.field(0);
        if (t == FrameType::kLog) return f;
        continue;
      }
      if (f.type == FrameType::kWaiting && t != FrameType::kWaiting) {
        ++waiting_frames;
        continue;
      }
      if (f.type == t) return f;
      ADD_FAILURE() << "unexpected frame type " << int(f.type) << " waiting for " << int(t)
                    << " fields[0]=" << f.field(0).substr(0, 200) << " logs=" << logs;
      return Frame{};
    }
    ADD_FAILURE() << "timed out waiting for frame type " << int(t) << "; logs so far: " << logs;
    return Frame{};
  }
  int waiting_frames = 0;
  // Waits for the process to exit; returns its wait status or -1 on timeout.
  int WaitExit(int timeout_ms = kTimeoutMs) {
    int64_t deadline = NowMs() + timeout_ms;
    while (NowMs() < deadline) {
      int st;
      pid_t r = waitpid(pid, &st, WNOHANG);
      if (r == pid) {
        pid = -1;
        return st;
      }
      usleep(2000);
    }
    return -1;
  }
  std::vector<pid_t> Children() const {
    std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
    std::vector<pid_t> out;
    pid_t p;
    while (f >> p) out.push_back(p);
    return out;
  }
  // Waits until the runtime has connected and asked for its first event.
  void WaitReady() {
    Frame f = WaitFor(FrameType::kReady);
    EXPECT_FALSE(f.field(0).empty());
  }

  int port = 0;
  pid_t pid = -1;
  int ctl = -1;
  bool eof = false;
  protocol::FrameDecoder decoder;
  std::string logs;
};

// A raw Runtime API client connection.
class Client {
 public:
  explicit Client(int port) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (int i = 0; i < 500; ++i) {
      if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) return;
      close(fd);
      usleep(10000);
      fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    ADD_FAILURE() << "cannot connect to kindling-init";
  }
  ~Client() {
    if (fd >= 0) close(fd);
  }
  bool Write(const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t w = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (w <= 0) return false;
      off += w;
    }
    return true;
  }
  struct Response {
    int status = 0;
    std::string head;
    std::string body;
    std::string Header(const std::string& name) const {
      std::string lower_head = head;
      std::string lower_name = name;
      for (auto& c : lower_head) c = tolower(c);
      for (auto& c : lower_name) c = tolower(c);
      size_t p = lower_head.find("\r\n" + lower_name + ":");
      if (p == std::string::npos) return "<absent>";
      p += 3 + name.size();
      size_t e = head.find("\r\n", p);
      std::string v = head.substr(p, e - p);
      while (!v.empty() && v[0] == ' ') v.erase(0, 1);
      return v;
    }
  };
  // Reads one response (Content-Length framed). status 0 on EOF/timeout.
  Response Read(int timeout_ms = kTimeoutMs) {
    Response r;
    int64_t deadline = NowMs() + timeout_ms;
    for (;;) {
      size_t e = buf.find("\r\n\r\n");
      if (e != std::string::npos) {
        r.head = buf.substr(0, e);
        r.status = atoi(r.head.c_str() + 9);
        std::string cl = r.Header("Content-Length");
        size_t len = cl == "<absent>" ? 0 : std::stoul(cl);
        if (buf.size() >= e + 4 + len) {
          r.body = buf.substr(e + 4, len);
          buf.erase(0, e + 4 + len);
          return r;
        }
      }
      int64_t left = deadline - NowMs();
      if (left <= 0) return Response{};
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char tmp[65536];
      ssize_t n = read(fd, tmp, sizeof tmp);
      if (n <= 0) return Response{};
      buf.append(tmp, n);
    }
  }
  // True when the server closed the connection (EOF) within the timeout.
  bool Closed(int timeout_ms = kTimeoutMs) {
    int64_t deadline = NowMs() + timeout_ms;
    for (;;) {
      int64_t left = deadline - NowMs();
      if (left <= 0) return false;
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
      char tmp[65536];
      ssize_t n = read(fd, tmp, sizeof tmp);
      if (n <= 0) return true;
    }
  }
  int fd = -1;
  std::string buf;
};

const std::string kNextReq =
    "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n";

std::string PostReq(const std::string& path, const std::string& body,
                    const std::string& extra_headers = "") {
  return "POST /2018-06-01/runtime" + path + " HTTP/1.1\r\nHost: x\r\n" + extra_headers +
         "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A runtime that never talks to the Runtime API itself: the test is the client.
std::vector<std::string> IdleRuntime() { return {"/bin/sh", "-c", "exec sleep 1000"}; }

// ---------------------------------------------------------------------------------------------

TEST(InitTest, RoundTripWithAllHeaders) {
  std::string rt = PythonRuntime("echo_headers", R"PY(
while True:
    r, body = next_event()
    h = {k: r.getheader(k) for k in ["Lambda-Runtime-Aws-Request-Id", "Lambda-Runtime-Deadline-Ms",
         "Lambda-Runtime-Invoked-Function-Arn", "Lambda-Runtime-Trace-Id",
         "Lambda-Runtime-Client-Context", "Lambda-Runtime-Cognito-Identity", "Content-Type"]}
    h["body"] = body.decode()
    h["status"] = r.status
    post("/invocation/%s/response" % h["Lambda-Runtime-Aws-Request-Id"], json.dumps(h, sort_keys=True))
)PY");
  InitProcess init({"python3", rt});
  init.WaitReady();
  init.Invoke("req-1", R"({"a":1})", R"({"custom":{"k":"v"}})", R"({"cognitoIdentityId":"c1"})");
  Frame r = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(r.field(0), "req-1");
  const std::string& p = r.field(1);
  EXPECT_NE(p.find(R"("Lambda-Runtime-Aws-Request-Id": "req-1")"), std::string::npos) << p;
  EXPECT_NE(p.find(R"("Lambda-Runtime-Deadline-Ms": "1700000000123")"), std::string::npos) << p;
  EXPECT_NE(p.find(R"("Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:123456789012:function:f")"),
            std::string::npos) << p;
  EXPECT_NE(p.find(R"("Lambda-Runtime-Trace-Id": "Root=1-abc;Parent=def;Sampled=1")"),
            std::string::npos) << p;
  EXPECT_NE(p.find(R"("Lambda-Runtime-Client-Context": "{\"custom\":{\"k\":\"v\"}}")"),
            std::string::npos) << p;
  EXPECT_NE(p.find(R"("Lambda-Runtime-Cognito-Identity": "{\"cognitoIdentityId\":\"c1\"}")"),
            std::string::npos) << p;
  EXPECT_NE(p.find(R"("Content-Type": "application/json")"), std::string::npos) << p;
  EXPECT_NE(p.find(R"("body": "{\"a\":1}")"), std::string::npos) << p;
  EXPECT_NE(p.find(R"("status": 200)"), std::string::npos) << p;

  // Empty client context and identity: the headers are left out.
  init.Invoke("req-2", "");
  r = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(r.field(0), "req-2");
  EXPECT_NE(r.field(1).find(R"("Lambda-Runtime-Client-Context": null)"), std::string::npos)
      << r.field(1);
  EXPECT_NE(r.field(1).find(R"("Lambda-Runtime-Cognito-Identity": null)"), std::string::npos);
  EXPECT_NE(r.field(1).find(R"("body": "")"), std::string::npos);
  // Asking /next again after a result tells the worker the runtime is idle.
  init.WaitFor(FrameType::kWaiting);
}

TEST(InitTest, LogLinesAndOrdering) {
  std::string rt = PythonRuntime("logs", R"PY(
print("init output", flush=True)
while True:
    r, body = next_event()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    sys.stdout.write("stdout of %s\n" % rid); sys.stdout.flush()
    sys.stderr.write("stderr of %s\n" % rid); sys.stderr.flush()
    big = bytearray(30 * 1024 * 1024)  # raise the high-water mark
    post("/invocation/%s/response" % rid, "ok")
)PY");
  InitProcess init({"python3", rt}, {{"AWS_LAMBDA_FUNCTION_VERSION", "7"},
                                     {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"}});
  init.WaitReady();
  EXPECT_EQ(init.logs, "init output\n");
  init.logs.clear();
  for (int i = 1; i <= 2; ++i) {
    std::string id = "id-" + std::to_string(i);
    init.Invoke(id, "{}");
    Frame r = init.WaitFor(FrameType::kResponse);  // every log line below arrived before it
    EXPECT_EQ(r.field(0), id);
    EXPECT_EQ(r.field(1), "ok");
    const std::string& l = init.logs;
    size_t start = l.find("START RequestId: " + id + " Version: 7\n");
    size_t out = l.find("stdout of " + id + "\n");
    size_t err = l.find("stderr of " + id + "\n");
    size_t end = l.find("END RequestId: " + id + "\n");
    size_t report = l.find("REPORT RequestId: " + id + "\t");
    ASSERT_NE(start, std::string::npos) << l;
    ASSERT_NE(out, std::string::npos) << l;
    ASSERT_NE(err, std::string::npos) << l;
    ASSERT_NE(end, std::string::npos) << l;
    ASSERT_NE(report, std::string::npos) << l;
    EXPECT_LT(start, out);
    EXPECT_LT(out, err);  // one pipe for both streams keeps their order
    EXPECT_LT(err, end);
    EXPECT_LT(end, report);
    std::string line = l.substr(report);
    std::smatch m;
    std::regex re(
        "REPORT RequestId: " + id +
        "\tDuration: ([0-9]+\\.[0-9]{2}) ms\tBilled Duration: ([0-9]+) ms\tMemory Size: 256 MB"
        "\tMax Memory Used: ([0-9]+) MB(\tInit Duration: [0-9]+\\.[0-9]{2} ms)?\n$");
    ASSERT_TRUE(std::regex_match(line, m, re)) << line;
    double duration = std::stod(m[1]);
    long billed = std::stol(m[2]);
    EXPECT_GE(billed, 1);
    EXPECT_EQ(billed, std::max(1L, static_cast<long>(std::ceil(duration - 1e-9))));
    EXPECT_GE(std::stol(m[3]), 30);  // VmHWM of the python process, rounded up
    EXPECT_EQ(m[4].matched, i == 1) << "Init Duration only on the first invocation: " << line;
    init.logs.clear();
  }
}

TEST(InitTest, OutputIsCoalescedButPrompt) {
  std::string rt = PythonRuntime("chatty", R"PY(
import time
while True:
    r, body = next_event()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    for i in range(200):
        os.write(1, b"piece %d\n" % i)  # unbuffered, one write each
    if body == b"hang":
        time.sleep(1000)
    post("/invocation/%s/response" % rid, "ok")
)PY");
  InitProcess init({"python3", rt});
  init.WaitReady();
  init.Invoke("c1", "{}");
  int log_frames = 0;
  Frame f;
  while (init.Recv(&f) && f.type == FrameType::kLog) {
    ++log_frames;
    init.logs += f.field(0);
  }
  EXPECT_EQ(f.type, FrameType::kResponse);
  EXPECT_NE(init.logs.find("piece 0\npiece 1\n"), std::string::npos);
  EXPECT_NE(init.logs.find("piece 199\nEND RequestId: c1"), std::string::npos);
  EXPECT_LE(log_frames, 10) << "200 writes should not become 200 frames";
  // Output of an invocation that does not finish still reaches the worker, promptly.
  init.logs.clear();
  init.Invoke("c2", "hang");
  int64_t t0 = NowMs();
  while (init.logs.find("piece 199\n") == std::string::npos && NowMs() - t0 < 2000)
    init.WaitFor(FrameType::kLog, 2000);
  EXPECT_NE(init.logs.find("START RequestId: c2"), std::string::npos);
  EXPECT_NE(init.logs.find("piece 199\n"), std::string::npos);
  EXPECT_LT(NowMs() - t0, 1000);
}

TEST(InitTest, ErrorPaths) {
  std::string rt = PythonRuntime("errors", R"PY(
while True:
    r, body = next_event()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    doc = '{"errorMessage":"boom","errorType":"FromBody","stackTrace":[]}'
    if body == b"header":
        s, b = post("/invocation/%s/error" % rid, doc, {"Lambda-Runtime-Function-Error-Type": "Runtime.Custom"})
    elif body == b"json":
        s, b = post("/invocation/%s/error" % rid, doc)
    else:
        s, b = post("/invocation/%s/error" % rid, "not json at all")
    print("status", s, b.decode(), flush=True)
)PY");
  InitProcess init({"python3", rt});
  init.WaitReady();
  struct Case {
    std::string payload, type, body;
  } cases[] = {
      {"header", "Runtime.Custom", R"({"errorMessage":"boom","errorType":"FromBody","stackTrace":[]})"},
      {"json", "FromBody", R"({"errorMessage":"boom","errorType":"FromBody","stackTrace":[]})"},
      {"other", "Unhandled", "not json at all"},
  };
  int i = 0;
  for (auto& c : cases) {
    std::string id = "e" + std::to_string(++i);
    init.Invoke(id, c.payload);
    Frame e = init.WaitFor(FrameType::kError);
    EXPECT_EQ(e.field(0), id);
    EXPECT_EQ(e.field(1), c.type);
    EXPECT_EQ(e.field(2), c.body);
  }
  init.Invoke("e4", "x");  // the runtime printed the previous statuses meanwhile
  init.WaitFor(FrameType::kError);
  EXPECT_NE(init.logs.find("status 202 {\"status\":\"OK\"}"), std::string::npos) << init.logs;
}

TEST(InitTest, InitErrorThenExit) {
  std::string rt = PythonRuntime("init_error", R"PY(
print("loading handler", flush=True)
s, b = post("/init/error", '{"errorMessage":"no handler","errorType":"Runtime.NoSuchHandler"}',
            {"Lambda-Runtime-Function-Error-Type": "Runtime.NoSuchHandler"})
sys.exit(3 if s == 202 else 9)
)PY");
  InitProcess init({"python3", rt});
  Frame f = init.WaitFor(FrameType::kInitError);
  EXPECT_EQ(f.field(0), "Runtime.NoSuchHandler");
  EXPECT_EQ(f.field(1), R"({"errorMessage":"no handler","errorType":"Runtime.NoSuchHandler"})");
  EXPECT_EQ(init.logs, "loading handler\n");
  f = init.WaitFor(FrameType::kExited);
  int st = std::stoi(f.field(0));
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 3);
  EXPECT_EQ(init.WaitExit(), 0);
}

TEST(InitTest, RuntimeExitWithoutNext) {
  InitProcess init({"/bin/sh", "-c", "echo starting; echo oops >&2; exit 7"});
  Frame f = init.WaitFor(FrameType::kExited);
  int st = std::stoi(f.field(0));
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 7);
  EXPECT_EQ(f.field(1), "0");  // no invocation was delivered
  EXPECT_EQ(init.logs, "starting\noops\n");
  EXPECT_EQ(init.WaitExit(), 0);
}

// A runtime that exits after posting a result, before asking for more: no kWaiting, and an
// invocation sent meanwhile is reported as not delivered (the worker retries it elsewhere).
TEST(InitTest, ExitAfterResultIsNotWaitingAndUndelivered) {
  std::string rt = PythonRuntime("exit_after_result", R"PY(
r, body = next_event()
post("/invocation/%s/response" % r.getheader("Lambda-Runtime-Aws-Request-Id"), "done")
time.sleep(0.2)
os._exit(3)
)PY");
  InitProcess init({"python3", rt});
  init.WaitReady();
  init.Invoke("e1", "{}");
  EXPECT_EQ(init.WaitFor(FrameType::kResponse).field(1), "done");
  init.Invoke("e2", "{}");
  Frame f = init.WaitFor(FrameType::kExited);
  EXPECT_EQ(WEXITSTATUS(std::stoi(f.field(0))), 3);
  EXPECT_EQ(f.field(1), "0");
  EXPECT_EQ(init.waiting_frames, 0);
  EXPECT_EQ(init.logs.find("START RequestId: e2"), std::string::npos) << init.logs;
}

TEST(InitTest, RuntimeGetsNoInheritedFdsAndDevNullStdin) {
  // A stray descriptor from the "worker", not close-on-exec, besides the control socket.
  int stray = open("/dev/null", O_RDONLY);
  ASSERT_GE(stray, 0);
  int fd5 = dup2(stray, 5);
  close(stray);
  InitProcess init({"python3", "-c",
                    "import os\n"
                    "for fd in range(64):\n"
                    "    p = '/proc/self/fd/%d' % fd\n"
                    "    if os.path.lexists(p): print(fd, os.readlink(p))\n"});
  close(fd5);
  init.WaitFor(FrameType::kExited);
  EXPECT_NE(init.logs.find("0 /dev/null\n"), std::string::npos) << init.logs;
  EXPECT_NE(init.logs.find("1 pipe:"), std::string::npos) << init.logs;
  EXPECT_NE(init.logs.find("2 pipe:"), std::string::npos) << init.logs;
  EXPECT_EQ(init.logs.find("\n3 "), std::string::npos) << init.logs;
  EXPECT_EQ(init.logs.find("\n5 "), std::string::npos) << init.logs;
}

TEST(InitTest, RuntimeKilledBySignal) {
  InitProcess init({"/bin/sh", "-c", "kill -9 $$"});
  Frame f = init.WaitFor(FrameType::kExited);
  int st = std::stoi(f.field(0));
  EXPECT_TRUE(WIFSIGNALED(st));
  EXPECT_EQ(WTERMSIG(st), SIGKILL);
}

TEST(InitTest, RuntimeNotFound) {
  InitProcess init({"/nonexistent/bootstrap"});
  Frame f = init.WaitFor(FrameType::kExited);
  int st = std::stoi(f.field(0));
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 127);
  EXPECT_NE(init.logs.find("cannot start runtime /nonexistent/bootstrap"), std::string::npos)
      << init.logs;
  EXPECT_EQ(init.WaitExit(), 0);
}

TEST(InitTest, RuntimeDiesDuringInvocation) {
  std::string rt = PythonRuntime("crash", R"PY(
r, body = next_event()
print("about to crash", flush=True)
os._exit(5)
)PY");
  InitProcess init({"python3", rt});
  init.WaitReady();
  init.Invoke("c1", "{}");
  Frame f = init.WaitFor(FrameType::kExited);
  EXPECT_EQ(WEXITSTATUS(std::stoi(f.field(0))), 5);
  EXPECT_EQ(f.field(1), "1");  // the runtime had the invocation
  EXPECT_NE(init.logs.find("START RequestId: c1"), std::string::npos) << init.logs;
  EXPECT_LT(init.logs.find("about to crash"), init.logs.find("END RequestId: c1\n")) << init.logs;
  EXPECT_NE(init.logs.find("REPORT RequestId: c1\t"), std::string::npos) << init.logs;
}

TEST(InitTest, StaleAndRepeatedRequestIds) {
  std::string rt = PythonRuntime("stale", R"PY(
r, body = next_event()
rid1 = r.getheader("Lambda-Runtime-Aws-Request-Id")
s1, b1 = post("/invocation/bogus-id/response", "x")
s2, b2 = post("/invocation/%s/response" % rid1, "first")
r, body = next_event()
rid2 = r.getheader("Lambda-Runtime-Aws-Request-Id")
s3, b3 = post("/invocation/%s/response" % rid1, "again")
s4, b4 = post("/invocation/%s/error" % rid1, "again")
post("/invocation/%s/response" % rid2, json.dumps([s1, b1.decode(), s2, s3, b3.decode(), s4]))
next_event()
)PY");
  InitProcess init({"python3", rt});
  init.WaitReady();
  init.Invoke("s1", "{}");
  Frame f = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(f.field(0), "s1");
  EXPECT_EQ(f.field(1), "first");
  init.Invoke("s2", "{}");
  f = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(f.field(0), "s2");
  const std::string& p = f.field(1);
  EXPECT_NE(p.find("[400, \"{\\\"errorMessage\\\":\\\"Invalid request ID\\\",\\\"errorType\\\":"
                   "\\\"InvalidRequestID\\\"}\", 202, 400"),
            std::string::npos)
      << p;
  EXPECT_NE(p.find("InvalidStateTransition"), std::string::npos) << p;
  EXPECT_NE(p.find("\", 400]"), std::string::npos) << p;
}

TEST(InitTest, ResponseTooLarge) {
  std::string rt = PythonRuntime("too_large", R"PY(
statuses = []
while True:
    r, body = next_event()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    if body == b"big":
        s, b = post("/invocation/%s/response" % rid, b"x" * (7 * 1024 * 1024))
        statuses.append([s, b.decode()])
    elif body == b"limit":
        s, b = post("/invocation/%s/response" % rid, b"y" * 6291556)
        statuses.append([s])
    else:
        post("/invocation/%s/response" % rid, json.dumps(statuses))
)PY");
  InitProcess init({"python3", rt});
  init.WaitReady();
  init.Invoke("big-1", "big");
  Frame f = init.WaitFor(FrameType::kError);
  EXPECT_EQ(f.field(0), "big-1");
  EXPECT_EQ(f.field(1), "Function.ResponseSizeTooLarge");
  EXPECT_EQ(f.field(2),
            R"({"errorMessage":"Response payload size (7340032 bytes) exceeded maximum allowed )"
            R"(payload size (6291556 bytes).","errorType":"Function.ResponseSizeTooLarge"})");
  EXPECT_NE(init.logs.find("END RequestId: big-1\n"), std::string::npos);
  init.Invoke("limit-1", "limit");  // exactly the limit is fine
  f = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(f.field(0), "limit-1");
  EXPECT_EQ(f.field(1).size(), 6291556u);
  init.Invoke("report", "");
  f = init.WaitFor(FrameType::kResponse);
  EXPECT_NE(f.field(1).find("[[413, \"{\\\"errorMessage\\\":\\\"Response payload size (7340032"),
            std::string::npos)
      << f.field(1);
  EXPECT_NE(f.field(1).find("[202]]"), std::string::npos) << f.field(1);
}

TEST(InitTest, LargeEventPayload) {
  InitProcess init({INIT_TEST_RUNTIME_PATH});
  init.WaitReady();
  std::string payload(6 * 1024 * 1024, 'p');
  for (size_t i = 0; i < payload.size(); i += 4096) payload[i] = static_cast<char>('a' + i % 26);
  init.Invoke("large", payload);
  Frame f = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(f.field(0), "large");
  EXPECT_TRUE(f.field(1) == payload);
}

TEST(InitTest, HostileHttpDoesNotKillInit) {
  InitProcess init({INIT_TEST_RUNTIME_PATH});
  init.WaitReady();
  {
    Client c(init.port);
    c.Write(std::string("\x00\x01\x02 garbage\r\n\r\n", 16));
    EXPECT_EQ(c.Read().status, 400);
    EXPECT_TRUE(c.Closed());
  }
  {
    Client c(init.port);
    c.Write("GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nX: " + std::string(100000, 'a'));
    EXPECT_EQ(c.Read().status, 431);
    EXPECT_TRUE(c.Closed());
  }
  {
    Client c(init.port);
    c.Write("POST /2018-06-01/runtime/invocation/x/response HTTP/1.1\r\nContent-Length: -1\r\n\r\n");
    EXPECT_EQ(c.Read().status, 400);
  }
  {
    Client c(init.port);
    c.Write("POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
    EXPECT_EQ(c.Read().status, 501);
  }
  {
    Client c(init.port);
    c.Write("POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzzz\r\n");
    EXPECT_EQ(c.Read().status, 400);
  }
  {  // unknown paths and methods keep the connection
    Client c(init.port);
    c.Write("GET /nope HTTP/1.1\r\n\r\nPUT /2018-06-01/runtime/invocation/next HTTP/1.1\r\n"
            "Content-Length: 3\r\n\r\nabcDELETE /2018-06-01/runtime/init/error HTTP/1.1\r\n\r\n");
    EXPECT_EQ(c.Read().status, 404);
    EXPECT_EQ(c.Read().status, 405);
    EXPECT_EQ(c.Read().status, 405);
  }
  {  // huge declared body on an unknown path: swallowed, then 413
    Client c(init.port);
    c.Write("POST /elsewhere HTTP/1.1\r\nContent-Length: 7000000\r\n\r\n");
    c.Write(std::string(7000000, 'z'));
    Client::Response r = c.Read();
    EXPECT_EQ(r.status, 413);
    c.Write("GET /nope HTTP/1.1\r\n\r\n");
    EXPECT_EQ(c.Read().status, 404);
  }
  {  // more connections than the limit, some with half-sent requests
    std::vector<std::unique_ptr<Client>> many;
    for (int i = 0; i < 150; ++i) {
      many.push_back(std::make_unique<Client>(init.port));
      many.back()->Write("GET /2018-06-01/runtime/invoc");
    }
    Client c(init.port);
    c.Write("GET /nope HTTP/1.1\r\n\r\n");
    EXPECT_EQ(c.Read().status, 404);
  }
  {  // random bytes
    srand(1);
    for (int i = 0; i < 50; ++i) {
      Client c(init.port);
      std::string junk;
      for (int j = 0; j < 2000; ++j) junk.push_back(static_cast<char>(rand()));
      c.Write(junk);
      c.Write("\r\n\r\n");
    }
  }
  // The runtime's own connection survived it all.
  init.Invoke("after", "still alive");
  Frame f = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(f.field(0), "after");
  EXPECT_EQ(f.field(1), "still alive");
  EXPECT_EQ(waitpid(init.pid, nullptr, WNOHANG), 0);
}

TEST(InitTest, PartialPipelinedAndChunkedRequests) {
  InitProcess init(IdleRuntime());
  Client c(init.port);
  for (size_t i = 0; i < kNextReq.size(); i += 3) {  // the request in 3-byte pieces
    c.Write(kNextReq.substr(i, 3));
    usleep(1000);
  }
  init.WaitReady();
  init.Invoke("p1", "event-1");
  Client::Response r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "event-1");
  EXPECT_EQ(r.Header("Lambda-Runtime-Aws-Request-Id"), "p1");
  EXPECT_EQ(r.Header("Lambda-Runtime-Deadline-Ms"), "1700000000123");
  EXPECT_EQ(r.Header("Lambda-Runtime-Client-Context"), "<absent>");
  // Response and the next /next in one write.
  c.Write(PostReq("/invocation/p1/response", "result-1") + kNextReq);
  r = c.Read();
  EXPECT_EQ(r.status, 202);
  EXPECT_EQ(r.body, R"({"status":"OK"})");
  Frame f = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(f.field(1), "result-1");
  init.Invoke("p2", "event-2");
  r = c.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Lambda-Runtime-Aws-Request-Id"), "p2");
  // A chunked response body, with Expect: 100-continue.
  c.Write("POST /2018-06-01/runtime/invocation/p2/response HTTP/1.1\r\nExpect: 100-continue\r\n"
          "Transfer-Encoding: chunked\r\n\r\n");
  std::string got;
  int64_t deadline = NowMs() + kTimeoutMs;
  while (got.find("\r\n\r\n") == std::string::npos && NowMs() < deadline) {
    char b[256];
    ssize_t n = read(c.fd, b, sizeof b);
    if (n <= 0) break;
    got.append(b, n);
  }
  EXPECT_EQ(got, "HTTP/1.1 100 Continue\r\n\r\n");
  c.Write("4\r\nchun\r\n");
  c.Write("3\r\nked\r\n0\r\n\r\n");
  EXPECT_EQ(c.Read().status, 202);
  f = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(f.field(0), "p2");
  EXPECT_EQ(f.field(1), "chunked");
}

TEST(InitTest, HeldInvokeAndReconnect) {
  InitProcess init(IdleRuntime());
  // The event arrives before the runtime asks: held.
  init.Invoke("h1", "held");
  {
    Client a(init.port);
    a.Write(kNextReq);
    init.WaitReady();
    Client::Response r = a.Read();
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, "held");
    // The connection goes away without a result (a snapshot was restored elsewhere, say).
  }
  Client b(init.port);
  b.Write(kNextReq);
  Client::Response r = b.Read();
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("Lambda-Runtime-Aws-Request-Id"), "h1");
  EXPECT_EQ(r.body, "held");
  b.Write(PostReq("/invocation/h1/response", "done"));
  EXPECT_EQ(b.Read().status, 202);
  Frame f = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(f.field(1), "done");
  size_t first = init.logs.find("START RequestId: h1");
  EXPECT_NE(first, std::string::npos);
  EXPECT_EQ(init.logs.find("START RequestId: h1", first + 1), std::string::npos) << init.logs;
  // A second /next from a new connection supersedes a blocked one.
  Client c1(init.port), c2(init.port);
  c1.Write(kNextReq);
  usleep(20000);
  c2.Write(kNextReq);
  usleep(20000);
  init.Invoke("h2", "x");
  EXPECT_EQ(c2.Read().Header("Lambda-Runtime-Aws-Request-Id"), "h2");
  EXPECT_TRUE(c1.Closed());
}

TEST(InitTest, InitAndInvocationErrorsFromRawClient) {
  InitProcess init(IdleRuntime());
  Client c(init.port);
  c.Write(PostReq("/init/error", R"({"errorMessage":"bad","errorType":"Runtime.ImportModuleError"})"));
  EXPECT_EQ(c.Read().status, 202);
  Frame f = init.WaitFor(FrameType::kInitError);
  EXPECT_EQ(f.field(0), "Runtime.ImportModuleError");
}

// Live (non-zombie) processes in process group pgid.
int LiveInGroup(pid_t pgid) {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "stat");
    std::string stat;
    if (!std::getline(f, stat)) continue;
    size_t rp = stat.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(stat.substr(rp + 2));
    char state;
    long ppid, pgrp;
    rest >> state >> ppid >> pgrp;
    if (pgrp == pgid && state != 'Z' && state != 'X') ++n;
  }
  return n;
}

bool GroupGone(pid_t pgid) {
  for (int i = 0; i < 200; ++i) {
    if (LiveInGroup(pgid) == 0) return true;
    usleep(10000);
  }
  return false;
}

TEST(InitTest, ControlEofKillsRuntimeAndExits) {
  InitProcess init({"/bin/sh", "-c", "sleep 1000 & exec sleep 1000"});
  std::vector<pid_t> kids;
  for (int i = 0; i < 500 && kids.empty(); ++i) {
    usleep(2000);
    kids = init.Children();
  }
  ASSERT_EQ(kids.size(), 1u);
  pid_t runtime = kids[0];
  usleep(50000);
  ASSERT_EQ(LiveInGroup(runtime), 2);
  close(init.ctl);
  init.ctl = -1;
  EXPECT_EQ(init.WaitExit(), 0);
  // The runtime and its background child, in the runtime's process group, are gone.
  EXPECT_TRUE(GroupGone(runtime));
}

TEST(InitTest, SigtermKillsRuntimeAndExits) {
  InitProcess init({"/bin/sh", "-c", "exec sleep 1000"});
  std::vector<pid_t> kids;
  for (int i = 0; i < 500 && kids.empty(); ++i) {
    usleep(2000);
    kids = init.Children();
  }
  ASSERT_EQ(kids.size(), 1u);
  kill(init.pid, SIGTERM);
  EXPECT_EQ(init.WaitExit(), 0);
  EXPECT_TRUE(GroupGone(kids[0]));
}

TEST(InitTest, MalformedFrameExitsNonZero) {
  InitProcess init(IdleRuntime());
  init.SendRaw(std::string("\xff\xff\xff\xff\x01", 5));
  int st = init.WaitExit();
  ASSERT_NE(st, -1);
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_NE(WEXITSTATUS(st), 0);
}

TEST(InitTest, UnexpectedFrameTypeExitsNonZero) {
  InitProcess init(IdleRuntime());
  init.Send(FrameType::kResponse, {"x", "y"});
  int st = init.WaitExit();
  ASSERT_NE(st, -1);
  EXPECT_NE(WEXITSTATUS(st), 0);
}

TEST(InitTest, ReapsOrphans) {
  // The shell's background child outlives the shell's subshell and is re-parented to init.
  InitProcess init({"/bin/sh", "-c", "(sleep 0.1 &); exec sleep 1000"});
  usleep(600000);
  for (pid_t p : init.Children()) {
    std::ifstream f("/proc/" + std::to_string(p) + "/stat");
    std::string stat;
    std::getline(f, stat);
    size_t rp = stat.rfind(')');
    ASSERT_NE(rp, std::string::npos);
    EXPECT_NE(stat[rp + 2], 'Z') << "zombie child " << stat;
  }
}

bool CanUnshare() {
  return system("unshare -Upf --map-root-user --mount-proc true >/dev/null 2>&1") == 0;
}

// In a pid namespace, as PID 1 (what a jail does), with a fresh /proc.
TEST(InitTest, RunsAsPid1OfAPidNamespace) {
  if (!CanUnshare()) GTEST_SKIP() << "user + pid namespaces unavailable";
  std::string rt = PythonRuntime("pid1", R"PY(
while True:
    r, body = next_event()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    if body == b"exit":
        os.system("sleep 0.05 &")  # an orphan for PID 1 to reap
        sys.exit(6)
    post("/invocation/%s/response" % rid, "pid=%d ppid=%d" % (os.getpid(), os.getppid()))
)PY");
  InitProcess init({"python3", rt}, {},
                   {"/usr/bin/unshare", "-Upf", "--map-root-user", "--mount-proc"});
  init.WaitReady();
  init.Invoke("n1", "{}");
  Frame f = init.WaitFor(FrameType::kResponse);
  EXPECT_EQ(f.field(1), "pid=2 ppid=1");
  EXPECT_NE(init.logs.find("Max Memory Used: "), std::string::npos);
  EXPECT_EQ(init.logs.find("Max Memory Used: 0 MB"), std::string::npos) << init.logs;
  init.Invoke("n2", "exit");
  f = init.WaitFor(FrameType::kExited);
  EXPECT_EQ(WEXITSTATUS(std::stoi(f.field(0))), 6);
  EXPECT_EQ(init.WaitExit(), 0);  // unshare reports kindling-init's exit status
}

TEST(InitTest, Pid1ReceivesSigtermFromOutside) {
  if (!CanUnshare()) GTEST_SKIP() << "user + pid namespaces unavailable";
  InitProcess init({"/bin/sh", "-c", "exec sleep 1000"}, {},
                   {"/usr/bin/unshare", "-Upf", "--map-root-user", "--mount-proc"});
  std::vector<pid_t> kids;  // unshare's child is kindling-init
  for (int i = 0; i < 500 && kids.empty(); ++i) {
    usleep(2000);
    kids = init.Children();
  }
  ASSERT_EQ(kids.size(), 1u);
  usleep(100000);
  kill(kids[0], SIGTERM);
  EXPECT_EQ(init.WaitExit(), 0);
}

long RssKb(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

TEST(InitTest, OutputFloodIsForwardedWithBoundedMemory) {
  const size_t kBytes = 256u << 20;
  InitProcess init({"/bin/sh", "-c", "head -c " + std::to_string(kBytes) + " /dev/zero; exit 4"});
  usleep(300000);  // the worker does not read: init must stop reading the pipe
  long rss = RssKb(init.pid);
  EXPECT_GT(rss, 0);
  EXPECT_LT(rss, 16 * 1024) << "kindling-init buffered the flood";
  size_t got = 0;
  Frame f;
  int64_t deadline = NowMs() + 60000;
  while (NowMs() < deadline && init.Recv(&f)) {
    if (f.type == FrameType::kLog) {
      got += f.field(0).size();
      continue;
    }
    ASSERT_EQ(f.type, FrameType::kExited);
    EXPECT_EQ(WEXITSTATUS(std::stoi(f.field(0))), 4);
    break;
  }
  EXPECT_EQ(got, kBytes);
}

// Worker-side round trip: kInvoke written -> runtime -> kResponse read. Iterations from
// KINDLING_INIT_BENCH_ITERS (default 2000).
void MeasureRoundTrip(const char* label, std::vector<std::string> runtime) {
  int iters = 2000;
  if (const char* e = getenv("KINDLING_INIT_BENCH_ITERS")) iters = atoi(e);
  InitProcess init(std::move(runtime));
  init.WaitReady();
  // KINDLING_INIT_BENCH_PIN=split: this process (the worker) on CPU 0, kindling-init and the
  // runtime on CPU 1; =same: all three on CPU 0. Unset: the scheduler decides.
  if (const char* pin = getenv("KINDLING_INIT_BENCH_PIN")) {
    cpu_set_t zero, one;
    CPU_ZERO(&zero);
    CPU_SET(0, &zero);
    CPU_ZERO(&one);
    CPU_SET(std::string(pin) == "split" ? 1 : 0, &one);
    sched_setaffinity(0, sizeof zero, &zero);
    sched_setaffinity(init.pid, sizeof one, &one);
    for (pid_t c : init.Children()) sched_setaffinity(c, sizeof one, &one);
  }
  std::vector<double> us;
  us.reserve(iters);
  std::string invoke;
  Frame f;
  for (int i = 0; i < iters + 100; ++i) {
    invoke.clear();
    std::string id = "bench-" + std::to_string(i);
    protocol::Encode(FrameType::kInvoke,
                     {id, "1700000000123", "arn:aws:lambda:us-east-1:1:function:f", "Root=1", "", "",
                      "{}"},
                     &invoke);
    auto t0 = std::chrono::steady_clock::now();
    init.SendRaw(invoke);
    do {
      ASSERT_TRUE(init.Recv(&f));
    } while (f.type == FrameType::kLog || f.type == FrameType::kWaiting);
    auto t1 = std::chrono::steady_clock::now();
    ASSERT_EQ(f.type, FrameType::kResponse);
    ASSERT_EQ(f.field(0), id);
    if (i >= 100) us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(us.begin(), us.end());
  printf("kindling-init warm round trip, %s runtime, %d invokes: p50 %.1f us, p90 %.1f us, "
         "p99 %.1f us\n",
         label, iters, us[us.size() / 2], us[us.size() * 9 / 10], us[us.size() * 99 / 100]);
}

TEST(InitBench, WarmRoundTripNative) { MeasureRoundTrip("native", {INIT_TEST_RUNTIME_PATH}); }

TEST(InitBench, WarmRoundTripPython) {
  std::string rt = PythonRuntime("noop", R"PY(
while True:
    r, body = next_event()
    post("/invocation/%s/response" % r.getheader("Lambda-Runtime-Aws-Request-Id"), body)
)PY");
  MeasureRoundTrip("python3 http.client", {"python3", rt});
}

// Cold start: kindling-init exec'd -> native runtime started -> its first /next (kReady).
TEST(InitBench, ColdStartToReadyNative) {
  std::vector<double> total_us, init_us;
  for (int i = 0; i < 100; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    InitProcess init({INIT_TEST_RUNTIME_PATH});
    Frame f = init.WaitFor(FrameType::kReady);
    auto t1 = std::chrono::steady_clock::now();
    total_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    init_us.push_back(std::stod(f.field(0)));
  }
  std::sort(total_us.begin(), total_us.end());
  std::sort(init_us.begin(), init_us.end());
  printf("cold start to kReady (fork+exec kindling-init, spawn runtime, first /next): p50 %.0f us; "
         "reported init duration p50 %.0f us\n",
         total_us[50], init_us[50]);
}

}  // namespace
}  // namespace kindling::init
