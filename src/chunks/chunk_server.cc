#include "chunks/chunk_server.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <boost/asio/thread_pool.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <map>
#include <mutex>
#include <unordered_set>

#include "chunks/chunk_store.h"
#include "chunks/manifest.h"
#include "common/files.h"
#include "store/sqlite.h"

namespace kindling::chunks {

namespace asio = boost::asio;
using asio::awaitable;
using json = nlohmann::json;

namespace {

constexpr size_t kMaxMissingDigests = 200000;
constexpr size_t kMaxMissingBody = 16u << 20;  // 200000 quoted digests are ~13.4 MB
constexpr size_t kMaxRecordingBytes = 4u << 20;
constexpr size_t kMaxOtherBody = 4096;
// Chunk GET latency histogram bounds, milliseconds.
constexpr std::array<double, 10> kLatencyBucketsMs = {0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000};

HttpResponse JsonError(int status, const std::string& message, const std::string& code = "") {
  HttpResponse r;
  r.status = status;
  json body = {{"message", message}};
  if (!code.empty()) {
    body["code"] = code;
    r.headers.emplace_back("X-Kindling-Error-Code", code);
  }
  r.body = body.dump();
  return r;
}

HttpResponse JsonOk(const json& body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

class ChunkServer::Impl : public HttpHandler {
 public:
  Impl(asio::io_context& io, ChunkServerOptions options)
      : io_(io), options_(std::move(options)), pool_(std::max(1, options_.io_threads)) {}

  ~Impl() override {
    Stop();
    pool_.join();
    if (http_ && http_->connections() > 0) {
      // Coroutines of open connections still point at the HTTP server; they are destroyed with the
      // io_context. Keep it allocated (and reachable, for leak checkers) rather than dangling.
      static auto* kept = new std::vector<std::unique_ptr<HttpServer>>;
      kept->push_back(std::move(http_));
    }
    if (db_) sqlite3_close(db_);
  }

  Result<int> Start() {
    if (options_.data_dir.empty()) return Status::Error("chunk server: no data directory");
    Status s = MakeDirs(options_.data_dir, 0700);
    if (!s.ok()) return s;
    ChunkStoreOptions store_options;
    store_options.compress = options_.compress;
    auto store = ChunkStore::Open(options_.data_dir + "/chunks", store_options);
    if (!store.ok()) return store.status();
    store_ = std::move(store).value();
    auto db = sqlite::OpenPrivate(options_.data_dir + "/images.db");
    if (!db.ok()) return db.status();
    db_ = *db;
    s = sqlite::Exec(db_,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS images(name TEXT PRIMARY KEY, id TEXT NOT NULL, size INTEGER NOT NULL,"
                     " chunks INTEGER NOT NULL, manifest BLOB NOT NULL, updated_ms INTEGER NOT NULL);"
                     "CREATE TABLE IF NOT EXISTS recordings(name TEXT PRIMARY KEY, body BLOB NOT NULL,"
                     " updated_ms INTEGER NOT NULL);");
    if (!s.ok()) return s;
    CountImages();
    http_ = std::make_unique<HttpServer>(io_, *this, options_.limits);
    return http_->Listen(options_.host, options_.port);
  }

  void Stop() {
    if (http_) http_->Stop();
  }
  size_t connections() const { return http_ ? http_->connections() : 0; }

  size_t BodyLimit(const std::string& method, const std::string& path) override {
    if (method == "PUT" && path.rfind("/v1/chunks/", 0) == 0) return kChunkSize;
    if (method == "POST" && path == "/v1/chunks/missing") return kMaxMissingBody;
    if (method == "PUT" && path.rfind("/v1/images/", 0) == 0) return kMaxManifestBytes;
    if (method == "PUT" && path.rfind("/v1/recordings/", 0) == 0) return kMaxRecordingBytes;
    return kMaxOtherBody;
  }

  HttpResponse TooLarge(const std::string& method, const std::string& path) override {
    requests_[{"too_large", 413}]++;
    return JsonError(413, "request body for " + method + " " + path + " is larger than " +
                              std::to_string(BodyLimit(method, path)) + " bytes");
  }

  awaitable<HttpResponse> Handle(HttpRequest& req) override {
    std::string route = "other";
    HttpResponse r = co_await Route(req, &route);
    requests_[{route, r.status}]++;
    co_return r;
  }

 private:
  template <typename F>
  auto OnPool(F f) {
    return RunOn(pool_.get_executor(), std::move(f));
  }

  awaitable<HttpResponse> Route(HttpRequest& req, std::string* route) {
    const std::string& p = req.path;
    const std::string& m = req.method;
    if (p.rfind("/v1/chunks/", 0) == 0) {
      std::string rest = p.substr(11);
      if (rest == "missing") {
        *route = "chunks_missing";
        if (m != "POST") co_return JsonError(405, "use POST");
        {
          HttpResponse r = co_await Missing(req.body);
          co_return r;
        }
      }
      auto d = Digest::FromHex(rest);
      if (m == "GET" || m == "HEAD") {
        *route = m == "GET" ? "chunk_get" : "chunk_head";
        if (!d) co_return JsonError(400, "not a chunk digest: " + rest.substr(0, 80));
        HttpResponse r;
        if (m == "GET")
          r = co_await GetChunk(*d);
        else
          r = co_await HeadChunk(*d);
        co_return r;
      }
      if (m == "PUT") {
        *route = "chunk_put";
        if (!d) co_return JsonError(400, "not a chunk digest: " + rest.substr(0, 80));
        {
          HttpResponse r = co_await PutChunk(*d, req.body);
          co_return r;
        }
      }
      co_return JsonError(405, "method " + m + " not allowed on chunks");
    }
    if (p == "/v1/images" || p == "/v1/images/") {
      *route = "image_list";
      if (m != "GET") co_return JsonError(405, "use GET");
      {
        HttpResponse r = co_await ListImages();
        co_return r;
      }
    }
    if (p.rfind("/v1/images/", 0) == 0) {
      std::string name = p.substr(11);
      if (m == "PUT") *route = "image_put";
      else if (m == "GET") *route = "image_get";
      else if (m == "DELETE") *route = "image_delete";
      else co_return JsonError(405, "method " + m + " not allowed on images");
      if (!IsValidImageName(name))
        co_return JsonError(400, "invalid image name (1..200 of [A-Za-z0-9._/+-], no \"..\")");
      if (m == "PUT") {
        HttpResponse r = co_await PutImage(name, std::move(req.body));
        co_return r;
      }
      if (m == "GET") {
        HttpResponse r = co_await GetImage(name);
        co_return r;
      }
      {
        HttpResponse r = co_await DeleteRow("images", name);
        co_return r;
      }
    }
    if (p.rfind("/v1/recordings/", 0) == 0) {
      std::string name = p.substr(15);
      if (m == "PUT") *route = "recording_put";
      else if (m == "GET") *route = "recording_get";
      else if (m == "DELETE") *route = "recording_delete";
      else co_return JsonError(405, "method " + m + " not allowed on recordings");
      if (!IsValidImageName(name))
        co_return JsonError(400, "invalid recording name (1..200 of [A-Za-z0-9._/+-], no \"..\")");
      if (m == "PUT") {
        HttpResponse r = co_await PutRecording(name, std::move(req.body));
        co_return r;
      }
      if (m == "GET") {
        HttpResponse r = co_await GetRecording(name);
        co_return r;
      }
      {
        HttpResponse r = co_await DeleteRow("recordings", name);
        co_return r;
      }
    }
    if (p == "/v1/gc") {
      *route = "gc";
      if (m != "POST") co_return JsonError(405, "use POST");
      {
        HttpResponse r = co_await Collect();
        co_return r;
      }
    }
    if (p == "/metrics") {
      *route = "metrics";
      if (m != "GET") co_return JsonError(405, "use GET");
      HttpResponse r;
      r.content_type = "text/plain; version=0.0.4";
      r.body = RenderMetrics();
      co_return r;
    }
    co_return JsonError(404, "no route for " + m + " " + p.substr(0, 200));
  }

  awaitable<HttpResponse> GetChunk(Digest d) {
    auto start = std::chrono::steady_clock::now();
    if (options_.simulated_latency.count() > 0) {
      asio::steady_timer timer(io_, options_.simulated_latency);
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    auto work = [this, d] { return store_->Get(d); };
    auto data = co_await OnPool(std::move(work));
    chunk_gets_++;
    if (!data.ok()) {
      if (data.status().IsNotFound()) {
        chunk_misses_++;
        co_return JsonError(404, "chunk " + d.Hex() + " not found", kChunkNotFound);
      }
      if (data.status().IsCorrupt()) {
        corrupt_discarded_++;
        co_return JsonError(500, data.status().message(), kChunkCorrupt);
      }
      co_return JsonError(500, data.status().message());
    }
    double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    for (size_t i = 0; i < kLatencyBucketsMs.size(); ++i)
      if (ms <= kLatencyBucketsMs[i]) latency_buckets_[i]++;
    latency_count_++;
    latency_sum_ms_ += ms;
    bytes_served_ += data->size();
    HttpResponse r;
    r.content_type = "application/octet-stream";
    r.body = std::move(data).value();
    co_return r;
  }

  awaitable<HttpResponse> HeadChunk(Digest d) {
    auto work = [this, d] { return store_->Has(d); };
    bool has = co_await OnPool(std::move(work));
    if (!has) co_return JsonError(404, "chunk " + d.Hex() + " not found", kChunkNotFound);
    HttpResponse r;
    r.content_type = "application/octet-stream";
    co_return r;
  }

  awaitable<HttpResponse> PutChunk(Digest d, std::string body) {
    auto work = [this, d, body = std::move(body)] { return store_->Put(d, body); };
    auto s = co_await OnPool(std::move(work));
    if (!s.ok()) {
      if (s.IsCorrupt() || s.err() == 0) co_return JsonError(400, s.message());
      co_return JsonError(500, s.message());
    }
    chunk_puts_++;
    co_return JsonOk({{"digest", d.Hex()}});
  }

  awaitable<HttpResponse> Missing(std::string body) {
    auto work = [this, body = std::move(body)]() -> HttpResponse {
      auto doc = json::parse(body, nullptr, false);
      if (!doc.is_object() || !doc.contains("digests") || !doc["digests"].is_array())
        return JsonError(400, "body must be {\"digests\":[\"<hex>\",...]}");
      const auto& list = doc["digests"];
      if (list.size() > kMaxMissingDigests)
        return JsonError(400, "at most " + std::to_string(kMaxMissingDigests) + " digests per request");
      json missing = json::array();
      for (const auto& h : list) {
        std::optional<Digest> d = h.is_string() ? Digest::FromHex(h.get<std::string>()) : std::nullopt;
        if (!d) return JsonError(400, "not a chunk digest in \"digests\"");
        // Touch doubles as the existence check, and keeps what an upload relies on from GC.
        if (store_->Touch(*d).IsNotFound()) missing.push_back(d->Hex());
      }
      return JsonOk({{"missing", std::move(missing)}});
    };
    {
      HttpResponse r = co_await OnPool(std::move(work));
      co_return r;
    }
  }

  awaitable<HttpResponse> PutImage(std::string name, std::string body) {
    auto work = [this, name, body = std::move(body)]() -> HttpResponse {
      auto m = Manifest::Parse(body);
      if (!m.ok()) return JsonError(400, m.status().message());
      std::string encoded = m->Encode();
      std::string id = Sha256Of(encoded).Hex();
      // Held from the check to the insert, so a GC cannot delete a chunk in between.
      std::lock_guard gc_lock(gc_mu_);
      std::unordered_set<Digest, DigestHash> checked;
      for (const ChunkRef& c : m->chunks) {
        if (!checked.insert(c.digest).second) continue;
        if (!store_->Has(c.digest)) {
          HttpResponse e = JsonError(409, "image " + name + " references chunk " + c.digest.Hex() +
                                              ", which is not stored (upload it first)");
          json body = json::parse(e.body);
          body["missing"] = c.digest.Hex();
          e.body = body.dump();
          return e;
        }
      }
      std::lock_guard lock(db_mu_);
      sqlite::Statement st(db_,
                           "INSERT INTO images(name, id, size, chunks, manifest, updated_ms) VALUES(?,?,?,?,?,?)"
                           " ON CONFLICT(name) DO UPDATE SET id=excluded.id, size=excluded.size,"
                           " chunks=excluded.chunks, manifest=excluded.manifest, updated_ms=excluded.updated_ms");
      if (!st.ok()) return JsonError(500, sqlite::Error(db_, "prepare").message());
      st.Bind(1, name);
      st.Bind(2, id);
      st.Bind(3, static_cast<int64_t>(m->size));
      st.Bind(4, static_cast<int64_t>(m->chunks.size()));
      st.BindBlob(5, encoded);
      st.Bind(6, NowMs());
      if (st.Step() != SQLITE_DONE) return JsonError(500, sqlite::Error(db_, "insert image").message());
      CountImagesLocked();
      return JsonOk({{"name", name}, {"id", id}});
    };
    auto r = co_await OnPool(std::move(work));
    co_return r;
  }

  awaitable<HttpResponse> GetImage(std::string name) {
    auto work = [this, name]() -> HttpResponse {
      std::lock_guard lock(db_mu_);
      sqlite::Statement st(db_, "SELECT manifest, id FROM images WHERE name = ?");
      if (!st.ok()) return JsonError(500, sqlite::Error(db_, "prepare").message());
      st.Bind(1, name);
      int rc = st.Step();
      if (rc == SQLITE_DONE) return JsonError(404, "image " + name + " not found", kChunkNotFound);
      if (rc != SQLITE_ROW) return JsonError(500, sqlite::Error(db_, "select image").message());
      HttpResponse r;
      r.body = st.Text(0);
      r.headers.emplace_back("X-Kindling-Image-Id", st.Text(1));
      return r;
    };
    {
      HttpResponse r = co_await OnPool(std::move(work));
      co_return r;
    }
  }

  awaitable<HttpResponse> ListImages() {
    auto work = [this]() -> HttpResponse {
      std::lock_guard lock(db_mu_);
      sqlite::Statement st(db_, "SELECT name, id, size, chunks FROM images ORDER BY name");
      if (!st.ok()) return JsonError(500, sqlite::Error(db_, "prepare").message());
      json images = json::array();
      int rc;
      while ((rc = st.Step()) == SQLITE_ROW)
        images.push_back({{"name", st.Text(0)}, {"id", st.Text(1)}, {"size", st.Int(2)}, {"chunks", st.Int(3)}});
      if (rc != SQLITE_DONE) return JsonError(500, sqlite::Error(db_, "list images").message());
      return JsonOk({{"images", std::move(images)}});
    };
    {
      HttpResponse r = co_await OnPool(std::move(work));
      co_return r;
    }
  }

  // table is "images" or "recordings" (never user input).
  awaitable<HttpResponse> DeleteRow(const char* table, std::string name) {
    auto work = [this, table, name]() -> HttpResponse {
      std::lock_guard lock(db_mu_);
      std::string sql = std::string("DELETE FROM ") + table + " WHERE name = ?";
      sqlite::Statement st(db_, sql.c_str());
      if (!st.ok()) return JsonError(500, sqlite::Error(db_, "prepare").message());
      st.Bind(1, name);
      if (st.Step() != SQLITE_DONE) return JsonError(500, sqlite::Error(db_, "delete").message());
      bool is_image = std::string(table) == "images";
      if (sqlite3_changes(db_) == 0)
        return JsonError(404, std::string(is_image ? "image " : "recording ") + name + " not found", kChunkNotFound);
      if (is_image) CountImagesLocked();
      return JsonOk({{"deleted", name}});
    };
    {
      HttpResponse r = co_await OnPool(std::move(work));
      co_return r;
    }
  }

  awaitable<HttpResponse> PutRecording(std::string name, std::string body) {
    auto work = [this, name, body = std::move(body)]() -> HttpResponse {
      if (!json::accept(body)) return JsonError(400, "a recording must be a JSON document");
      std::lock_guard lock(db_mu_);
      sqlite::Statement st(db_,
                           "INSERT INTO recordings(name, body, updated_ms) VALUES(?,?,?)"
                           " ON CONFLICT(name) DO UPDATE SET body=excluded.body, updated_ms=excluded.updated_ms");
      if (!st.ok()) return JsonError(500, sqlite::Error(db_, "prepare").message());
      st.Bind(1, name);
      st.BindBlob(2, body);
      st.Bind(3, NowMs());
      if (st.Step() != SQLITE_DONE) return JsonError(500, sqlite::Error(db_, "insert recording").message());
      return JsonOk({{"name", name}});
    };
    {
      HttpResponse r = co_await OnPool(std::move(work));
      co_return r;
    }
  }

  awaitable<HttpResponse> GetRecording(std::string name) {
    auto work = [this, name]() -> HttpResponse {
      std::lock_guard lock(db_mu_);
      sqlite::Statement st(db_, "SELECT body FROM recordings WHERE name = ?");
      if (!st.ok()) return JsonError(500, sqlite::Error(db_, "prepare").message());
      st.Bind(1, name);
      int rc = st.Step();
      if (rc == SQLITE_DONE) return JsonError(404, "recording " + name + " not found", kChunkNotFound);
      if (rc != SQLITE_ROW) return JsonError(500, sqlite::Error(db_, "select recording").message());
      HttpResponse r;
      r.body = st.Text(0);
      return r;
    };
    {
      HttpResponse r = co_await OnPool(std::move(work));
      co_return r;
    }
  }

  awaitable<HttpResponse> Collect() {
    auto work = [this]() -> HttpResponse {
      std::lock_guard gc_lock(gc_mu_);
      std::unordered_set<Digest, DigestHash> referenced;
      {
        std::lock_guard lock(db_mu_);
        sqlite::Statement st(db_, "SELECT name, manifest FROM images");
        if (!st.ok()) return JsonError(500, sqlite::Error(db_, "prepare").message());
        int rc;
        while ((rc = st.Step()) == SQLITE_ROW) {
          auto m = Manifest::Parse(st.Text(1));
          // Never delete on uncertainty: an unreadable manifest stops the collection.
          if (!m.ok()) return JsonError(500, "gc: stored manifest of " + st.Text(0) + " is unreadable: " + m.status().message());
          for (const ChunkRef& c : m->chunks) referenced.insert(c.digest);
        }
        if (rc != SQLITE_DONE) return JsonError(500, sqlite::Error(db_, "gc: list images").message());
      }
      uint64_t deleted = 0, freed = 0, kept = 0;
      const double grace = static_cast<double>(options_.gc_grace.count());
      for (const Digest& d : store_->List()) {
        if (referenced.count(d)) {
          kept++;
          continue;
        }
        auto age = store_->AgeSeconds(d);
        if (!age.ok() || *age < grace) {
          kept += age.ok();
          continue;
        }
        auto bytes = store_->FileBytes(d);
        if (store_->Remove(d).ok()) {
          deleted++;
          freed += bytes.ok() ? *bytes : 0;
        }
      }
      return JsonOk({{"deleted", deleted}, {"bytes_freed", freed}, {"kept", kept}});
    };
    {
      HttpResponse r = co_await OnPool(std::move(work));
      co_return r;
    }
  }

  void CountImages() {
    std::lock_guard lock(db_mu_);
    CountImagesLocked();
  }
  void CountImagesLocked() {
    sqlite::Statement st(db_, "SELECT count(*) FROM images");
    if (st.ok() && st.Step() == SQLITE_ROW) images_ = static_cast<uint64_t>(st.Int(0));
  }

  std::string RenderMetrics() {
    std::string out;
    char num[64];
    out += "# HELP kindling_chunkd_requests_total HTTP requests by route and status.\n"
           "# TYPE kindling_chunkd_requests_total counter\n";
    for (const auto& [key, n] : requests_)
      out += "kindling_chunkd_requests_total{route=\"" + key.first + "\",status=\"" + std::to_string(key.second) +
             "\"} " + std::to_string(n) + "\n";
    auto counter = [&](const char* name, const char* help, uint64_t v) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " counter\n" + name + " " +
             std::to_string(v) + "\n";
    };
    auto gauge = [&](const char* name, const char* help, uint64_t v) {
      out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " gauge\n" + name + " " +
             std::to_string(v) + "\n";
    };
    counter("kindling_chunkd_chunk_gets_total", "Chunk GET requests with a valid digest.", chunk_gets_);
    counter("kindling_chunkd_chunk_misses_total", "Chunk GETs answered 404.", chunk_misses_);
    counter("kindling_chunkd_chunk_corrupt_total", "Chunks found corrupt on disk (discarded, not served).",
            corrupt_discarded_);
    counter("kindling_chunkd_bytes_served_total", "Chunk bytes sent.", bytes_served_);
    counter("kindling_chunkd_chunk_puts_total", "Chunk PUTs accepted (new or already stored).", chunk_puts_);
    out += "# HELP kindling_chunkd_chunk_get_duration_ms Served chunk GETs, request to answer (simulated latency included).\n"
           "# TYPE kindling_chunkd_chunk_get_duration_ms histogram\n";
    for (size_t i = 0; i < kLatencyBucketsMs.size(); ++i) {
      snprintf(num, sizeof num, "%g", kLatencyBucketsMs[i]);
      out += std::string("kindling_chunkd_chunk_get_duration_ms_bucket{le=\"") + num + "\"} " +
             std::to_string(latency_buckets_[i]) + "\n";
    }
    out += "kindling_chunkd_chunk_get_duration_ms_bucket{le=\"+Inf\"} " + std::to_string(latency_count_) + "\n";
    snprintf(num, sizeof num, "%.3f", latency_sum_ms_);
    out += std::string("kindling_chunkd_chunk_get_duration_ms_sum ") + num + "\n";
    out += "kindling_chunkd_chunk_get_duration_ms_count " + std::to_string(latency_count_) + "\n";
    gauge("kindling_chunkd_stored_chunks", "Chunks in the store.", store_ ? store_->StoredChunks() : 0);
    gauge("kindling_chunkd_stored_bytes", "Bytes of chunk files in the store (compressed, headers included).",
          store_ ? store_->StoredBytes() : 0);
    gauge("kindling_chunkd_images", "Image manifests stored.", images_.load());
    return out;
  }

  asio::io_context& io_;
  const ChunkServerOptions options_;
  asio::thread_pool pool_;
  std::unique_ptr<ChunkStore> store_;
  sqlite3* db_ = nullptr;
  std::mutex db_mu_;  // the connection is used by one pool thread at a time
  std::mutex gc_mu_;  // image PUTs (check + insert) and collections exclude each other
  std::unique_ptr<HttpServer> http_;
  std::atomic<uint64_t> images_{0};
  // Updated and read on the io thread only.
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t chunk_gets_ = 0, chunk_misses_ = 0, corrupt_discarded_ = 0, bytes_served_ = 0, chunk_puts_ = 0;
  std::array<uint64_t, kLatencyBucketsMs.size()> latency_buckets_{};
  uint64_t latency_count_ = 0;
  double latency_sum_ms_ = 0;
};

ChunkServer::ChunkServer(asio::io_context& io, ChunkServerOptions options)
    : impl_(std::make_unique<Impl>(io, std::move(options))) {}
ChunkServer::~ChunkServer() = default;
Result<int> ChunkServer::Start() { return impl_->Start(); }
void ChunkServer::Stop() { impl_->Stop(); }
size_t ChunkServer::connections() const { return impl_->connections(); }

}  // namespace kindling::chunks
