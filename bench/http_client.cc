#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <strings.h>

namespace kindling::bench {

bool ParseUrl(std::string_view text, Url* out, std::string* err) {
  constexpr std::string_view kScheme = "http://";
  if (text.substr(0, kScheme.size()) != kScheme) {
    *err = "url must start with http://";
    return false;
  }
  text.remove_prefix(kScheme.size());
  size_t slash = text.find('/');
  std::string_view hostport = text.substr(0, slash);
  out->path = slash == std::string_view::npos ? "/" : std::string(text.substr(slash));
  size_t colon = hostport.rfind(':');
  out->host = std::string(hostport.substr(0, colon));
  out->port = 80;
  if (colon != std::string_view::npos) {
    std::string p(hostport.substr(colon + 1));
    char* end = nullptr;
    long v = strtol(p.c_str(), &end, 10);
    if (p.empty() || *end != '\0' || v <= 0 || v > 65535) {
      *err = "bad port in url";
      return false;
    }
    out->port = static_cast<uint16_t>(v);
  }
  if (out->host == "localhost") out->host = "127.0.0.1";
  in_addr a{};
  if (inet_pton(AF_INET, out->host.c_str(), &a) != 1) {
    *err = "host must be a numeric IPv4 address";
    return false;
  }
  return true;
}

std::string FindHeader(std::string_view headers, std::string_view name) {
  size_t pos = 0;
  while (pos < headers.size()) {
    size_t eol = headers.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = headers.size();
    std::string_view line = headers.substr(pos, eol - pos);
    size_t colon = line.find(':');
    if (colon == name.size() && strncasecmp(line.data(), name.data(), name.size()) == 0) {
      std::string_view v = line.substr(colon + 1);
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      return std::string(v);
    }
    pos = eol + 2;
  }
  return {};
}

static bool ContainsToken(std::string v, std::string_view token) {
  for (auto& c : v) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return v.find(token) != std::string::npos;
}

long ParseResponse(std::string_view buf, bool head_request, Response* out, std::string* err) {
  size_t hend = buf.find("\r\n\r\n");
  if (hend == std::string_view::npos) {
    if (buf.size() > 64 * 1024) {
      *err = "response header too large";
      return -1;
    }
    return 0;
  }
  std::string_view status_line = buf.substr(0, buf.find("\r\n"));
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1.") {
    *err = "bad status line: " + std::string(status_line.substr(0, 80));
    return -1;
  }
  int status = 0;
  for (int i = 9; i < 12; i++) {
    char c = status_line[i];
    if (c < '0' || c > '9') {
      *err = "bad status code";
      return -1;
    }
    status = status * 10 + (c - '0');
  }
  size_t hstart = status_line.size() + 2;
  std::string_view headers = hstart <= hend ? buf.substr(hstart, hend + 2 - hstart) : "";
  size_t body_start = hend + 4;
  out->status = status;
  out->headers = std::string(headers);
  out->body.clear();
  std::string conn = FindHeader(headers, "Connection");
  out->close = ContainsToken(conn, "close") || status_line.substr(0, 8) == "HTTP/1.0";
  if (head_request || status == 204 || status == 304 || (status >= 100 && status < 200)) {
    return static_cast<long>(body_start);
  }
  std::string te = FindHeader(headers, "Transfer-Encoding");
  if (ContainsToken(te, "chunked")) {
    size_t p = body_start;
    for (;;) {
      size_t eol = buf.find("\r\n", p);
      if (eol == std::string_view::npos) return 0;
      std::string size_text(buf.substr(p, eol - p));
      char* end = nullptr;
      unsigned long n = strtoul(size_text.c_str(), &end, 16);
      if (end == size_text.c_str() || n > (64ul << 20)) {
        *err = "bad chunk size";
        return -1;
      }
      p = eol + 2;
      if (n == 0) {
        // Trailers (usually none) end with an empty line.
        size_t tend = buf.find("\r\n", p);
        while (tend != std::string_view::npos && tend != p) {
          p = tend + 2;
          tend = buf.find("\r\n", p);
        }
        if (tend == std::string_view::npos) return 0;
        return static_cast<long>(tend + 2);
      }
      if (buf.size() < p + n + 2) return 0;
      out->body.append(buf.substr(p, n));
      p += n + 2;
    }
  }
  std::string cl = FindHeader(headers, "Content-Length");
  if (cl.empty()) {
    // Body delimited by close; the caller treats EOF as the end. Signal "need more" until then.
    out->close = true;
    return 0;
  }
  char* end = nullptr;
  unsigned long n = strtoul(cl.c_str(), &end, 10);
  if (*end != '\0' || n > (64ul << 20)) {
    *err = "bad Content-Length";
    return -1;
  }
  if (buf.size() < body_start + n) return 0;
  out->body.assign(buf.substr(body_start, n));
  return static_cast<long>(body_start + n);
}

HttpConn::~HttpConn() { Close(); }

void HttpConn::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  buf_.clear();
}

void HttpConn::Shutdown() {
  int fd = fd_;
  if (fd >= 0) shutdown(fd, SHUT_RDWR);
}

bool HttpConn::Connect(const Url& url, int timeout_ms, std::string* err) {
  Close();
  url_ = url;
  timeout_ms_ = timeout_ms;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *err = std::string("socket: ") + strerror(errno);
    return false;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(url.port);
  inet_pton(AF_INET, url.host.c_str(), &sa.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    *err = std::string("connect: ") + strerror(errno);
    close(fd);
    return false;
  }
  fd_ = fd;
  return true;
}

bool HttpConn::SendAll(std::string_view data, std::string* err) {
  while (!data.empty()) {
    ssize_t n = send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      *err = std::string("send: ") + strerror(errno);
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool HttpConn::RoundTrip(std::string_view request, bool head_request, Response* out,
                         std::string* err) {
  for (int attempt = 0; attempt < 2; attempt++) {
    if (fd_ < 0 && !Connect(url_, timeout_ms_, err)) return false;
    if (!SendAll(request, err)) {
      Close();
      if (attempt == 0) continue;
      return false;
    }
    bool got_bytes = !buf_.empty();
    char tmp[16384];
    for (;;) {
      if (!buf_.empty()) {
        long used = ParseResponse(buf_, head_request, out, err);
        if (used < 0) {
          Close();
          return false;
        }
        if (used > 0) {
          buf_.erase(0, static_cast<size_t>(used));
          if (out->close) Close();
          return true;
        }
      }
      ssize_t n = recv(fd_, tmp, sizeof tmp, 0);
      if (n > 0) {
        buf_.append(tmp, static_cast<size_t>(n));
        got_bytes = true;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 && got_bytes) {
        // Close-delimited body (no Content-Length).
        std::string e2;
        Response r;
        size_t hend = buf_.find("\r\n\r\n");
        if (hend != std::string::npos && ParseResponse(buf_, true, &r, &e2) > 0) {
          *out = r;
          out->body = buf_.substr(hend + 4);
          out->close = true;
          Close();
          return true;
        }
        *err = "connection closed mid-response";
        Close();
        return false;
      }
      int e = errno;
      Close();
      if (n == 0 && !got_bytes && attempt == 0) break;  // stale keep-alive connection: retry
      *err = n == 0 ? "connection closed by server"
                    : (e == EAGAIN || e == EWOULDBLOCK ? std::string("timeout")
                                                       : std::string("recv: ") + strerror(e));
      return false;
    }
  }
  *err = "connection closed by server";
  return false;
}

std::string BuildRequest(std::string_view method, const Url& url, std::string_view body,
                         const std::string* extra_headers, size_t n_extra) {
  std::string r;
  r.reserve(256 + body.size());
  r.append(method).append(" ").append(url.path).append(" HTTP/1.1\r\n");
  r.append("Host: ").append(url.host).append(":").append(std::to_string(url.port)).append("\r\n");
  bool has_ct = false;
  for (size_t i = 0; i < n_extra; i++) {
    r.append(extra_headers[i]).append("\r\n");
    if (strncasecmp(extra_headers[i].c_str(), "content-type:", 13) == 0) has_ct = true;
  }
  if (!has_ct && !body.empty()) r.append("Content-Type: application/json\r\n");
  if (!body.empty() || method == "POST" || method == "PUT") {
    r.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n");
  }
  r.append("\r\n");
  r.append(body);
  return r;
}

}  // namespace kindling::bench
