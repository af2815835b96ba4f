// LazyImageFs: a read-only FUSE file system that shows each added image as one regular file,
// <mountpoint>/<image id hex>, whose bytes are loaded chunk by chunk on first read.
//
// The kernel mounts the erofs file system inside such a file (erofs file-backed mounts), so a
// sandbox start reads exactly the chunks its files touch; the erofs page cache then serves
// repeated reads without coming back here. Each image remembers the order in which its chunks
// were first read (the start recording that later starts prefetch from).
//
// Reads are served on the FUSE session's own threads and block on the ChunkReader (the worker's
// chunk cache, which coalesces concurrent reads of one chunk). A chunk that cannot be read fails
// the read with EIO, and the error is kept for the image (LastError) so that a failed start can say
// why.
//
// Thread safety: every method is thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "chunks/manifest.h"
#include "common/status.h"
#include "images/start_layout.h"

struct fuse_session;

namespace kindling::images {

// Verified bytes of one chunk; must be thread-safe.
using ChunkReader =
    std::function<Result<std::shared_ptr<const std::string>>(const chunks::ChunkRef&)>;

// What one image's file has served since it was added.
struct ImageReadStats {
  uint64_t reads = 0;            // FUSE read requests
  uint64_t bytes_served = 0;     // bytes returned to the kernel
  uint64_t chunks_touched = 0;   // distinct chunks read at least once
  uint64_t bytes_touched = 0;    // their total size
  uint64_t errors = 0;           // reads failed with EIO
};

class LazyImageFs {
 public:
  // Mounts an empty file system at mountpoint (an existing directory; a stale mount left there by
  // an earlier process is detached first) and starts serving it.
  static Result<std::unique_ptr<LazyImageFs>> Mount(const std::string& mountpoint, ChunkReader reader);
  // Unmounts and stops serving. Mounts made on top of its files must be gone (or detached) first.
  ~LazyImageFs();

  // Makes the image's file appear (idempotent) and returns its path. With a start layout, the
  // file shows the image's blocks in image order (the manifest's bytes minus the header).
  std::string Add(const chunks::Manifest& manifest, StartLayout layout = {});
  // Makes the file disappear. Files already open (a mounted erofs) keep being served.
  void Remove(const chunks::Digest& id);
  std::string PathOf(const chunks::Digest& id) const;

  // Chunk indexes of the image in the order they were first read since Add.
  std::vector<uint32_t> FirstReads(const chunks::Digest& id) const;
  // The file's 4 KiB blocks in the order they were first read since Add.
  std::vector<uint32_t> FirstReadBlocks(const chunks::Digest& id) const;
  ImageReadStats Stats(const chunks::Digest& id) const;
  // The last chunk error of the image ("" if none).
  std::string LastError(const chunks::Digest& id) const;

  struct Image;  // one file; internal (the FUSE callbacks reach it)

 private:
  LazyImageFs() = default;
  std::shared_ptr<Image> Find(const chunks::Digest& id) const;

  std::string mountpoint_;
  ChunkReader reader_;
  fuse_session* session_ = nullptr;
  std::thread loop_;
  mutable std::mutex mu_;
  std::map<uint64_t, std::shared_ptr<Image>> by_inode_;
  // Open files by FUSE file handle: a removed image stays readable while open. Handles the kernel
  // never released (a connection aborted at shutdown) go with the file system.
  std::map<uint64_t, std::shared_ptr<Image>> open_files_;
  uint64_t next_handle_ = 1;
  std::map<chunks::Digest, uint64_t> inode_of_;
  uint64_t next_inode_ = 2;  // 1 is the root directory

  friend struct FsCallbacks;
};

}  // namespace kindling::images
