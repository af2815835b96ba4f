// Minimal blocking HTTP/1.1 client connection used by kindling-loadgen.
//
// Contract: one HttpConn is used by one thread at a time. It speaks HTTP/1.1 with keep-alive over a
// TCP socket with TCP_NODELAY, understands Content-Length and chunked response bodies, and
// reconnects transparently when the server closed the connection (Connection: close, EOF).
// It never asserts on server input: malformed responses become an error string.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace kindling::bench {

struct Url {
  std::string host;  // numeric IPv4 only (the benchmark stays on loopback)
  uint16_t port = 80;
  std::string path = "/";
};

// Parses "http://A.B.C.D:PORT/path". Returns false (and sets *err) on anything else.
bool ParseUrl(std::string_view text, Url* out, std::string* err);

struct Response {
  int status = 0;
  std::string headers;  // raw header block (without the status line), lower-cased names not
                        // guaranteed; use FindHeader
  std::string body;
  bool close = false;  // server asked to close the connection
};

// Case-insensitive lookup of a header in a raw header block; empty when absent.
std::string FindHeader(std::string_view headers, std::string_view name);

// Incremental parser for one response in `buf`. Returns >0 (bytes consumed) when a full response
// was parsed into *out, 0 when more bytes are needed, -1 on a malformed response (*err set).
// `head_request` suppresses the body.
long ParseResponse(std::string_view buf, bool head_request, Response* out, std::string* err);

class HttpConn {
 public:
  HttpConn() = default;
  ~HttpConn();
  HttpConn(const HttpConn&) = delete;
  HttpConn& operator=(const HttpConn&) = delete;

  // timeout_ms bounds every connect/send/recv (SO_SNDTIMEO/SO_RCVTIMEO).
  bool Connect(const Url& url, int timeout_ms, std::string* err);
  // Sends a pre-serialized request and reads one response. Reconnects once if the kept-alive
  // connection turned out to be closed before any response byte arrived.
  bool RoundTrip(std::string_view request, bool head_request, Response* out, std::string* err);
  // Unblocks a thread stuck in RoundTrip (used by the watchdog); safe from another thread.
  void Shutdown();
  void Close();
  bool connected() const { return fd_ >= 0; }

 private:
  bool SendAll(std::string_view data, std::string* err);
  int fd_ = -1;
  Url url_;
  int timeout_ms_ = 30000;
  std::string buf_;
};

// Serializes a request with Host, Content-Length and the given extra header lines (each
// "Name: value", no CRLF).
std::string BuildRequest(std::string_view method, const Url& url, std::string_view body,
                         const std::string* extra_headers, size_t n_extra);

}  // namespace kindling::bench
