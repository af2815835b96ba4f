// ChunkStore: an on-disk, content-addressed store of chunks. kindling-chunkd keeps every chunk in
// one (its origin store); each worker's ChunkCache keeps its local copies in one.
//
// Layout: <dir>/<hex[0:2]>/<hex>, one file per chunk, written atomically (a temporary file in the
// same directory, fsync'd when options.durable, then renamed), so a reader sees a whole chunk or
// none. <dir>/.lock holds an exclusive flock while the store is open: one ChunkStore per
// directory at a time (Open fails otherwise), which is what lets Open delete stale temporaries.
//
// Every Get verifies the chunk's digest; a file that fails (truncated, bit-flipped, undecodable)
// is deleted and reported as ChunkCorrupt, never returned.
//
// Thread safety: every method may be called from any thread concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "chunks/digest.h"
#include "chunks/manifest.h"
#include "common/status.h"

namespace kindling::chunks {

// Error names on the chunk server's wire ({"error_code": ...} of its JSON errors); in a Status
// they are StatusCode::kNotFound and kCorrupt.
inline constexpr char kChunkNotFound[] = "ChunkNotFound";
inline constexpr char kChunkCorrupt[] = "ChunkCorrupt";

// Stored chunk file format (all integers little-endian):
//   offset 0  4 bytes  magic "KCH1"
//   offset 4  1 byte   payload format: 0 = raw bytes, 1 = one zstd frame
//   offset 5  3 bytes  zero
//   offset 8  4 bytes  uncompressed length (1..kChunkSize; 0 only for the empty chunk)
//   offset 12 ...      payload (raw: exactly the uncompressed length; zstd: the frame)
// A chunk is stored compressed only when that is smaller than raw.
constexpr char kChunkFileMagic[4] = {'K', 'C', 'H', '1'};
constexpr size_t kChunkHeaderSize = 12;
constexpr uint8_t kFormatRaw = 0;
constexpr uint8_t kFormatZstd = 1;

struct ChunkStoreOptions {
  bool compress = true;  // zstd when it saves space
  int zstd_level = 3;
  // fsync each chunk file and its directory before Put returns. An origin store needs this; a
  // cache may skip it, since every read is verified and a chunk lost in a crash is refetched.
  bool durable = true;
};

class ChunkStore : public ChunkSink {
 public:
  // Creates dir (0700) if needed, takes its lock, removes temporaries an interrupted Put left.
  static Result<std::unique_ptr<ChunkStore>> Open(const std::string& dir, ChunkStoreOptions options = {});
  ~ChunkStore() override;

  // Stores data under digest. Verifies Sha256Of(data) == digest first (else an error and nothing is
  // written); data may be at most kChunkSize bytes. Idempotent: an existing chunk is kept (its
  // modification time is refreshed, see Touch).
  Status Put(const Digest& digest, std::string_view data) override;
  // Put for a caller that has just verified data against digest itself (a ChunkClient's Fetch):
  // skips hashing it a second time. Everything else as Put.
  Status PutVerified(const Digest& digest, std::string_view data);
  // The chunk's bytes, decompressed and verified. Missing: IsNotFound(). Digest mismatch,
  // bad header or undecodable payload: the file is deleted, IsCorrupt().
  Result<std::string> Get(const Digest& digest);
  bool Has(const Digest& digest);
  // Sets the chunk's modification time to now (garbage collection's grace period counts from the
  // last Put or Touch). IsNotFound() if absent.
  Status Touch(const Digest& digest);
  // Seconds since the chunk's last Put or Touch; IsNotFound() if absent.
  Result<double> AgeSeconds(const Digest& digest);
  // Deletes the chunk; OK if it was absent.
  Status Remove(const Digest& digest);
  // Every stored chunk (in no particular order).
  std::vector<Digest> List();
  // Bytes of all chunk files (their lengths, headers included), kept as chunks come and go.
  uint64_t StoredBytes() const { return stored_bytes_.load(); }
  uint64_t StoredChunks() const { return stored_chunks_.load(); }
  // The length of one chunk's file; IsNotFound() if absent.
  Result<uint64_t> FileBytes(const Digest& digest);
  const std::string& dir() const { return dir_; }

 private:
  ChunkStore(std::string dir, ChunkStoreOptions options, int lock_fd)
      : dir_(std::move(dir)), options_(options), lock_fd_(lock_fd) {}
  std::string PathOf(const Digest& d) const;
  // Deletes a corrupt file and returns the Corrupt status describing it.
  Status Discard(const Digest& d, const std::string& why);
  void Forget(uint64_t file_bytes);

  const std::string dir_;
  const ChunkStoreOptions options_;
  int lock_fd_;
  std::atomic<uint64_t> temp_counter_{0};
  // Serializes the rename/unlink of final chunk files with the byte accounting below.
  std::mutex mu_;
  std::atomic<uint64_t> stored_bytes_{0}, stored_chunks_{0};
};

}  // namespace kindling::chunks
