// Manifests (an image = ordered chunks), the sink chunks are written to, and the splitter that
// turns a file into chunks.
//
// Thread safety: Manifest is a plain value; ChunkFile is reentrant (the sink decides its own).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "chunks/digest.h"
#include "common/status.h"

namespace kindling::chunks {

// Bounds on what Manifest::Parse accepts (the image is untrusted until parsed).
constexpr uint32_t kMaxChunks = 128 * 1024;                            // 64 GiB of chunks
constexpr uint64_t kMaxImageBytes = uint64_t{kMaxChunks} * kChunkSize;  // 64 GiB
// The encoding of kMaxChunks full chunks is ~10 MiB; whitespace beyond this bound is refused.
constexpr size_t kMaxManifestBytes = 16u << 20;

struct ChunkRef {
  Digest digest;
  uint32_t size = 0;
  bool operator==(const ChunkRef&) const = default;
};

// An image: ordered chunks. Every chunk is kChunkSize bytes except the last (1..kChunkSize);
// size = sum of chunk sizes. An empty image has size 0 and no chunks. Chunk i covers image bytes
// [i * kChunkSize, i * kChunkSize + chunks[i].size).
struct Manifest {
  uint64_t size = 0;
  std::vector<ChunkRef> chunks;

  // Canonical JSON, no whitespace:
  //   {"version":1,"chunk_size":524288,"size":N,"chunks":[["<64 hex>",size],...]}
  std::string Encode() const;
  // SHA-256 of Encode(): the image id. Equal contents give equal ids.
  Digest Id() const;
  // Parses and validates a manifest from untrusted bytes; never throws or asserts. Rejects: invalid
  // or truncated JSON, trailing bytes after the document, more than kMaxManifestBytes, anything
  // but an object with exactly the keys version (must be 1), chunk_size (must be kChunkSize), size
  // and chunks (each once; unknown or duplicate keys are errors), numbers that are negative,
  // fractional or over 2^64, a chunk entry other than ["<64 hex digits>", size], a chunk size of 0
  // or over kChunkSize, a chunk other than the last smaller than kChunkSize, size != the sum of
  // the chunk sizes, more than kMaxChunks chunks. Upper-case hex is accepted (Encode writes lower).
  static Result<Manifest> Parse(std::string_view json);

  bool operator==(const Manifest&) const = default;
};

// Where chunks go (a local store, a chunk server). Put must be idempotent: the same chunk may be
// put many times, and a sink deduplicates.
class ChunkSink {
 public:
  virtual ~ChunkSink() = default;
  virtual Status Put(const Digest& digest, std::string_view data) = 0;
};

// Names of images and recordings on a chunk server: 1..200 characters of [A-Za-z0-9._/+-], not
// containing "..".
bool IsValidImageName(std::string_view name);

// Splits the file at path into kChunkSize chunks and Put()s each, in order (skipping none: sinks
// deduplicate), returning the manifest. An empty file gives size 0 and no chunks. Fails on read
// errors, a sink error (the first is returned), or a file over kMaxImageBytes.
Result<Manifest> ChunkFile(const std::string& path, ChunkSink& sink);

}  // namespace kindling::chunks
