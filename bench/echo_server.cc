// kindling-echo-server: the "bare HTTP round trip on loopback" baseline of the Kindling benchmark.
//
// A minimal epoll HTTP/1.1 keep-alive server: every request (any method, any path) is answered
// with 200 and a tiny JSON body. One event-loop thread by default (--threads N adds SO_REUSEPORT
// listeners, one loop each). It only parses what it needs (header end, Content-Length) and never
// trusts input sizes: oversize headers or bodies close the connection.
//
// usage: kindling-echo-server [--listen 127.0.0.1:PORT] [--threads N] [--max-seconds S]
// Prints "listening 127.0.0.1:PORT" on stdout once ready (PORT 0 picks a free port).
// --max-seconds bounds its lifetime (default 3600) so a forgotten server does not linger.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kMaxHeader = 64 * 1024;
constexpr size_t kMaxBody = 8 * 1024 * 1024;
constexpr std::string_view kResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
constexpr std::string_view kResponseClose =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    "Connection: close\r\n\r\n{}";

struct Conn {
  std::string in;
  std::string out;
  bool close_after = false;
};

// Value of header `name` inside [headers), case-insensitive; npos-safe.
std::string_view Header(std::string_view headers, std::string_view name) {
  size_t pos = 0;
  while (pos < headers.size()) {
    size_t eol = headers.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = headers.size();
    std::string_view line = headers.substr(pos, eol - pos);
    if (line.size() > name.size() && line[name.size()] == ':' &&
        strncasecmp(line.data(), name.data(), name.size()) == 0) {
      std::string_view v = line.substr(name.size() + 1);
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      return v;
    }
    pos = eol + 2;
  }
  return {};
}

int Listen(const sockaddr_in& sa, bool reuseport) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0 || listen(fd, 1024) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Consumes complete requests from c->in, appends responses to c->out. Returns false on a
// malformed/oversize request (the connection is then closed).
bool Handle(Conn* c) {
  size_t off = 0;
  for (;;) {
    std::string_view in(c->in);
    in.remove_prefix(off);
    size_t hend = in.find("\r\n\r\n");
    if (hend == std::string_view::npos) {
      if (in.size() > kMaxHeader) return false;
      break;
    }
    std::string_view headers = in.substr(0, hend + 2);
    size_t body = 0;
    std::string_view cl = Header(headers, "Content-Length");
    if (!cl.empty()) {
      char* end = nullptr;
      std::string tmp(cl);
      unsigned long v = strtoul(tmp.c_str(), &end, 10);
      if (end == tmp.c_str() || v > kMaxBody) return false;
      body = v;
    } else if (!Header(headers, "Transfer-Encoding").empty()) {
      return false;  // chunked requests are not needed by the benchmark
    }
    if (in.size() < hend + 4 + body) break;
    std::string_view conn = Header(headers, "Connection");
    bool close_req = conn.size() >= 5 && strncasecmp(conn.data(), "close", 5) == 0;
    bool http10 = in.substr(in.find(' ', in.find(' ') + 1) + 1, 8) == "HTTP/1.0";
    if (close_req || http10) {
      c->out.append(kResponseClose);
      c->close_after = true;
      off = c->in.size();
      break;
    }
    c->out.append(kResponse);
    off += hend + 4 + body;
  }
  c->in.erase(0, off);
  return true;
}

void Loop(int lfd) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::unordered_map<int, Conn> conns;
  std::vector<epoll_event> events(256);
  char buf[65536];
  auto drop = [&](int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
    close(fd);
    conns.erase(fd);
  };
  for (;;) {
    int n = epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return;
    }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int cfd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) break;
          int one = 1;
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLRDHUP;
          cev.data.fd = cfd;
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
          conns.emplace(cfd, Conn{});
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = it->second;
      bool dead = (events[i].events & (EPOLLERR | EPOLLHUP)) != 0;
      if (events[i].events & (EPOLLIN | EPOLLRDHUP)) {
        for (;;) {
          ssize_t r = recv(fd, buf, sizeof buf, 0);
          if (r > 0) {
            c.in.append(buf, static_cast<size_t>(r));
            if (static_cast<size_t>(r) < sizeof buf) break;
            continue;
          }
          if (r == 0) dead = true;
          else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) dead = true;
          break;
        }
        if (!Handle(&c)) dead = true;
      }
      if (!c.out.empty()) {
        ssize_t w = send(fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (w > 0) c.out.erase(0, static_cast<size_t>(w));
        else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) dead = true;
        epoll_event cev{};
        cev.events = EPOLLIN | EPOLLRDHUP | (c.out.empty() ? 0u : static_cast<unsigned>(EPOLLOUT));
        cev.data.fd = fd;
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
      }
      if (dead || (c.close_after && c.out.empty())) drop(fd);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen_addr = "127.0.0.1:0";
  int threads = 1;
  double max_seconds = 3600;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--listen") listen_addr = argv[i + 1];
    else if (a == "--threads") threads = atoi(argv[i + 1]);
    else if (a == "--max-seconds") max_seconds = atof(argv[i + 1]);
    else {
      fprintf(stderr, "usage: kindling-echo-server [--listen IP:PORT] [--threads N] "
                      "[--max-seconds S]\n");
      return 2;
    }
  }
  if (threads < 1 || threads > 64) threads = 1;
  size_t colon = listen_addr.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  std::string host = listen_addr.substr(0, colon);
  if (colon == std::string::npos || inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) {
    fprintf(stderr, "bad --listen %s\n", listen_addr.c_str());
    return 2;
  }
  sa.sin_port = htons(static_cast<uint16_t>(atoi(listen_addr.c_str() + colon + 1)));
  signal(SIGPIPE, SIG_IGN);
  std::vector<int> fds;
  int first = Listen(sa, threads > 1);
  if (first < 0) {
    perror("listen");
    return 1;
  }
  fds.push_back(first);
  socklen_t len = sizeof sa;
  getsockname(first, reinterpret_cast<sockaddr*>(&sa), &len);
  for (int i = 1; i < threads; i++) {
    int fd = Listen(sa, true);
    if (fd < 0) {
      perror("listen");
      return 1;
    }
    fds.push_back(fd);
  }
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof ip);
  printf("listening %s:%d\n", ip, ntohs(sa.sin_port));
  fflush(stdout);
  std::thread([max_seconds] {
    std::this_thread::sleep_for(std::chrono::duration<double>(max_seconds));
    _exit(0);
  }).detach();
  std::vector<std::thread> loops;
  for (size_t i = 1; i < fds.size(); i++) loops.emplace_back(Loop, fds[i]);
  Loop(fds[0]);
  for (auto& t : loops) t.join();
  return 0;
}
