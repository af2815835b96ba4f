#include "chunks/chunk_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <thread>
#include <unordered_set>

namespace kindling::chunks {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using json = nlohmann::json;

namespace {
// Largest response accepted (a manifest is at most kMaxManifestBytes; listings are smaller).
constexpr uint64_t kMaxResponseBytes = 64u << 20;
// Digests per POST /v1/chunks/missing (the server accepts 200k).
constexpr size_t kMissingBatch = 100000;
// A pooled connection idle this long is closed rather than reused: servers close idle keep-alive
// connections (kindling-chunkd after 60 s), and a pool of them would fail request after request.
constexpr std::chrono::seconds kMaxIdleReuse{20};
}  // namespace

// One keep-alive connection with its own io_context, driven synchronously (run() until the one
// pending operation completes) so that beast::tcp_stream's timeouts apply.
struct ChunkClient::Connection {
  asio::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  bool open = false;
  std::chrono::steady_clock::time_point idle_since;

  // Runs the io_context until the operation started by `start` completes.
  template <typename Start>
  boost::system::error_code Run(Start start) {
    boost::system::error_code result = asio::error::would_block;
    start([&result](boost::system::error_code ec, auto&&...) { result = ec; });
    io.restart();
    io.run();
    return result;
  }
};

ChunkClient::ChunkClient(ChunkClientOptions options) : options_(std::move(options)) {
  std::string_view u = options_.url;
  if (u.rfind("http://", 0) != 0) {
    url_error_ = Status::Error("chunk server URL must start with http://: " + options_.url);
    return;
  }
  u.remove_prefix(7);
  while (!u.empty() && u.back() == '/') u.remove_suffix(1);
  size_t colon = u.rfind(':');
  if (colon == std::string_view::npos || u.find('/') != std::string_view::npos) {
    url_error_ = Status::Error("chunk server URL must be http://HOST:PORT: " + options_.url);
    return;
  }
  host_ = std::string(u.substr(0, colon));
  port_ = std::string(u.substr(colon + 1));
  if (host_.size() >= 2 && host_.front() == '[' && host_.back() == ']') host_ = host_.substr(1, host_.size() - 2);
}

ChunkClient::~ChunkClient() = default;

std::unique_ptr<ChunkClient::Connection> ChunkClient::TakeIdle() {
  std::lock_guard lock(mu_);
  // idle_ is ordered by when connections were given back: drop the stale ones at the front.
  const auto now = std::chrono::steady_clock::now();
  size_t stale = 0;
  while (stale < idle_.size() && now - idle_[stale]->idle_since > kMaxIdleReuse) ++stale;
  idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(stale));
  if (idle_.empty()) return nullptr;
  auto c = std::move(idle_.back());
  idle_.pop_back();
  return c;
}

void ChunkClient::GiveBack(std::unique_ptr<Connection> c) {
  c->idle_since = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  if (idle_.size() < 64) idle_.push_back(std::move(c));
}

Status ChunkClient::Prefixed(const std::string& method, const std::string& target, StatusCode code,
                             const std::string& what) const {
  return Status::Make(code, "chunk server " + options_.url + ": " + method + " " + target + ": " + what);
}

Result<ChunkClient::Response> ChunkClient::Call(const std::string& method, const std::string& target,
                                                std::string_view body,
                                                const std::function<bool(const std::string&)>& verify) {
  if (!url_error_.ok()) return url_error_;
  std::string last_error = "no attempt made";
  StatusCode last_code = StatusCode::kUnavailable;
  int attempts = std::max(1, options_.attempts);
  auto backoff = options_.retry_backoff;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    if (attempt > 0) {
      std::this_thread::sleep_for(backoff);
      backoff *= 2;
    }
    // A pooled connection may have been closed by the server while idle: if it fails, try once
    // more on a new connection (not another pooled one) before counting the attempt.
    for (int fresh_retry = 0; fresh_retry < 2; ++fresh_retry) {
      std::unique_ptr<Connection> conn = fresh_retry == 0 ? TakeIdle() : nullptr;
      bool reused = conn != nullptr;
      if (!conn) conn = std::make_unique<Connection>();
      boost::system::error_code ec;
      if (!conn->open) {
        tcp::resolver resolver(conn->io);
        auto endpoints = resolver.resolve(host_, port_, ec);
        if (ec) {
          last_error = "resolve " + host_ + ": " + ec.message();
          break;
        }
        conn->stream.expires_after(options_.connect_timeout);
        ec = conn->Run([&](auto handler) { conn->stream.async_connect(endpoints, std::move(handler)); });
        if (ec) {
          last_error = ec == beast::error::timeout ? "connect timed out after " + std::to_string(options_.connect_timeout.count()) + " ms"
                                                   : "connect: " + ec.message();
          break;
        }
        conn->stream.socket().set_option(tcp::no_delay(true), ec);
        conn->open = true;
      }
      http::request<http::string_body> req{http::string_to_verb(method), target, 11};
      req.set(http::field::host, host_ + ":" + port_);
      req.set(http::field::user_agent, "kindling-chunk-client");
      req.keep_alive(true);
      if (!body.empty() || method == "PUT" || method == "POST") {
        req.body().assign(body);
        req.set(http::field::content_type, method == "PUT" && target.rfind("/v1/chunks/", 0) == 0
                                               ? "application/octet-stream" : "application/json");
      }
      req.prepare_payload();
      conn->stream.expires_after(options_.request_timeout);
      ec = conn->Run([&](auto handler) { http::async_write(conn->stream, req, std::move(handler)); });
      http::response_parser<http::string_body> parser;
      parser.body_limit(kMaxResponseBytes);
      if (!ec) ec = conn->Run([&](auto handler) { http::async_read(conn->stream, conn->buffer, parser, std::move(handler)); });
      if (ec) {
        last_error = ec == beast::error::timeout
                         ? "no answer within " + std::to_string(options_.request_timeout.count()) + " ms"
                         : ec.message();
        conn.reset();  // a failed exchange leaves the connection in an unknown state
        if (reused && ec != beast::error::timeout) continue;
        break;
      }
      auto& res = parser.get();
      Response r;
      r.status = res.result_int();
      r.body = std::move(res.body());
      r.image_id = std::string(res["X-Kindling-Image-Id"]);
      r.error_code = std::string(res["X-Kindling-Error-Code"]);
      if (res.keep_alive()) GiveBack(std::move(conn));
      if (r.status >= 500) {
        if (r.error_code == kChunkCorrupt) return ErrorOf(method, target, r);  // the server discarded it
        last_error = "HTTP " + std::to_string(r.status) + ": " + ErrorOf(method, target, r).message();
        last_code = StatusCode::kUnavailable;
        break;
      }
      if (r.status == 200 && verify && !verify(r.body)) {
        last_error = "the bytes received do not match the digest";
        last_code = StatusCode::kCorrupt;
        break;
      }
      return r;
    }
  }
  return Prefixed(method, target, last_code,
                  last_error + " (after " + std::to_string(attempts) + (attempts == 1 ? " attempt)" : " attempts)"));
}

Status ChunkClient::ErrorOf(const std::string& method, const std::string& target, const Response& r) const {
  std::string message;
  auto doc = json::parse(r.body, nullptr, false);
  if (doc.is_object() && doc.contains("message") && doc["message"].is_string())
    message = doc["message"].get<std::string>();
  else
    message = r.body.substr(0, 200);
  std::string what = "HTTP " + std::to_string(r.status) + (message.empty() ? "" : ": " + message);
  StatusCode code = StatusCode::kInvalidArgument;
  if (r.error_code == kChunkCorrupt) code = StatusCode::kCorrupt;
  else if (r.status == 404) code = StatusCode::kNotFound;
  else if (r.status >= 500) code = StatusCode::kUnavailable;
  return Prefixed(method, target, code, what);
}

Result<std::string> ChunkClient::Fetch(const Digest& digest) {
  std::string target = "/v1/chunks/" + digest.Hex();
  auto r = Call("GET", target, {}, [&](const std::string& body) { return Sha256Of(body) == digest; });
  if (!r.ok()) return r.status();
  if (r->status != 200) return ErrorOf("GET", target, *r);
  return std::move(r->body);
}

Status ChunkClient::Put(const Digest& digest, std::string_view data) {
  std::string target = "/v1/chunks/" + digest.Hex();
  auto r = Call("PUT", target, data);
  if (!r.ok()) return r.status();
  if (r->status / 100 != 2) return ErrorOf("PUT", target, *r);
  return Status::Ok();
}

Result<std::vector<Digest>> ChunkClient::Missing(const std::vector<Digest>& digests) {
  std::vector<Digest> unique;
  std::unordered_set<Digest, DigestHash> seen;
  for (const Digest& d : digests)
    if (seen.insert(d).second) unique.push_back(d);
  std::vector<Digest> missing;
  for (size_t begin = 0; begin < unique.size(); begin += kMissingBatch) {
    size_t end = std::min(unique.size(), begin + kMissingBatch);
    std::string body = R"({"digests":[)";
    for (size_t i = begin; i < end; ++i) {
      if (i > begin) body += ',';
      body += '"' + unique[i].Hex() + '"';
    }
    body += "]}";
    auto r = Call("POST", "/v1/chunks/missing", body);
    if (!r.ok()) return r.status();
    if (r->status != 200) return ErrorOf("POST", "/v1/chunks/missing", *r);
    auto doc = json::parse(r->body, nullptr, false);
    if (!doc.is_object() || !doc.contains("missing") || !doc["missing"].is_array())
      return Prefixed("POST", "/v1/chunks/missing", StatusCode::kUnavailable, "malformed answer");
    for (const auto& h : doc["missing"]) {
      std::optional<Digest> d = h.is_string() ? Digest::FromHex(h.get<std::string>()) : std::nullopt;
      if (!d) return Prefixed("POST", "/v1/chunks/missing", StatusCode::kUnavailable, "malformed digest in answer");
      missing.push_back(*d);
    }
  }
  return missing;
}

Status ChunkClient::Upload(const Manifest& m, const std::function<Result<std::string>(const ChunkRef&)>& read_chunk) {
  std::vector<Digest> all;
  all.reserve(m.chunks.size());
  for (const ChunkRef& c : m.chunks) all.push_back(c.digest);
  auto missing = Missing(all);
  if (!missing.ok()) return missing.status();
  std::unordered_set<Digest, DigestHash> wanted(missing->begin(), missing->end());
  for (const ChunkRef& c : m.chunks) {
    if (!wanted.erase(c.digest)) continue;  // present, or already sent
    auto data = read_chunk(c);
    if (!data.ok()) return data.status();
    if (data->size() != c.size || Sha256Of(*data) != c.digest)
      return Status::Corrupt("upload: the bytes read for chunk " + c.digest.Hex() + " do not match it");
    Status s = Put(c.digest, *data);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

namespace {
Status BadName(const std::string& name) {
  return Status::InvalidArgument("invalid image or recording name \"" + name +
                                                 "\" (1..200 of [A-Za-z0-9._/+-], no \"..\")");
}
}  // namespace

Result<Manifest> ChunkClient::GetImage(const std::string& name) {
  if (!IsValidImageName(name)) return BadName(name);
  std::string target = "/v1/images/" + name;
  auto r = Call("GET", target, {});
  if (!r.ok()) return r.status();
  if (r->status != 200) return ErrorOf("GET", target, *r);
  auto m = Manifest::Parse(r->body);
  if (!m.ok()) return Prefixed("GET", target, StatusCode::kCorrupt, m.status().message());
  if (!r->image_id.empty() && r->image_id != m->Id().Hex())
    return Prefixed("GET", target, StatusCode::kCorrupt, "manifest does not match its image id " + r->image_id);
  return m;
}

Status ChunkClient::PutImage(const std::string& name, const Manifest& m) {
  if (!IsValidImageName(name)) return BadName(name);
  std::string target = "/v1/images/" + name;
  auto r = Call("PUT", target, m.Encode());
  if (!r.ok()) return r.status();
  if (r->status / 100 != 2) return ErrorOf("PUT", target, *r);
  return Status::Ok();
}

Status ChunkClient::DeleteImage(const std::string& name) {
  if (!IsValidImageName(name)) return BadName(name);
  std::string target = "/v1/images/" + name;
  auto r = Call("DELETE", target, {});
  if (!r.ok()) return r.status();
  if (r->status / 100 != 2) return ErrorOf("DELETE", target, *r);
  return Status::Ok();
}

Result<std::vector<std::string>> ChunkClient::ListImages() {
  auto r = Call("GET", "/v1/images", {});
  if (!r.ok()) return r.status();
  if (r->status != 200) return ErrorOf("GET", "/v1/images", *r);
  auto doc = json::parse(r->body, nullptr, false);
  if (!doc.is_object() || !doc.contains("images") || !doc["images"].is_array())
    return Prefixed("GET", "/v1/images", StatusCode::kUnavailable, "malformed answer");
  std::vector<std::string> names;
  for (const auto& image : doc["images"])
    if (image.is_object() && image.contains("name") && image["name"].is_string())
      names.push_back(image["name"].get<std::string>());
  return names;
}

Result<std::string> ChunkClient::GetRecording(const std::string& name) {
  if (!IsValidImageName(name)) return BadName(name);
  std::string target = "/v1/recordings/" + name;
  auto r = Call("GET", target, {});
  if (!r.ok()) return r.status();
  if (r->status != 200) return ErrorOf("GET", target, *r);
  return std::move(r->body);
}

Status ChunkClient::PutRecording(const std::string& name, std::string_view doc) {
  if (!IsValidImageName(name)) return BadName(name);
  std::string target = "/v1/recordings/" + name;
  auto r = Call("PUT", target, doc);
  if (!r.ok()) return r.status();
  if (r->status / 100 != 2) return ErrorOf("PUT", target, *r);
  return Status::Ok();
}

Status ChunkClient::DeleteRecording(const std::string& name) {
  if (!IsValidImageName(name)) return BadName(name);
  std::string target = "/v1/recordings/" + name;
  auto r = Call("DELETE", target, {});
  if (!r.ok()) return r.status();
  if (r->status / 100 != 2) return ErrorOf("DELETE", target, *r);
  return Status::Ok();
}

Result<std::string> ChunkClient::Collect() {
  auto r = Call("POST", "/v1/gc", {});
  if (!r.ok()) return r.status();
  if (r->status != 200) return ErrorOf("POST", "/v1/gc", *r);
  return std::move(r->body);
}

Result<std::string> ChunkClient::Metrics() {
  auto r = Call("GET", "/metrics", {});
  if (!r.ok()) return r.status();
  if (r->status != 200) return ErrorOf("GET", "/metrics", *r);
  return std::move(r->body);
}

}  // namespace kindling::chunks
