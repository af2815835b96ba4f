// ChunkClient: the blocking HTTP/1.1 client of kindling-chunkd (src/chunks/chunk_server.h), used
// by workers (fetching chunks, reading manifests and recordings) and by image builders
// (uploading). ChunkSource is what a ChunkCache fetches misses from.
//
// Connections are kept alive and pooled: a call takes an idle connection (or opens one) and
// returns it afterwards, so concurrent calls each use their own connection.
//
// Failures: every request is tried at most options.attempts times. Retried: a connection that
// cannot be opened, a timeout (connect_timeout to connect, request_timeout for the whole exchange),
// a broken connection, a 5xx answer, and (Fetch) bytes that do not match the digest. Between tries
// the client sleeps retry_backoff, doubling each time. A pooled connection the server had closed
// is replaced once without counting as a try. Errors read "chunk server <url>: <method> <path>:
// <what>" with code kUnavailable (retries exhausted), kCorrupt (the server found its copy
// corrupt, or every try returned wrong bytes), kNotFound (404) or kInvalidArgument (400/409/413:
// the request itself is wrong; never retried).
//
// Thread safety: every method may be called from any thread concurrently.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "chunks/chunk_store.h"
#include "chunks/digest.h"
#include "chunks/manifest.h"
#include "common/status.h"

namespace kindling::chunks {

struct ChunkClientOptions {
  std::string url = "http://127.0.0.1:9300";  // http://HOST:PORT (no path, no TLS)
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds request_timeout{10000};
  int attempts = 3;
  std::chrono::milliseconds retry_backoff{50};
};

// Where a cache gets chunks it lacks.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  // The chunk's bytes, verified against the digest.
  virtual Result<std::string> Fetch(const Digest& digest) = 0;
};

class ChunkClient : public ChunkSource, public ChunkSink {
 public:
  explicit ChunkClient(ChunkClientOptions options);
  ~ChunkClient() override;
  ChunkClient(const ChunkClient&) = delete;
  ChunkClient& operator=(const ChunkClient&) = delete;

  // GET /v1/chunks/<hex>, verified.
  Result<std::string> Fetch(const Digest& digest) override;
  // PUT /v1/chunks/<hex>; the server verifies the digest.
  Status Put(const Digest& digest, std::string_view data) override;
  // The digests (of those given; duplicates allowed) the server lacks, each once, in first-seen
  // order. Asking also restarts the grace period of those it has, so garbage collection keeps
  // them until the image that needs them is put.
  Result<std::vector<Digest>> Missing(const std::vector<Digest>& digests);
  // Puts the chunks of m the server lacks, reading each with read_chunk (its bytes are verified
  // before sending). Does not put the manifest (PutImage does).
  Status Upload(const Manifest& m, const std::function<Result<std::string>(const ChunkRef&)>& read_chunk);

  // Image manifests by name (IsValidImageName). GetImage: NotFound if absent. PutImage:
  // InvalidArgument if a chunk is missing on the server (upload first).
  Result<Manifest> GetImage(const std::string& name);
  Status PutImage(const std::string& name, const Manifest& m);
  Status DeleteImage(const std::string& name);  // NotFound if absent
  Result<std::vector<std::string>> ListImages();

  // Prefetch recordings: opaque JSON documents (at most 4 MiB) by name.
  Result<std::string> GetRecording(const std::string& name);  // NotFound if absent
  Status PutRecording(const std::string& name, std::string_view json);
  Status DeleteRecording(const std::string& name);  // NotFound if absent

  // POST /v1/gc: {"deleted":N,"bytes_freed":N,"kept":N}.
  Result<std::string> Collect();
  // GET /metrics (Prometheus text).
  Result<std::string> Metrics();

  const std::string& url() const { return options_.url; }

 private:
  struct Connection;
  struct Response {
    int status = 0;
    std::string body;
    std::string image_id;    // X-Kindling-Image-Id
    std::string error_code;  // X-Kindling-Error-Code
  };
  // One request with the retry policy above. 2xx and 4xx answers are returned; verify (if set)
  // turns a 200 body into a retryable error by returning false.
  Result<Response> Call(const std::string& method, const std::string& target, std::string_view body,
                        const std::function<bool(const std::string&)>& verify = nullptr);
  // Turns a non-2xx answer into the status described above.
  Status ErrorOf(const std::string& method, const std::string& target, const Response& r) const;
  Status Prefixed(const std::string& method, const std::string& target, StatusCode code,
                  const std::string& what) const;
  std::unique_ptr<Connection> TakeIdle();
  void GiveBack(std::unique_ptr<Connection> c);

  const ChunkClientOptions options_;
  std::string host_, port_;
  Status url_error_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_;
};

}  // namespace kindling::chunks
