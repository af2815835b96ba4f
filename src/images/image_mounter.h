// ImageMounter: the worker's view of images. Mounts an image (by name, from the chunk server) as a
// read-only erofs file system whose bytes load lazily, chunk by chunk, through the worker's chunk
// cache; records the order a start reads chunks in, and prefetches in that order next time.
//
// Host layout under dir:
//   fuse/           LazyImageFs: one file per image, <image id hex>
//   mnt/<id hex>/   erofs mount of fuse/<id hex> (ro, nosuid, nodev): what sandboxes bind
//
// Loading an image that is not mounted on this worker yet (a cold start on this worker):
//   eager     fetch every chunk into the cache, then mount (the "download first" baseline)
//   lazy      mount at once; chunks load on first read
//   prefetch  as lazy, and fetch the chunks of the image's stored start recording, in recorded
//             order, in parallel with the start
// The start that mounts an image records its first reads; when that start is over
// (StartFinished), the reads are merged into the stored recording ("start/<id hex>" on the chunk
// server), so recordings follow what starts of the image actually read as functions change.
//
// Thread safety: every method is thread-safe; Acquire and StartFinished block (network, mount)
// and run on worker threads, never on the io thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "chunks/chunk_cache.h"
#include "chunks/chunk_client.h"
#include "images/lazy_image_fs.h"

namespace kindling::images {

enum class ImageLoading { kEager, kLazy, kPrefetch };
// Images smaller than this are not worth a start layout (a code package is usually one chunk).
constexpr size_t kLayoutMinChunks = 8;
Result<ImageLoading> ParseImageLoading(const std::string& name);  // "eager" | "lazy" | "prefetch"

struct ImageMounterOptions {
  std::string dir;
  ImageLoading loading = ImageLoading::kPrefetch;
  // An unused image stays mounted this long (its page cache keeps later cold starts fast).
  std::chrono::seconds keep_unused{600};
  // Readahead of each erofs mount, in KiB (the read_ahead_kb of its backing device; < 0: the
  // kernel's default). What a start reads ahead is recorded with it and laid out with it.
  int readahead_kb = -1;
  // Called (from StartFinished) with the blocks the first recorded start of an image without a
  // start layout read, for images of at least kLayoutMinChunks chunks: see ImagePublisher.
  std::function<void(const std::string& name, std::vector<uint32_t> first_read_blocks)> lay_out;
};

struct MountedImage;

// One user's hold on a mounted image; the image stays mounted while a lease lives.
class ImageLease {
 public:
  ~ImageLease();
  const std::string& path() const;  // root of the mounted file system
  const std::string& name() const;
  chunks::Digest id() const;
  // True for the lease whose Acquire mounted the image: its start is the one being recorded.
  bool mounted_it() const { return mounted_it_; }

 private:
  friend class ImageMounter;
  ImageLease(std::shared_ptr<MountedImage> image, bool mounted_it)
      : image_(std::move(image)), mounted_it_(mounted_it) {}
  std::shared_ptr<MountedImage> image_;
  bool mounted_it_;
};

struct ImageMounterStats {
  uint64_t mounts = 0, unmounts = 0, mount_errors = 0;
  uint64_t prefetched_chunks = 0, recordings_written = 0;
};

class ImageMounter {
 public:
  static Result<std::unique_ptr<ImageMounter>> Start(ImageMounterOptions opts,
                                                     std::shared_ptr<chunks::ChunkClient> remote,
                                                     std::shared_ptr<chunks::ChunkCache> cache);
  // Unmounts every image (sandboxes must be gone), then the FUSE file system.
  ~ImageMounter();

  // Mounts the image stored under name unless it is mounted. Errors are clear service errors
  // ("image code/...: chunk server http://...: connection refused").
  Result<std::shared_ptr<ImageLease>> Acquire(const std::string& name);
  // The start that mounted the lease's image is over; stores its recording. No-op for other leases.
  void StartFinished(const ImageLease& lease);
  // Unmounts images without leases, unused for keep_unused (now = 0: every unused image).
  void Sweep(std::chrono::seconds keep_unused);
  // The last chunk error while reading the image ("" if none): why a start that read it failed.
  std::string LastError(const ImageLease& lease) const;

  ImageReadStats ReadStats(const chunks::Digest& id) const { return fs_->Stats(id); }
  ImageMounterStats Stats() const;
  std::string MetricsText() const;  // mounter and chunk cache metrics (Prometheus text)
  chunks::ChunkCache& cache() { return *cache_; }

 private:
  ImageMounter() = default;
  Status MountNew(MountedImage& image);
  void Unmount(MountedImage& image);
  void Release(MountedImage& image);
  friend class ImageLease;

  ImageMounterOptions opts_;
  std::shared_ptr<chunks::ChunkClient> remote_;
  std::shared_ptr<chunks::ChunkCache> cache_;
  std::unique_ptr<LazyImageFs> fs_;
  mutable std::mutex mu_;
  std::condition_variable mounted_;  // a mount in progress finished
  std::mutex mount_mu_;              // one mount(2) at a time: the new erofs instance is ours
  std::map<std::string, std::shared_ptr<MountedImage>> images_;  // by name
  ImageMounterStats stats_;
};

}  // namespace kindling::images
