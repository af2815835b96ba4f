#include "cluster/etcd_client.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "common/ids.h"

namespace kindling::cluster {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using json = nlohmann::json;

namespace {

std::string B64(const std::string& s) { return Base64Encode(s); }

// int64 fields arrive as decimal strings (absent when zero).
int64_t Int(const json& doc, const char* field) {
  auto it = doc.find(field);
  if (it == doc.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (!it->is_string()) return 0;
  const std::string& s = it->get_ref<const std::string&>();
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  return end && *end == '\0' ? v : 0;
}

bool DecodeKv(const json& j, EtcdKv* kv) {
  if (!j.is_object()) return false;
  std::string key = j.value("key", ""), value = j.value("value", "");
  if (!Base64Decode(key, &kv->key) || !Base64Decode(value, &kv->value)) return false;
  kv->create_revision = Int(j, "create_revision");
  kv->mod_revision = Int(j, "mod_revision");
  kv->version = Int(j, "version");
  kv->lease = Int(j, "lease");
  return true;
}

Result<EtcdRange> ParseRange(const std::string& body) {
  auto doc = json::parse(body, nullptr, false);
  if (!doc.is_object()) return Status::Error("etcd: malformed answer");
  EtcdRange out;
  out.revision = Int(doc["header"], "revision");
  out.more = doc.value("more", false);
  if (doc.contains("kvs") && doc["kvs"].is_array())
    for (const auto& j : doc["kvs"]) {
      EtcdKv kv;
      if (!DecodeKv(j, &kv)) return Status::Error("etcd: malformed key-value");
      out.kvs.push_back(std::move(kv));
    }
  return out;
}

Result<json> ParseObject(const std::string& body) {
  auto doc = json::parse(body, nullptr, false);
  if (!doc.is_object()) return Status::Error("etcd: malformed answer");
  return doc;
}

}  // namespace

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

EtcdClient::EtcdClient(asio::io_context& io, HttpClient& http, std::vector<std::string> endpoints,
                       std::chrono::milliseconds timeout)
    : io_(io), http_(http), endpoints_(std::move(endpoints)), timeout_(timeout) {}

awaitable<Result<std::string>> EtcdClient::Call(const std::string& path, std::string body, bool idempotent) {
  Status last = Status::Unavailable("etcd: no endpoints");
  // Rounds over the members until one answers or the deadline passes: a cluster that just lost
  // its raft leader answers "unavailable" for an election timeout or so.
  auto deadline = std::chrono::steady_clock::now() + 3 * timeout_;
  for (int round = 0; !endpoints_.empty(); ++round) {
    if (round > 0) {
      if (std::chrono::steady_clock::now() >= deadline) break;
      asio::steady_timer wait(io_, std::chrono::milliseconds(std::min(50 << round, 400)));
      boost::system::error_code ec;
      co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    for (size_t tried = 0; tried < endpoints_.size(); ++tried) {
      size_t i = (current_ + tried) % endpoints_.size();
      HttpClientRequest req;
      req.method = "POST";
      req.target = "/v3/" + path;
      req.body = body;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      auto r = co_await http_.Call(endpoints_[i], std::move(req), std::min(timeout_, left));
      if (!r.ok()) {
        Status s = r.status().WithContext("etcd");
        if (s.code() != StatusCode::kUnavailable && !idempotent) co_return s;  // may have been applied
        if (last.code() == StatusCode::kUnavailable || s.code() != StatusCode::kUnavailable) last = s;
        continue;
      }
      current_ = i;
      if (r->status == 200) co_return std::move(r->body);
      // The gateway's error: {"error": "...", "code": N, "message": "..."} (gRPC codes).
      auto doc = json::parse(r->body, nullptr, false);
      std::string message = doc.is_object() ? doc.value("message", doc.value("error", r->body)) : r->body;
      int code = doc.is_object() ? doc.value("code", 0) : 0;
      if (code == 5) co_return Status::NotFound("etcd: " + message);  // gRPC NOT_FOUND (e.g. an expired lease)
      // UNAVAILABLE (no leader, stopping), DEADLINE_EXCEEDED (a proposal timed out in an election):
      // another member, or the same one a moment later, may answer.
      if (code == 14 || code == 4 || r->status == 503) {
        last = Status::Unavailable("etcd " + endpoints_[i] + ": " + message);
        if (code == 4 && !idempotent) co_return Status::DeadlineExceeded(last.message());  // may have been applied
        continue;
      }
      co_return Status::Error("etcd " + path + ": HTTP " + std::to_string(r->status) + ": " + message);
    }
  }
  co_return last;
}

awaitable<Result<int64_t>> EtcdClient::Put(const std::string& key, const std::string& value, int64_t lease) {
  json req{{"key", B64(key)}, {"value", B64(value)}};
  if (lease) req["lease"] = std::to_string(lease);
  auto body = co_await Call("kv/put", req.dump(), true);
  if (!body.ok()) co_return body.status();
  auto doc = ParseObject(*body);
  if (!doc.ok()) co_return doc.status();
  co_return Int((*doc)["header"], "revision");
}

awaitable<Result<bool>> EtcdClient::Txn(std::string body) {
  auto r = co_await Call("kv/txn", std::move(body), false);
  if (!r.ok()) co_return r.status();
  auto doc = ParseObject(*r);
  if (!doc.ok()) co_return doc.status();
  co_return doc->value("succeeded", false);
}

awaitable<Result<bool>> EtcdClient::PutIfAbsent(const std::string& key, const std::string& value, int64_t lease) {
  auto r = co_await PutIfUnchanged(key, value, 0, lease);
  co_return r;
}

awaitable<Result<bool>> EtcdClient::PutIfUnchanged(const std::string& key, const std::string& value,
                                                   int64_t mod_revision, int64_t lease) {
  json put{{"key", B64(key)}, {"value", B64(value)}};
  if (lease) put["lease"] = std::to_string(lease);
  json compare = mod_revision == 0
                     ? json{{"key", B64(key)}, {"result", "EQUAL"}, {"target", "CREATE"}, {"create_revision", "0"}}
                     : json{{"key", B64(key)}, {"result", "EQUAL"}, {"target", "MOD"},
                            {"mod_revision", std::to_string(mod_revision)}};
  json txn{{"compare", json::array({compare})}, {"success", json::array({{{"request_put", put}}})}};
  auto r = co_await Txn(txn.dump());
  co_return r;
}

awaitable<Result<bool>> EtcdClient::DeleteIfUnchanged(const std::string& key, int64_t mod_revision) {
  json compare{{"key", B64(key)}, {"result", "EQUAL"}, {"target", "MOD"}, {"mod_revision", std::to_string(mod_revision)}};
  json txn{{"compare", json::array({compare})},
           {"success", json::array({{{"request_delete_range", {{"key", B64(key)}}}}})}};
  auto r = co_await Txn(txn.dump());
  co_return r;
}

awaitable<Result<bool>> EtcdClient::PutGuarded(const std::string& key, const std::string& value,
                                               const std::string& guard_key, int64_t guard_revision) {
  json compare{{"key", B64(guard_key)}, {"result", "EQUAL"}, {"target", "CREATE"},
               {"create_revision", std::to_string(guard_revision)}};
  json txn{{"compare", json::array({compare})},
           {"success", json::array({{{"request_put", {{"key", B64(key)}, {"value", B64(value)}}}}})}};
  auto r = co_await Txn(txn.dump());
  co_return r;
}

awaitable<Result<bool>> EtcdClient::DeleteGuarded(const std::string& key, const std::string& guard_key,
                                                  int64_t guard_revision) {
  json compare{{"key", B64(guard_key)}, {"result", "EQUAL"}, {"target", "CREATE"},
               {"create_revision", std::to_string(guard_revision)}};
  json txn{{"compare", json::array({compare})},
           {"success", json::array({{{"request_delete_range", {{"key", B64(key)}}}}})}};
  auto r = co_await Txn(txn.dump());
  co_return r;
}

awaitable<Result<EtcdRange>> EtcdClient::Get(const std::string& key) {
  std::string req = json{{"key", B64(key)}}.dump();
  auto body = co_await Call("kv/range", std::move(req), true);
  if (!body.ok()) co_return body.status();
  co_return ParseRange(*body);
}

awaitable<Result<EtcdRange>> EtcdClient::GetPrefix(const std::string& prefix, int64_t limit) {
  json req{{"key", B64(prefix)}, {"range_end", B64(PrefixEnd(prefix))}};
  if (limit > 0) req["limit"] = std::to_string(limit);
  auto body = co_await Call("kv/range", req.dump(), true);
  if (!body.ok()) co_return body.status();
  co_return ParseRange(*body);
}

awaitable<Result<int64_t>> EtcdClient::Delete(const std::string& key) {
  std::string req = json{{"key", B64(key)}}.dump();
  auto body = co_await Call("kv/deleterange", std::move(req), true);
  if (!body.ok()) co_return body.status();
  auto doc = ParseObject(*body);
  if (!doc.ok()) co_return doc.status();
  co_return Int(*doc, "deleted");
}

awaitable<Result<int64_t>> EtcdClient::DeletePrefix(const std::string& prefix) {
  std::string req = json{{"key", B64(prefix)}, {"range_end", B64(PrefixEnd(prefix))}}.dump();
  auto body = co_await Call("kv/deleterange", std::move(req), true);
  if (!body.ok()) co_return body.status();
  auto doc = ParseObject(*body);
  if (!doc.ok()) co_return doc.status();
  co_return Int(*doc, "deleted");
}

awaitable<Result<int64_t>> EtcdClient::LeaseGrant(std::chrono::seconds ttl) {
  std::string req = json{{"TTL", std::to_string(ttl.count())}}.dump();
  auto body = co_await Call("lease/grant", std::move(req), false);
  if (!body.ok()) co_return body.status();
  auto doc = ParseObject(*body);
  if (!doc.ok()) co_return doc.status();
  int64_t id = Int(*doc, "ID");
  if (id == 0) co_return Status::Error("etcd: lease grant without an ID: " + doc->value("error", ""));
  co_return id;
}

awaitable<Result<int64_t>> EtcdClient::LeaseKeepAlive(int64_t lease) {
  std::string req = json{{"ID", std::to_string(lease)}}.dump();
  auto body = co_await Call("lease/keepalive", std::move(req), true);
  if (!body.ok()) co_return body.status();
  auto doc = ParseObject(*body);
  if (!doc.ok()) co_return doc.status();
  const json& result = (*doc)["result"];
  if (!result.is_object()) co_return Status::Error("etcd: malformed keepalive answer");
  int64_t ttl = Int(result, "TTL");
  if (ttl <= 0) co_return Status::NotFound("etcd: lease " + std::to_string(lease) + " expired");
  co_return ttl;
}

awaitable<Status> EtcdClient::LeaseRevoke(int64_t lease) {
  std::string req = json{{"ID", std::to_string(lease)}}.dump();
  auto body = co_await Call("lease/revoke", std::move(req), true);
  co_return body.ok() ? Status::Ok() : body.status();
}

awaitable<Status> EtcdClient::Watch(std::string prefix, int64_t start_revision, WatchHandler on_events,
                                    std::shared_ptr<WatchCancel> cancel) {
  int64_t next = start_revision;
  int failures = 0;
  while (!cancel->cancelled()) {
    size_t i = current_ % endpoints_.size();
    auto peer = ParseHttpBase(endpoints_[i]);
    if (!peer.ok()) co_return peer.status();
    auto stream = std::make_shared<beast::tcp_stream>(io_);
    cancel->on_cancel_ = [weak = std::weak_ptr<beast::tcp_stream>(stream)] {
      if (auto s = weak.lock()) s->cancel();
    };
    bool progressed = false;
    Status failed = Status::Ok();
    do {
      boost::system::error_code ec;
      asio::ip::tcp::resolver resolver(io_);
      auto endpoints = co_await resolver.async_resolve(peer->first, peer->second,
                                                       asio::redirect_error(asio::use_awaitable, ec));
      if (ec) { failed = Status::Unavailable("resolve: " + ec.message()); break; }
      stream->expires_after(timeout_);
      co_await stream->async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) { failed = Status::Unavailable("connect: " + ec.message()); break; }
      json create{{"key", B64(prefix)}, {"range_end", B64(PrefixEnd(prefix))}, {"start_revision", std::to_string(next)}};
      http::request<http::string_body> req{http::verb::post, "/v3/watch", 11};
      req.set(http::field::host, peer->first + ":" + peer->second);
      req.set(http::field::content_type, "application/json");
      req.body() = json{{"create_request", create}}.dump();
      req.prepare_payload();
      co_await http::async_write(*stream, req, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) { failed = Status::Unavailable("write: " + ec.message()); break; }
      stream->expires_never();
      // The answer is a chunked stream of JSON messages, one per line.
      beast::flat_buffer buffer;
      http::response_parser<http::string_body> parser;
      parser.body_limit(std::numeric_limits<uint64_t>::max());
      std::string pending;
      // Beast keeps a reference to the callback: it lives as long as the parser.
      auto on_chunk = [&pending](uint64_t, beast::string_view body, boost::system::error_code&) {
        pending.append(body.data(), body.size());
        return body.size();
      };
      parser.on_chunk_body(on_chunk);
      for (;;) {
        co_await http::async_read_some(*stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
        if (ec || cancel->cancelled()) break;
        size_t nl;
        while ((nl = pending.find('\n')) != std::string::npos) {
          auto doc = json::parse(pending.substr(0, nl), nullptr, false);
          pending.erase(0, nl + 1);
          if (!doc.is_object()) continue;
          const json& result = doc.contains("result") ? doc["result"] : doc;
          if (!result.is_object()) continue;
          if (Int(result, "compact_revision") > 0)
            co_return Status::Conflict("etcd watch: revision " + std::to_string(next) + " was compacted");
          if (result.value("canceled", false)) {
            ec = asio::error::connection_aborted;
            break;
          }
          int64_t revision = Int(result["header"], "revision");
          std::vector<EtcdEvent> events;
          for (const auto& e : result.value("events", json::array())) {
            EtcdEvent ev;
            ev.type = e.value("type", "PUT") == "DELETE" ? EtcdEvent::Type::kDelete : EtcdEvent::Type::kPut;
            if (!DecodeKv(e["kv"], &ev.kv)) continue;
            revision = std::max(revision, ev.kv.mod_revision);
            events.push_back(std::move(ev));
          }
          if (!events.empty()) {
            next = events.back().kv.mod_revision + 1;
            progressed = true;
            on_events(events, revision);
            if (cancel->cancelled()) break;
          } else if (result.value("created", false)) {
            progressed = true;
            on_events({}, revision);  // the watch is in place: the caller is current as of revision
          }
        }
        if (ec || cancel->cancelled()) break;
        if (parser.is_done()) break;
      }
      failed = Status::Unavailable("watch stream ended: " + (ec ? ec.message() : std::string("end of stream")));
    } while (false);
    if (cancel->cancelled()) break;
    // Another member next time; back off when none answers.
    current_ = (i + 1) % endpoints_.size();
    failures = progressed ? 0 : failures + 1;
    asio::steady_timer wait(io_, std::chrono::milliseconds(std::min(1000, 50 << std::min(failures, 5))));
    boost::system::error_code ignored;
    co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
  }
  cancel->on_cancel_ = nullptr;
  co_return Status::Ok();
}

}  // namespace kindling::cluster
