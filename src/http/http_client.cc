#include "http/http_client.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cctype>

namespace kindling {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using asio::ip::tcp;

struct HttpClient::Connection {
  explicit Connection(asio::io_context& io) : stream(io) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;
};

const std::string& HttpClientResponse::Header(const std::string& lower_name) const {
  static const std::string kEmpty;
  for (const auto& [k, v] : headers)
    if (k == lower_name) return v;
  return kEmpty;
}

Result<std::pair<std::string, std::string>> ParseHttpBase(const std::string& base) {
  std::string_view u = base;
  if (u.rfind("http://", 0) != 0) return Status::InvalidArgument("URL must start with http://: " + base);
  u.remove_prefix(7);
  while (!u.empty() && u.back() == '/') u.remove_suffix(1);
  size_t colon = u.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == u.size() || u.find('/') != std::string_view::npos)
    return Status::InvalidArgument("URL must be http://HOST:PORT: " + base);
  std::string host(u.substr(0, colon)), port(u.substr(colon + 1));
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) > 65535)
    return Status::InvalidArgument("bad port in URL: " + base);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return std::make_pair(host, port);
}

HttpClient::HttpClient(asio::io_context& io, HttpClientOptions options) : io_(io), options_(options) {}
HttpClient::~HttpClient() = default;

void HttpClient::CloseIdle() { idle_.clear(); }

std::unique_ptr<HttpClient::Connection> HttpClient::TakeIdle(const std::string& base) {
  auto it = idle_.find(base);
  if (it == idle_.end()) return nullptr;
  auto& pool = it->second;
  auto now = std::chrono::steady_clock::now();
  // Ordered by when they were given back: the stale ones are at the front.
  auto fresh = std::find_if(pool.begin(), pool.end(),
                            [&](const auto& c) { return now - c->idle_since <= options_.max_idle_reuse; });
  pool.erase(pool.begin(), fresh);
  if (pool.empty()) return nullptr;
  auto c = std::move(pool.back());
  pool.pop_back();
  return c;
}

void HttpClient::GiveBack(const std::string& base, std::unique_ptr<Connection> c) {
  c->idle_since = std::chrono::steady_clock::now();
  auto& pool = idle_[base];
  if (pool.size() < options_.max_idle_per_peer) pool.push_back(std::move(c));
}

awaitable<Result<HttpClientResponse>> HttpClient::Call(const std::string& base, HttpClientRequest request,
                                                       std::chrono::milliseconds timeout) {
  auto peer = ParseHttpBase(base);
  if (!peer.ok()) co_return peer.status();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto what = [&](const std::string& s) { return request.method + " " + base + request.target + ": " + s; };

  http::request<http::string_body> req{http::string_to_verb(request.method), request.target, 11};
  req.set(http::field::host, peer->first + ":" + peer->second);
  req.keep_alive(true);
  for (const auto& [k, v] : request.headers) req.set(k, v);
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
    req.set(http::field::content_type, request.content_type);
    req.body() = std::move(request.body);
  }
  req.prepare_payload();

  // A pooled connection the peer closed while it sat idle fails at once (write error, or EOF before
  // any byte of an answer): then once more on a new connection.
  for (int fresh = 0; fresh < 2; ++fresh) {
    std::unique_ptr<Connection> conn = fresh == 0 ? TakeIdle(base) : nullptr;
    bool reused = conn != nullptr;
    boost::system::error_code ec;
    if (!conn) {
      conn = std::make_unique<Connection>(io_);
      tcp::resolver resolver(io_);
      conn->stream.expires_at(std::min(deadline, std::chrono::steady_clock::now() + options_.connect_timeout));
      auto endpoints = co_await resolver.async_resolve(peer->first, peer->second,
                                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return Status::Unavailable(what("resolve: " + ec.message()));
      co_await conn->stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
      if (ec)
        co_return Status::Unavailable(what(ec == beast::error::timeout ? "connect timed out" : "connect: " + ec.message()));
      conn->stream.socket().set_option(tcp::no_delay(true), ec);
    }
    conn->stream.expires_at(deadline);
    co_await http::async_write(conn->stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout) co_return Status::DeadlineExceeded(what("timed out sending"));
    if (ec && reused) continue;
    if (ec) co_return Status::Make(StatusCode::kUnknown, what("write: " + ec.message()));

    http::response_parser<http::string_body> parser;
    parser.body_limit(options_.max_response_bytes);
    co_await http::async_read(conn->stream, conn->buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout) co_return Status::DeadlineExceeded(what("no answer in time"));
    if (ec && reused && (ec == http::error::end_of_stream || ec == asio::error::eof ||
                         ec == asio::error::connection_reset) && !parser.got_some())
      continue;
    if (ec) co_return Status::Make(StatusCode::kUnknown, what("read: " + ec.message()));

    auto& res = parser.get();
    HttpClientResponse out;
    out.status = static_cast<int>(res.result_int());
    for (const auto& field : res) {
      std::string name(field.name_string());
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      out.headers.emplace_back(std::move(name), std::string(field.value()));
    }
    out.body = std::move(res.body());
    if (res.keep_alive()) {
      conn->stream.expires_never();
      GiveBack(base, std::move(conn));
    }
    co_return out;
  }
  co_return Status::Make(StatusCode::kUnknown, what("the connection broke twice"));
}

}  // namespace kindling
