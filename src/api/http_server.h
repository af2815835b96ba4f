// HttpServer: HTTP/1.1 (keep-alive) on a TCP listener, one coroutine per connection, requests
// handed to a Handler. Bodies are read only after the handler's body limit for that request line
// is known; a request over it gets the handler's 413 and the connection is closed.
//
// Thread safety: runs on one io_context thread.
#pragma once

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

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // Largest body accepted for this method and path.
  virtual size_t BodyLimit(const std::string& method, const std::string& path) = 0;
  // The response for a request whose body exceeded BodyLimit.
  virtual HttpResponse TooLarge(const std::string& method, const std::string& path) = 0;
  virtual boost::asio::awaitable<HttpResponse> Handle(HttpRequest& request) = 0;
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, HttpHandler& handler) : io_(io), handler_(handler) {}
  // Binds and starts accepting. Returns the bound port (useful with port 0).
  Result<int> Listen(const std::string& host, int port);
  void Stop();

 private:
  boost::asio::awaitable<void> AcceptLoop();
  boost::asio::awaitable<void> Serve(boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& io_;
  HttpHandler& handler_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
};

// Percent-decoding ('+' stays '+'); false on malformed escapes.
bool UrlDecode(std::string_view in, std::string* out);

}  // namespace kindling
