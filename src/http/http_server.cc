#include "http/http_server.h"

#include "common/asio.h"
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>
#include <vector>

namespace kindling {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using asio::ip::tcp;

const std::string& HttpRequest::Header(const std::string& lower_name) const {
  static const std::string kEmpty;
  for (const auto& [k, v] : headers)
    if (k == lower_name) return v;
  return kEmpty;
}

const std::string& HttpRequest::Query(const std::string& name) const {
  static const std::string kEmpty;
  for (const auto& [k, v] : query)
    if (k == name) return v;
  return kEmpty;
}

bool UrlDecode(std::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size() || !isxdigit(static_cast<unsigned char>(in[i + 1])) ||
        !isxdigit(static_cast<unsigned char>(in[i + 2])))
      return false;
    out->push_back(static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
    i += 2;
  }
  return true;
}

Result<int> HttpServer::Listen(const std::string& host, int port) {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  if (ec) return Status::Error("invalid listen address " + host);
  tcp::endpoint endpoint(address, static_cast<unsigned short>(port));
  acceptor_ = std::make_unique<tcp::acceptor>(io_);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::Error("listen on " + host + ":" + std::to_string(port) + ": " + ec.message());
  int bound = acceptor_->local_endpoint().port();
  asio::co_spawn(io_, AcceptLoop(), asio::detached);
  return bound;
}

void HttpServer::Stop() {
  boost::system::error_code ec;
  if (acceptor_) acceptor_->close(ec);
}

awaitable<void> HttpServer::AcceptLoop() {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await acceptor_->async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) co_return;
      continue;  // e.g. EMFILE: keep serving the connections we have
    }
    if (connections_ >= limits_.max_connections) {
      socket.close(ec);  // over the cap: refuse at once rather than queue
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(io_, Serve(std::move(socket)), asio::detached);
  }
}

namespace {

void ParseTarget(HttpRequest& req) {
  std::string_view target = req.target;
  size_t q = target.find('?');
  if (!UrlDecode(target.substr(0, q), &req.path)) req.path.clear();
  if (q == std::string_view::npos) return;
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    size_t eq = pair.find('=');
    std::string k, v;
    UrlDecode(pair.substr(0, eq), &k);
    if (eq != std::string_view::npos) UrlDecode(pair.substr(eq + 1), &v);
    if (!k.empty()) req.query.emplace_back(std::move(k), std::move(v));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
}

// Closes (cancels) the socket's pending operations when its deadline passes; set_expired tells
// the reader why its read failed.
class Deadline {
 public:
  Deadline(asio::io_context& io, tcp::socket& socket) : timer_(io), socket_(socket) {}
  ~Deadline() { Disarm(); }
  void Arm(std::chrono::steady_clock::duration d) {
    state_ = std::make_shared<State>();
    timer_.expires_after(d);
    timer_.async_wait([state = state_, &socket = socket_](boost::system::error_code e) {
      // Cancelled, or disarmed after expiring with this handler already queued: touch nothing
      // (the connection's frame may be gone, or a later operation may be pending).
      if (e || !state->armed) return;
      state->expired = true;
      boost::system::error_code ignored;
      socket.cancel(ignored);
    });
  }
  void Disarm() {
    if (state_) state_->armed = false;
    timer_.cancel();
  }
  bool expired() const { return state_ && state_->expired; }

 private:
  struct State {
    bool armed = true;
    bool expired = false;
  };
  asio::steady_timer timer_;
  tcp::socket& socket_;
  std::shared_ptr<State> state_;
};

HttpResponse HeaderError(int status, const std::string& message) {
  HttpResponse r;
  r.status = status;
  r.body = R"({"Type":"User","message":")" + message + R"("})";
  return r;
}

}  // namespace

bool IsLoopbackHost(std::string host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host == "localhost") return true;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host, ec);
  return !ec && address.is_loopback();
}

Result<std::pair<std::string, int>> ParseHostPort(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return Status::InvalidArgument("expected HOST:PORT, got \"" + text + "\"");
  std::string host = text.substr(0, colon), port = text.substr(colon + 1);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return Status::InvalidArgument("malformed IPv6 host in \"" + text + "\"");
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return Status::InvalidArgument("IPv6 hosts go in brackets: \"" + text + "\"");
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoi(port) > 65535)
    return Status::InvalidArgument("expected a port 0-65535 in \"" + text + "\"");
  return std::make_pair(host, std::stoi(port));
}

awaitable<void> HttpServer::Serve(tcp::socket socket) {
  ++connections_;
  struct Count {
    size_t& n;
    ~Count() { --n; }
  } count{connections_};
  Deadline deadline(io_, socket);
  bool first = true;
  beast::flat_buffer buffer;
  buffer.reserve(64 * 1024);  // Beast reads at most the buffer's free capacity per call
  for (;;) {
    boost::system::error_code ec;
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits_.max_header_bytes));
    // The body limit depends on the route, known only after the header: checked below.
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    if (!first && buffer.size() == 0) {
      // Keep-alive: wait for the next request's first byte at most the idle timeout.
      deadline.Arm(limits_.idle_timeout);
      co_await socket.async_wait(tcp::socket::wait_read, asio::redirect_error(asio::use_awaitable, ec));
      deadline.Disarm();
      if (ec) break;
    }
    first = false;
    deadline.Arm(limits_.header_timeout);
    co_await http::async_read_header(socket, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    deadline.Disarm();
    if (ec) {
      // Answer what the parser rejected; a timeout or a closed connection just ends.
      HttpResponse bad;
      if (ec == http::error::header_limit)
        bad = HeaderError(431, "Request header is larger than " + std::to_string(limits_.max_header_bytes) + " bytes");
      else if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
               ec != http::error::end_of_stream &&
               ec != http::error::partial_message && !deadline.expired())
        bad = HeaderError(400, "Malformed HTTP request header");
      else
        break;
      http::response<http::string_body> out{static_cast<http::status>(bad.status), 11};
      out.set(http::field::server, "Kindling");
      out.set(http::field::content_type, bad.content_type);
      out.body() = std::move(bad.body);
      out.keep_alive(false);
      out.prepare_payload();
      co_await http::async_write(socket, out, asio::redirect_error(asio::use_awaitable, ec));
      break;
    }
    HttpRequest req;
    auto& header = parser.get();
    req.method = std::string(header.method_string());
    req.target = std::string(header.target());
    ParseTarget(req);
    size_t limit = handler_.BodyLimit(req.method, req.path);
    bool keep_alive = header.keep_alive();
    HttpResponse resp;
    if (static_cast<size_t>(std::distance(header.begin(), header.end())) > limits_.max_header_count) {
      resp = HeaderError(431, "Too many request header fields (at most " +
                                  std::to_string(limits_.max_header_count) + ")");
      keep_alive = false;
    } else if (parser.content_length() && *parser.content_length() > limit) {
      resp = handler_.TooLarge(req.method, req.path);
      keep_alive = false;
    } else {
      parser.body_limit(limit);
      if (!parser.is_done() && beast::iequals(header[http::field::expect], "100-continue")) {
        http::response<http::empty_body> go_on{http::status::continue_, 11};
        co_await http::async_write(socket, go_on, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) break;
      }
      if (!parser.is_done()) {
        uint64_t size = parser.content_length() ? *parser.content_length() : limit;
        auto budget = std::chrono::milliseconds(
            size / std::max<uint64_t>(1, limits_.body_min_bytes_per_second) * 1000);
        deadline.Arm(std::max(budget, limits_.body_timeout_floor));
        co_await http::async_read(socket, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
        deadline.Disarm();
      }
      if (ec == http::error::body_limit) {
        resp = handler_.TooLarge(req.method, req.path);
        keep_alive = false;
      } else if (ec) {
        break;
      } else {
        auto& msg = parser.get();
        for (const auto& field : msg) {
          std::string name(field.name_string());
          for (char& c : name) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
          req.headers.emplace_back(std::move(name), std::string(field.value()));
        }
        req.body = std::move(msg.body());
        resp = co_await handler_.Handle(req);
      }
    }
    http::response<http::string_body> out{static_cast<http::status>(resp.status), 11};
    out.set(http::field::server, "Kindling");
    if (!resp.content_type.empty()) out.set(http::field::content_type, resp.content_type);
    for (auto& [k, v] : resp.headers) out.set(k, v);
    out.body() = std::move(resp.body);
    out.keep_alive(keep_alive);
    out.prepare_payload();
    co_await http::async_write(socket, out, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep_alive) break;
  }
  // Lingering close: stop sending, then discard what the client still sends (e.g. the rest of an
  // oversized body) for a bounded time, so it reads our answer instead of a connection reset.
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  asio::steady_timer linger(io_, std::chrono::seconds(2));
  linger.async_wait([&socket](boost::system::error_code e) {
    if (!e) socket.close();
  });
  std::vector<char> sink(64 * 1024);
  for (size_t drained = 0; drained < (256u << 20);) {
    size_t n = co_await socket.async_read_some(asio::buffer(sink), asio::redirect_error(asio::use_awaitable, ignored));
    if (ignored) break;
    drained += n;
  }
  linger.cancel();
  socket.close(ignored);
}

}  // namespace kindling
