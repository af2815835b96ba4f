// ChunkCache: a worker's local cache of chunks, in front of a ChunkSource (the chunk server).
//
// Tiers: a bounded in-memory LRU of recently read chunks (memory_bytes), then a ChunkStore on disk
// bounded by capacity_bytes (LRU), then the remote. Every read from disk is verified (a corrupt
// file is discarded and the chunk refetched) and every fetched chunk is verified by the source and
// checked against the ref's size before it is stored (atomically: temp file + rename).
//
// Fetching: fetch_parallelism threads owned by the cache do every remote fetch, so Get misses and
// prefetches share one bound on fetches in flight. Get misses go to the head of the line (ahead of
// queued prefetches); concurrent requests for one digest share one fetch.
//
// Eviction: after each chunk stored, least-recently-used chunks are deleted until the disk use is
// under capacity, skipping chunks of pinned manifests, chunks whose Get() handle is still alive,
// chunks being read, and the chunk just stored. If only such chunks remain the cache stays over
// capacity (a read never fails for lack of space) and counts it in Stats().over_capacity.
//
// On Open the LRU order is rebuilt from the files' modification times (refreshed on disk hits).
//
// Thread safety: every method may be called from any thread concurrently. The cache must outlive
// every call into it (the destructor fails queued fetches and waits for running ones).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "chunks/chunk_client.h"
#include "chunks/chunk_store.h"
#include "chunks/manifest.h"
#include "common/status.h"

namespace kindling::chunks {

struct ChunkCacheOptions {
  std::string dir;                       // the ChunkStore directory (required; one cache per dir)
  uint64_t capacity_bytes = 2ull << 30;  // disk bound (chunk file bytes)
  uint32_t fetch_parallelism = 8;        // remote fetches in flight at most (>= 1)
  uint64_t memory_bytes = 64ull << 20;   // in-memory LRU bound (0: none)
  bool compress = false;                 // zstd on disk (CPU for space)
};

struct ChunkCacheStats {
  uint64_t memory_hits = 0;        // Get served from memory
  uint64_t disk_hits = 0;          // Get served from disk (verified)
  uint64_t misses = 0;             // Get that had to wait for a fetch (own or shared)
  uint64_t fetches = 0;            // successful remote fetches (any cause)
  uint64_t fetch_errors = 0;       // failed remote fetches (after the source's retries)
  uint64_t bytes_fetched = 0;      // bytes of successful fetches
  uint64_t fetch_micros_total = 0;  // time in successful and failed fetches
  uint64_t fetch_micros_max = 0;
  uint64_t corrupt_discarded = 0;  // disk copies that failed verification (deleted, refetched)
  uint64_t evictions = 0;          // chunks deleted to stay under capacity
  uint64_t bytes_on_disk = 0;
  uint64_t capacity_bytes = 0;
  uint64_t prefetched = 0;         // chunks fetched because of Prefetch()
  // Added beyond the first contract:
  uint64_t over_capacity = 0;      // times eviction could not get under capacity (all in use)
  uint64_t chunks_on_disk = 0;
  uint64_t fetches_in_flight = 0;  // at the time of the call
  uint64_t fetches_queued = 0;     // waiting for a fetch thread
};

class ChunkCache {
 public:
  // Opens (creating) the cache directory, rebuilds the LRU index from the chunks on disk (evicting
  // if over capacity) and starts the fetch threads. remote must not be null.
  static Result<std::unique_ptr<ChunkCache>> Open(ChunkCacheOptions options, std::shared_ptr<ChunkSource> remote);
  // Fails queued fetches (their waiters get an error), waits for fetches in flight, stops the
  // fetch threads.
  ~ChunkCache();
  ChunkCache(const ChunkCache&) = delete;
  ChunkCache& operator=(const ChunkCache&) = delete;

  // The verified bytes of a chunk, from memory, else disk, else the remote (see above). Blocking.
  // Errors: the remote's (after its bounded retries), Corrupt if the bytes' size is not
  // ref.size (a manifest that lies), or a local I/O error. While the returned handle is alive the
  // chunk is not evicted from disk.
  Result<std::shared_ptr<const std::string>> Get(const ChunkRef& ref);
  // Queues refs to be fetched in this order (behind earlier prefetches, behind every Get miss),
  // skipping chunks cached or already being fetched. Non-blocking.
  void Prefetch(std::vector<ChunkRef> refs);
  // Chunks of a pinned manifest are not evicted while pinned (counted per digest and pin, so pins
  // of two manifests sharing chunks nest). Unpin with the same manifest.
  void Pin(const Manifest& m);
  void Unpin(const Manifest& m);
  // On disk or in memory.
  bool Contains(const Digest& digest);
  // Fetches every chunk of m not cached (within the parallelism bound, in manifest order) and
  // waits for them all: "download everything before start". Returns the first error.
  Status FetchAll(const Manifest& m);

  ChunkCacheStats Stats();
  // Prometheus text exposition, names kindling_chunk_cache_*.
  std::string MetricsText();

 private:
  struct Fetch {
    ChunkRef ref;
    enum class Kind { kGet, kPrefetch, kFetchAll } kind;
    bool started = false;
    bool done = false;
    Status status;
    std::shared_ptr<const std::string> data;
  };
  struct DiskEntry {
    uint64_t bytes = 0;
    std::list<Digest>::iterator lru;
    int readers = 0;  // Gets reading the file now
  };
  struct MemoryEntry {
    std::shared_ptr<const std::string> data;
    std::list<Digest>::iterator lru;
  };

  ChunkCache(ChunkCacheOptions options, std::shared_ptr<ChunkSource> remote, std::unique_ptr<ChunkStore> store);
  void FetchLoop();
  // The fetch for ref, started (queued) if none is in flight. Requires mu_.
  std::shared_ptr<Fetch> StartFetchLocked(const ChunkRef& ref, Fetch::Kind kind);
  Status WrongSize(const ChunkRef& ref, size_t got) const;
  // Require mu_:
  void RememberHandle(const Digest& d, const std::shared_ptr<const std::string>& data);
  bool HandleAlive(const Digest& d);
  void InsertMemory(const Digest& d, std::shared_ptr<const std::string> data);
  void EraseMemory(const Digest& d);
  void AddDisk(const Digest& d, uint64_t bytes);
  void EraseDisk(const Digest& d);
  void EvictLocked(const Digest* protect);

  const ChunkCacheOptions options_;
  const std::shared_ptr<ChunkSource> remote_;
  const std::unique_ptr<ChunkStore> store_;

  std::mutex mu_;
  std::condition_variable work_cv_;  // fetch threads: work queued or stopping
  std::condition_variable done_cv_;  // waiters: a fetch finished
  bool stopping_ = false;
  std::unordered_map<Digest, DiskEntry, DigestHash> disk_;
  std::list<Digest> disk_lru_;  // front: most recently used
  uint64_t disk_bytes_ = 0;
  std::unordered_map<Digest, MemoryEntry, DigestHash> memory_;
  std::list<Digest> memory_lru_;
  uint64_t memory_bytes_ = 0;
  std::unordered_map<Digest, int, DigestHash> pins_;
  std::unordered_map<Digest, std::weak_ptr<const std::string>, DigestHash> handles_;
  size_t handles_prune_at_ = 1024;
  std::unordered_map<Digest, std::shared_ptr<Fetch>, DigestHash> in_flight_;
  std::deque<std::shared_ptr<Fetch>> urgent_;  // Get misses (and prefetches a Get now waits for)
  std::deque<std::shared_ptr<Fetch>> queued_;  // prefetches and FetchAll, in order
  uint64_t running_ = 0;
  ChunkCacheStats stats_;
  std::vector<std::thread> threads_;
};

}  // namespace kindling::chunks
