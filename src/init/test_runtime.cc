// init_test_runtime: the smallest useful native runtime, for kindling-init's tests and its latency
// measurement. Loop: GET /2018-06-01/runtime/invocation/next, POST the event back unchanged to
// /invocation/{id}/response, over one keep-alive TCP connection (TCP_NODELAY), on
// $AWS_LAMBDA_RUNTIME_API (numeric IPv4:port). Exits 0 when the connection closes, 1 on errors.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

namespace {

int fd = -1;
std::string buf;

[[noreturn]] void Die(const char* what) {
  fprintf(stderr, "init_test_runtime: %s\n", what);
  exit(1);
}

bool WriteAll(const iovec* iov, int n) {
  iovec v[4];
  memcpy(v, iov, n * sizeof(iovec));
  int i = 0;
  while (i < n) {
    ssize_t w = writev(fd, v + i, n - i);
    if (w < 0) return false;
    while (i < n && static_cast<size_t>(w) >= v[i].iov_len) w -= v[i++].iov_len;
    if (i < n) {
      v[i].iov_base = static_cast<char*>(v[i].iov_base) + w;
      v[i].iov_len -= w;
    }
  }
  return true;
}

// Reads one response; returns its status, fills the request id and the body.
int ReadResponse(std::string* id, std::string* body) {
  size_t head_end;
  for (;;) {
    head_end = buf.find("\r\n\r\n");
    if (head_end != std::string::npos) break;
    char tmp[65536];
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n <= 0) exit(0);
    buf.append(tmp, n);
  }
  std::string_view head(buf.data(), head_end);
  int status = atoi(buf.c_str() + 9);
  size_t len = 0;
  id->clear();
  size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string_view::npos) {
    pos += 2;
    std::string_view line = head.substr(pos, head.find("\r\n", pos) - pos);
    if (strncasecmp(line.data(), "content-length:", 15) == 0) len = strtoul(line.data() + 15, nullptr, 10);
    if (strncasecmp(line.data(), "lambda-runtime-aws-request-id:", 30) == 0) {
      std::string_view v = line.substr(30);
      while (!v.empty() && v[0] == ' ') v.remove_prefix(1);
      id->assign(v);
    }
  }
  size_t total = head_end + 4 + len;
  while (buf.size() < total) {
    size_t old = buf.size();
    buf.resize(total);
    ssize_t n = read(fd, buf.data() + old, total - old);
    if (n <= 0) exit(0);
    buf.resize(old + n);
  }
  body->assign(buf, head_end + 4, len);
  buf.erase(0, total);
  return status;
}

}  // namespace

int main() {
  const char* api = getenv("AWS_LAMBDA_RUNTIME_API");
  if (!api) Die("AWS_LAMBDA_RUNTIME_API is not set");
  std::string host(api);
  size_t colon = host.rfind(':');
  if (colon == std::string::npos) Die("bad AWS_LAMBDA_RUNTIME_API");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(atoi(host.c_str() + colon + 1));
  host.resize(colon);
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) Die("bad address");
  fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) Die("connect");
  static const char kNext[] = "GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string id, body, ack, head;
  for (;;) {
    iovec nv{const_cast<char*>(kNext), sizeof kNext - 1};
    if (!WriteAll(&nv, 1)) Die("write");
    if (ReadResponse(&id, &body) != 200) Die("next failed");
    head = "POST /2018-06-01/runtime/invocation/" + id + "/response HTTP/1.1\r\nHost: x\r\n"
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    iovec rv[2] = {{head.data(), head.size()}, {body.data(), body.size()}};
    if (!WriteAll(rv, 2)) Die("write");
    if (ReadResponse(&id, &ack) != 202) Die("response not accepted");
  }
}
