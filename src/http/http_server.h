// HttpServer: HTTP/1.1 (keep-alive) on a TCP listener, one coroutine per connection, requests
// handed to a Handler. Bodies are read only after the handler's body limit for that request line
// is known; a request over it gets the handler's 413 and the connection is closed.
//
// Limits against slow or abusive clients (HttpLimits): a cap on concurrent connections (beyond it a
// new connection is closed at once), a deadline for a request's header, one for its body
// proportional to its size, an idle keep-alive timeout, and caps on header bytes and count (over
// them: 431 and close). A malformed header gets 400 and close.
//
// Thread safety: runs on one io_context thread.
#pragma once
#include <chrono>

#include "common/asio.h"
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace kindling {

struct HttpRequest {
  std::string method;
  std::string target;  // raw path + query
  std::string path;    // URL-decoded path
  std::vector<std::pair<std::string, std::string>> query;    // decoded
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;

  // "" when absent.
  const std::string& Header(const std::string& lower_name) const;
  const std::string& Query(const std::string& name) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// 127.0.0.0/8, ::1 (optionally [bracketed]) or "localhost"; anything else (0.0.0.0 included) is
// reachable from other hosts.
bool IsLoopbackHost(std::string host);

// "HOST:PORT" (IPv6 hosts in brackets) -> {host without brackets, port 0-65535}; InvalidArgument
// for anything else. The one parser of listen and peer addresses.
Result<std::pair<std::string, int>> ParseHostPort(const std::string& text);

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // Largest body accepted for this method and path.
  virtual size_t BodyLimit(const std::string& method, const std::string& path) = 0;
  // The response for a request whose body exceeded BodyLimit.
  virtual HttpResponse TooLarge(const std::string& method, const std::string& path) = 0;
  virtual boost::asio::awaitable<HttpResponse> Handle(HttpRequest& request) = 0;
};

// Answers every request with 404 (a router's fallback on nodes without a public API).
class NotFoundHandler : public HttpHandler {
 public:
  size_t BodyLimit(const std::string&, const std::string&) override { return 0; }
  HttpResponse TooLarge(const std::string&, const std::string&) override { return Response(); }
  boost::asio::awaitable<HttpResponse> Handle(HttpRequest&) override { co_return Response(); }

 private:
  static HttpResponse Response() {
    HttpResponse r;
    r.status = 404;
    r.body = "{\"message\":\"not found\"}";
    return r;
  }
};

// Sends requests whose path starts with a registered prefix to that prefix's handler, the rest to
// the default one (a node serving the Lambda API and RPC routes on one listener).
class HttpRouter : public HttpHandler {
 public:
  explicit HttpRouter(HttpHandler& fallback) : fallback_(fallback) {}
  void Route(std::string prefix, HttpHandler& handler) { routes_.emplace_back(std::move(prefix), &handler); }
  size_t BodyLimit(const std::string& method, const std::string& path) override {
    return For(path).BodyLimit(method, path);
  }
  HttpResponse TooLarge(const std::string& method, const std::string& path) override {
    return For(path).TooLarge(method, path);
  }
  boost::asio::awaitable<HttpResponse> Handle(HttpRequest& request) override {
    HttpResponse r = co_await For(request.path).Handle(request);
    co_return r;
  }

 private:
  HttpHandler& For(const std::string& path) {
    for (auto& [prefix, handler] : routes_)
      if (path.rfind(prefix, 0) == 0) return *handler;
    return fallback_;
  }
  HttpHandler& fallback_;
  std::vector<std::pair<std::string, HttpHandler*>> routes_;
};

struct HttpLimits {
  size_t max_connections = 1024;      // open connections; more are closed on accept
  size_t max_header_bytes = 64 * 1024;  // request line + headers; over it: 431
  size_t max_header_count = 100;      // header fields; over it: 431
  std::chrono::milliseconds header_timeout{10000};  // first byte to end of header (slowloris)
  // The body must arrive within max(body_timeout_floor, size / body_min_bytes_per_second); a
  // chunked body is given the time of its route's body limit.
  std::chrono::milliseconds body_timeout_floor{10000};
  uint64_t body_min_bytes_per_second = 64 * 1024;
  std::chrono::milliseconds idle_timeout{60000};  // keep-alive connection with no request
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, HttpHandler& handler, HttpLimits limits = {})
      : io_(io), handler_(handler), limits_(limits) {}
  size_t connections() const { return connections_; }
  // Binds and starts accepting. Returns the bound port (useful with port 0).
  Result<int> Listen(const std::string& host, int port);
  void Stop();

 private:
  boost::asio::awaitable<void> AcceptLoop();
  boost::asio::awaitable<void> Serve(boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& io_;
  HttpHandler& handler_;
  HttpLimits limits_;
  size_t connections_ = 0;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
};

// Percent-decoding ('+' stays '+'); false on malformed escapes.
bool UrlDecode(std::string_view in, std::string* out);

}  // namespace kindling
