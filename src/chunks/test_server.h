// Test helpers (chunks_test only): a real ChunkServer on a loopback port 0 with its own io thread,
// a temporary directory, and a raw HTTP request helper.
#pragma once

#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <future>
#include <random>
#include <string>
#include <thread>

#include "chunks/chunk_server.h"
#include "common/files.h"

namespace kindling::chunks::testing {

inline std::string TempDir(const char* what) {
  std::string tmpl = std::string("/tmp/kindling-") + what + "-XXXXXX";
  if (!mkdtemp(tmpl.data())) abort();
  return tmpl;
}

inline std::string RandomChunk(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class TestServer {
 public:
  explicit TestServer(ChunkServerOptions options = {}) {
    if (options.data_dir.empty()) options.data_dir = TempDir("chunkd");
    options.host = "127.0.0.1";
    options.port = 0;
    options_ = options;
    server_ = std::make_unique<ChunkServer>(io_, options);
    auto port = server_->Start();
    if (!port.ok()) {
      fprintf(stderr, "chunk server start: %s\n", port.status().message().c_str());
      abort();
    }
    port_ = *port;
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TestServer() {
    Stop();
    RemoveTree(options_.data_dir);
  }
  // Stops accepting, waits (at most 5 s) for open connections to end, stops the io thread. The
  // callers' clients must be gone (their keep-alive connections closed) for a prompt return.
  void Stop() {
    if (!thread_.joinable()) return;
    boost::asio::post(io_, [this] { server_->Stop(); });
    for (int i = 0; i < 500 && Connections() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    work_.reset();
    io_.stop();
    thread_.join();
    server_.reset();
  }
  size_t Connections() {
    std::promise<size_t> p;
    boost::asio::post(io_, [&] { p.set_value(server_->connections()); });
    return p.get_future().get();
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& data_dir() const { return options_.data_dir; }
  std::string ChunkPath(const Digest& d) const {
    return options_.data_dir + "/chunks/" + d.Hex().substr(0, 2) + "/" + d.Hex();
  }

 private:
  boost::asio::io_context io_;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_{io_.get_executor()};
  ChunkServerOptions options_;
  std::unique_ptr<ChunkServer> server_;
  int port_ = 0;
  std::thread thread_;
};

struct RawResponse {
  int status = 0;
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  std::map<std::string, std::string> headers;
};

// One request on a new connection (no retries, no verification): what the server really answers.
inline RawResponse Raw(int port, const std::string& method, const std::string& target, const std::string& body = "") {
  namespace http = boost::beast::http;
  boost::asio::io_context io;
  boost::asio::ip::tcp::socket socket(io);
  socket.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, "127.0.0.1");
  req.body() = body;
  req.keep_alive(false);
  req.prepare_payload();
  http::write(socket, req);
  boost::beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  if (method == "HEAD") parser.skip(true);
  boost::system::error_code ec;
  http::read(socket, buffer, parser, ec);
  RawResponse r;
  if (ec) return r;
  r.status = parser.get().result_int();
  r.body = parser.get().body();
  for (const auto& f : parser.get()) r.headers[std::string(f.name_string())] = std::string(f.value());
  return r;
}

// A port on which nothing listens (bound once, then released).
inline int UnusedPort() {
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  return a.local_endpoint().port();
}

}  // namespace kindling::chunks::testing
