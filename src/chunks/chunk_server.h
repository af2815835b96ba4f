// ChunkServer: kindling-chunkd's HTTP service (also embeddable in kindlingd): the origin store of
// every chunk, image manifests by name, and prefetch recordings.
//
// HTTP API (errors: {"message": ...} with 400/404/409/413, and X-Kindling-Error-Code when the
// error has a code, e.g. ChunkCorrupt):
//   GET    /v1/chunks/<hex>       200 raw bytes | 404. HEAD: 200 | 404, no body (Content-Length: 0).
//                                 A copy found corrupt on disk is deleted
//                                 and answered 500 with X-Kindling-Error-Code: ChunkCorrupt
//                                 (later requests get 404), so corrupt bytes are never served.
//   PUT    /v1/chunks/<hex>       body = the chunk (<= kChunkSize, digest verified, else 400)
//   POST   /v1/chunks/missing     {"digests":[hex...]} (<= 200000) -> {"missing":[hex...]}; the
//                                 present ones have their grace period restarted
//   PUT    /v1/images/<name>      body = manifest JSON (Manifest::Parse); every chunk must be
//                                 stored, else 409 naming the first missing one
//   GET    /v1/images/<name>      manifest JSON, header X-Kindling-Image-Id: <hex id>
//   DELETE /v1/images/<name>
//   GET    /v1/images             {"images":[{"name":..,"id":..,"size":..,"chunks":..}]}
//   PUT|GET|DELETE /v1/recordings/<name>  opaque JSON documents (must parse, <= 4 MiB)
//   POST   /v1/gc                 deletes chunks no stored image references whose last put (or
//                                 missing-check) is older than the grace period
//                                 -> {"deleted":N,"bytes_freed":N,"kept":N}
//   GET    /metrics               Prometheus text (kindling_chunkd_*)
// Names (images, recordings): IsValidImageName. There is no authentication: listen on loopback,
// or on a private network only.
//
// Storage: chunks in a ChunkStore at <data_dir>/chunks; manifests and recordings in SQLite
// (<data_dir>/images.db, WAL, owner-only), each PUT one transaction.
//
// Threading: HTTP runs on the io_context given (driven by one thread, like HttpServer); disk and
// database work runs on a small private thread pool, so a slow disk or a simulated latency
// (an asio timer) never blocks other requests.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "http/http_server.h"
#include "common/asio.h"
#include "common/status.h"

namespace kindling::chunks {

struct ChunkServerOptions {
  std::string data_dir;  // required
  std::string host = "127.0.0.1";
  int port = 9300;  // 0: any free port (Start returns it)
  // Added before serving each chunk GET (emulates a remote link in benchmarks and tests).
  std::chrono::milliseconds simulated_latency{0};
  std::chrono::seconds gc_grace{600};
  bool compress = true;  // zstd-compress stored chunks when that saves space
  int io_threads = 2;    // disk and database threads
  HttpLimits limits;
};

class ChunkServer {
 public:
  ChunkServer(boost::asio::io_context& io, ChunkServerOptions options);
  // Stops listening and joins the disk threads. Destroy it either after its connections have
  // ended (connections() == 0), or once the io_context will not run again: then the connections'
  // suspended coroutines (destroyed with the io_context) still find the HTTP server they point to,
  // which is deliberately left allocated for them.
  ~ChunkServer();
  ChunkServer(const ChunkServer&) = delete;
  ChunkServer& operator=(const ChunkServer&) = delete;

  // Opens the store and database, binds and starts serving. Returns the bound port.
  Result<int> Start();
  // Stops accepting connections (call on the io thread). Open keep-alive connections end when
  // their clients close them or after the idle timeout; connections() tells when all are gone.
  void Stop();
  size_t connections() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kindling::chunks
