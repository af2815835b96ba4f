// HttpClient: HTTP/1.1 requests from coroutines on an io_context, over keep-alive connections
// pooled per peer ("http://HOST:PORT"). The transport of the cluster's RPC between roles and of the
// etcd client.
//
// Every call has a deadline (connect, write and read together). Failures are Status codes that say
// whether the request can have reached the peer:
//   Unavailable       nothing was sent (no connection could be made): safe to retry anywhere;
//   DeadlineExceeded  the deadline passed after the request was (maybe) sent;
//   Unknown           the connection broke after the request was sent, or the answer is malformed.
// A pooled connection that the peer had closed while idle is replaced once, without counting as a
// try: the peer never read the request. Callers retry only idempotent calls.
//
// Thread safety: one io_context thread; the pool is not shared across threads.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/asio.h"
#include "common/status.h"

namespace kindling {

struct HttpClientOptions {
  std::chrono::milliseconds connect_timeout{1000};
  size_t max_idle_per_peer = 32;
  // A connection idle this long is closed rather than reused (servers close idle keep-alives).
  std::chrono::milliseconds max_idle_reuse{20000};
  uint64_t max_response_bytes = 16u << 20;
};

struct HttpClientRequest {
  std::string method = "GET";
  std::string target = "/";  // path + query, already encoded
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string content_type = "application/json";
};

struct HttpClientResponse {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;
  const std::string& Header(const std::string& lower_name) const;  // "" when absent
};

// "http://HOST:PORT" (a trailing "/" allowed) -> {host, port}; InvalidArgument otherwise.
Result<std::pair<std::string, std::string>> ParseHttpBase(const std::string& base);

class HttpClient {
 public:
  explicit HttpClient(boost::asio::io_context& io, HttpClientOptions options = {});
  ~HttpClient();

  // Sends one request to `base` and reads the answer, within `timeout`.
  boost::asio::awaitable<Result<HttpClientResponse>> Call(const std::string& base, HttpClientRequest request,
                                                          std::chrono::milliseconds timeout);
  // Closes every pooled connection.
  void CloseIdle();

 private:
  struct Connection;
  std::unique_ptr<Connection> TakeIdle(const std::string& base);
  void GiveBack(const std::string& base, std::unique_ptr<Connection> c);

  boost::asio::io_context& io_;
  HttpClientOptions options_;
  std::map<std::string, std::vector<std::unique_ptr<Connection>>> idle_;
};

}  // namespace kindling
