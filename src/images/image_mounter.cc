#include "images/image_mounter.h"

#include <dirent.h>
#include <sys/mount.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <cstring>
#include <set>

#include "common/files.h"
#include "images/erofs.h"

namespace kindling::images {

using chunks::ChunkRef;
using chunks::Digest;
using chunks::Manifest;
using Clock = std::chrono::steady_clock;

struct MountedImage {
  ImageMounter* owner = nullptr;
  std::string name;
  Manifest manifest;
  Digest id;
  std::string path;
  bool mounted = false;               // false while the first Acquire mounts it
  int leases = 0;
  Clock::time_point released{};       // when leases last dropped to 0
  std::vector<uint32_t> recording;    // the stored start recording, as read at mount time
  std::vector<uint32_t> recorded_blocks;  // its file blocks
  bool laid_out = false;              // stored with a start layout
  bool recording_done = false;
};

namespace {

std::string RecordingName(const Digest& id) { return "start/" + id.Hex(); }

// One list of a recording {"image":"<id hex>","chunks":[stored chunk index,...],"blocks":[file
// block,...]}: indexes below limit, first occurrences; anything malformed is ignored (a recording
// only ever speeds a start up).
std::vector<uint32_t> RecordingList(const nlohmann::json& doc, const char* key, uint64_t limit) {
  std::vector<uint32_t> out;
  if (!doc.is_object() || !doc.contains(key) || !doc[key].is_array()) return out;
  std::set<uint32_t> seen;
  for (const auto& v : doc[key]) {
    if (!v.is_number_unsigned()) continue;
    uint64_t i = v.get<uint64_t>();
    if (i < limit && seen.insert(static_cast<uint32_t>(i)).second) out.push_back(static_cast<uint32_t>(i));
  }
  return out;
}

// a followed by what of b it lacks.
std::vector<uint32_t> Merged(std::vector<uint32_t> a, const std::vector<uint32_t>& b) {
  std::set<uint32_t> have(a.begin(), a.end());
  for (uint32_t i : b)
    if (have.insert(i).second) a.push_back(i);
  return a;
}

// The erofs instances mounted now (/sys/fs/erofs/<name>; each has a backing device of that name).
std::set<std::string> ErofsInstances() {
  std::set<std::string> out;
  if (DIR* dir = opendir("/sys/fs/erofs")) {
    while (dirent* e = readdir(dir))
      if (strncmp(e->d_name, "erofs-", 6) == 0) out.insert(e->d_name);
    closedir(dir);
  }
  return out;
}

// Detaches every mount at or below dir (deepest first), from /proc/self/mountinfo.
Status DetachMountsBelow(const std::string& dir) {
  std::string info;
  if (Status s = ReadFile("/proc/self/mountinfo", &info); !s.ok()) return s;
  std::vector<std::string> points;
  size_t pos = 0;
  while (pos < info.size()) {
    size_t eol = info.find('\n', pos);
    if (eol == std::string::npos) eol = info.size();
    std::string line = info.substr(pos, eol - pos);
    pos = eol + 1;
    size_t field = 0, start = 0;
    for (int i = 0; i < 4 && start != std::string::npos; ++i) start = line.find(' ', start) + 1;
    if (start == 0 || start >= line.size()) continue;
    field = line.find(' ', start);
    std::string point = line.substr(start, field - start);
    if (point == dir || point.rfind(dir + "/", 0) == 0) points.push_back(point);
  }
  for (auto it = points.rbegin(); it != points.rend(); ++it) umount2(it->c_str(), MNT_DETACH);
  return Status::Ok();
}

}  // namespace

Result<ImageLoading> ParseImageLoading(const std::string& name) {
  if (name == "eager") return ImageLoading::kEager;
  if (name == "lazy") return ImageLoading::kLazy;
  if (name == "prefetch") return ImageLoading::kPrefetch;
  return Status::Error("image loading must be eager, lazy or prefetch, not '" + name + "'");
}

ImageLease::~ImageLease() { image_->owner->Release(*image_); }
const std::string& ImageLease::path() const { return image_->path; }
const std::string& ImageLease::name() const { return image_->name; }
Digest ImageLease::id() const { return image_->id; }

Result<std::unique_ptr<ImageMounter>> ImageMounter::Start(ImageMounterOptions opts,
                                                          std::shared_ptr<chunks::ChunkClient> remote,
                                                          std::shared_ptr<chunks::ChunkCache> cache) {
  std::unique_ptr<ImageMounter> m(new ImageMounter());
  m->opts_ = std::move(opts);
  m->remote_ = std::move(remote);
  m->cache_ = std::move(cache);
  for (const char* sub : {"/fuse", "/mnt"})
    if (Status s = MakeDirs(m->opts_.dir + sub, 0755); !s.ok()) return s;
  // erofs mounts an earlier process left behind hold files of its (dead) FUSE file system.
  if (Status s = DetachMountsBelow(m->opts_.dir + "/mnt"); !s.ok()) return s;
  auto* cache_ptr = m->cache_.get();
  auto fs = LazyImageFs::Mount(m->opts_.dir + "/fuse",
                               [cache_ptr](const ChunkRef& ref) { return cache_ptr->Get(ref); });
  if (!fs.ok()) return fs.status();
  m->fs_ = std::move(fs).value();
  return m;
}

ImageMounter::~ImageMounter() {
  std::lock_guard lock(mu_);
  for (auto& [name, image] : images_)
    if (image->mounted) Unmount(*image);
  images_.clear();
  fs_.reset();
}

Result<std::shared_ptr<ImageLease>> ImageMounter::Acquire(const std::string& name) {
  Sweep(opts_.keep_unused);
  std::unique_lock lock(mu_);
  std::shared_ptr<MountedImage> image;
  while (true) {
    auto it = images_.find(name);
    if (it == images_.end()) break;
    if (!it->second->mounted) {
      mounted_.wait(lock);  // another start mounts it; it may also fail, then we try ourselves
      continue;
    }
    ++it->second->leases;
    return std::shared_ptr<ImageLease>(new ImageLease(it->second, false));
  }
  image = std::make_shared<MountedImage>();
  image->owner = this;
  image->name = name;
  images_[name] = image;
  lock.unlock();
  Status s = MountNew(*image);
  lock.lock();
  if (!s.ok()) {
    images_.erase(name);
    ++stats_.mount_errors;
    mounted_.notify_all();
    return s.WithContext("image " + name);
  }
  image->mounted = true;
  image->leases = 1;
  ++stats_.mounts;
  mounted_.notify_all();
  return std::shared_ptr<ImageLease>(new ImageLease(image, true));
}

Status ImageMounter::MountNew(MountedImage& image) {
  auto manifest = remote_->GetImage(image.name);
  if (!manifest.ok()) return manifest.status();
  if (manifest->chunks.empty()) return Status::Error("the image is empty");
  image.manifest = std::move(manifest).value();
  image.id = image.manifest.Id();
  image.path = opts_.dir + "/mnt/" + image.id.Hex();
  cache_->Pin(image.manifest);
  auto fail = [&](Status s) {
    fs_->Remove(image.id);
    cache_->Unpin(image.manifest);
    return s;
  };

  if (opts_.loading == ImageLoading::kEager) {
    if (Status s = cache_->FetchAll(image.manifest); !s.ok()) return fail(s);
  }
  // The stored recording: what this start adds is merged into it, and prefetch follows it.
  if (auto recording = remote_->GetRecording(RecordingName(image.id)); recording.ok()) {
    auto doc = nlohmann::json::parse(*recording, nullptr, false);
    image.recording = RecordingList(doc, "chunks", image.manifest.chunks.size());
    image.recorded_blocks = RecordingList(doc, "blocks", image.manifest.size / kLayoutBlock + 1);
    if (opts_.loading == ImageLoading::kPrefetch) {
      std::vector<ChunkRef> refs;
      for (uint32_t i : image.recording) refs.push_back(image.manifest.chunks[i]);
      cache_->Prefetch(std::move(refs));
      std::lock_guard lock(mu_);
      stats_.prefetched_chunks += image.recording.size();
    }
  }

  // A hostile or truncated image fails here, before the kernel parses any of it.
  auto head = cache_->Get(image.manifest.chunks[0]);
  if (!head.ok()) return fail(head.status());
  StartLayout layout;
  std::string superblock = **head;
  if (HasLayoutHeader(**head)) {
    auto parsed = ParseLayoutHeader(**head, image.manifest.size);
    if (!parsed.ok()) return fail(parsed.status());
    layout = std::move(parsed).value();
    uint64_t at = layout.header_bytes + uint64_t(layout.stored_block_of[0]) * kLayoutBlock;
    auto block0 = cache_->Get(image.manifest.chunks[at / chunks::kChunkSize]);
    if (!block0.ok()) return fail(block0.status());
    superblock = (*block0)->substr(at % chunks::kChunkSize, kLayoutBlock);
    image.laid_out = true;
  }
  const uint64_t file_size = image.manifest.size - layout.header_bytes;
  if (Status s = CheckErofsSuperblock(superblock, file_size); !s.ok()) return fail(s);
  std::string file = fs_->Add(image.manifest, std::move(layout));
  if (Status s = MakeDirs(image.path, 0755); !s.ok()) return fail(s);
  std::lock_guard mount_lock(mount_mu_);
  std::set<std::string> before = ErofsInstances();
  if (mount(file.c_str(), image.path.c_str(), "erofs", MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr) != 0) {
    Status s = Status::Errno("mount erofs " + file);
    std::string why = fs_->LastError(image.id);
    return fail(why.empty() ? s : Status::Error(s.message() + " (" + why + ")"));
  }
  if (opts_.readahead_kb >= 0)
    for (const std::string& name : ErofsInstances())
      if (!before.count(name)) WriteFile("/sys/class/bdi/" + name + "/read_ahead_kb", std::to_string(opts_.readahead_kb));
  return Status::Ok();
}

void ImageMounter::Unmount(MountedImage& image) {
  if (umount2(image.path.c_str(), 0) != 0) umount2(image.path.c_str(), MNT_DETACH);
  rmdir(image.path.c_str());
  fs_->Remove(image.id);
  cache_->Unpin(image.manifest);
  image.mounted = false;
  ++stats_.unmounts;
}

void ImageMounter::Release(MountedImage& image) {
  std::lock_guard lock(mu_);
  if (--image.leases == 0) image.released = Clock::now();
}

void ImageMounter::Sweep(std::chrono::seconds keep_unused) {
  std::lock_guard lock(mu_);
  const auto now = Clock::now();
  for (auto it = images_.begin(); it != images_.end();) {
    MountedImage& image = *it->second;
    if (image.mounted && image.leases == 0 && now - image.released >= keep_unused) {
      Unmount(image);
      it = images_.erase(it);
    } else {
      ++it;
    }
  }
}

void ImageMounter::StartFinished(const ImageLease& lease) {
  if (!lease.mounted_it()) return;
  MountedImage& image = *lease.image_;
  std::vector<uint32_t> chunks, blocks;
  {
    std::lock_guard lock(mu_);
    if (image.recording_done) return;
    image.recording_done = true;
    chunks = image.recording;
    blocks = image.recorded_blocks;
  }
  size_t before = chunks.size() + blocks.size();
  chunks = Merged(std::move(chunks), fs_->FirstReads(image.id));
  blocks = Merged(std::move(blocks), fs_->FirstReadBlocks(image.id));
  if (chunks.size() + blocks.size() == before) return;  // nothing new: the recording stays current
  nlohmann::json doc = {{"image", image.id.Hex()}, {"chunks", chunks}, {"blocks", blocks}};
  if (remote_->PutRecording(RecordingName(image.id), doc.dump()).ok()) {
    std::lock_guard lock(mu_);
    ++stats_.recordings_written;
  }
  if (!image.laid_out && opts_.lay_out && image.manifest.chunks.size() >= kLayoutMinChunks)
    opts_.lay_out(image.name, std::move(blocks));
}

std::string ImageMounter::LastError(const ImageLease& lease) const { return fs_->LastError(lease.id()); }

ImageMounterStats ImageMounter::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

std::string ImageMounter::MetricsText() const {
  ImageMounterStats s = Stats();
  std::string out = cache_->MetricsText();
  auto counter = [&out](const char* name, uint64_t v) {
    out += std::string("# TYPE ") + name + " counter\n" + name + " " + std::to_string(v) + "\n";
  };
  counter("kindling_image_mounts_total", s.mounts);
  counter("kindling_image_unmounts_total", s.unmounts);
  counter("kindling_image_mount_errors_total", s.mount_errors);
  counter("kindling_image_prefetched_chunks_total", s.prefetched_chunks);
  counter("kindling_image_recordings_written_total", s.recordings_written);
  return out;
}

}  // namespace kindling::images
