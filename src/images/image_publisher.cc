#include "images/image_publisher.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/files.h"
#include "common/ids.h"
#include "images/erofs.h"
#include "images/package_rootfs.h"

namespace kindling::images {
namespace {

// Hashes chunks without storing them: the server is asked which it lacks afterwards.
class DigestOnly : public chunks::ChunkSink {
 public:
  Status Put(const chunks::Digest&, std::string_view) override { return Status::Ok(); }
};

Result<std::string> ReadChunkAt(int fd, uint64_t offset, uint32_t size) {
  std::string data(size, '\0');
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(fd, data.data() + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? Status::Errno("read image") : Status::Error("image file shrank");
    done += static_cast<size_t>(n);
  }
  return data;
}

}  // namespace

std::string CodeImageName(const std::string& code_digest_hex) { return "code/" + code_digest_hex; }

ImagePublisher::ImagePublisher(std::string work_dir, std::shared_ptr<chunks::ChunkClient> remote,
                               std::string runtime_clients_dir)
    : work_dir_(std::move(work_dir)), remote_(std::move(remote)), clients_dir_(std::move(runtime_clients_dir)) {}

Result<chunks::Manifest> ImagePublisher::PublishTree(const std::string& dir, const std::string& name) {
  if (Status s = MakeDirs(work_dir_, 0700); !s.ok()) return s;
  std::string file = work_dir_ + "/" + NewRequestId() + ".erofs";
  struct Cleanup {
    std::string path;
    ~Cleanup() { unlink(path.c_str()); }
  } cleanup{file};
  if (Status s = BuildErofs(dir, file); !s.ok()) return s;
  DigestOnly digests;
  auto manifest = chunks::ChunkFile(file, digests);
  if (!manifest.ok()) return manifest.status();
  int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Errno("open " + file);
  std::map<chunks::Digest, uint64_t> offset_of;  // the first place of each distinct chunk
  uint64_t at = 0;
  for (const auto& c : manifest->chunks) {
    offset_of.emplace(c.digest, at);
    at += c.size;
  }
  const chunks::Manifest& m = *manifest;
  Status s = remote_->Upload(m, [&](const chunks::ChunkRef& ref) -> Result<std::string> {
    auto it = offset_of.find(ref.digest);
    if (it == offset_of.end()) return Status::Error("chunk " + ref.digest.Hex() + " is not in the image");
    return ReadChunkAt(fd, it->second, ref.size);
  });
  close(fd);
  if (!s.ok()) return s;
  if (Status put = remote_->PutImage(name, m); !put.ok()) return put;
  return manifest;
}

Status ImagePublisher::Unpublish(const std::string& name) { return remote_->DeleteImage(name); }

Result<std::string> ImagePublisher::RuntimeImage(const std::string& family) {
  std::lock_guard lock(mu_);
  if (auto it = runtime_names_.find(family); it != runtime_names_.end()) return it->second;
  const RootfsRecipe* recipe = nullptr;
  auto recipes = RuntimeRecipes(clients_dir_);
  for (const auto& r : recipes)
    if (r.name == family) recipe = &r;
  if (!recipe) return Status::Error("no runtime image recipe for '" + family + "'");
  auto resolved = ResolveRecipe(*recipe);
  if (!resolved.ok()) return resolved.status();
  std::string name = "runtime/" + family + "/" + resolved->key;
  if (!remote_->GetImage(name).ok()) {
    std::string tree = work_dir_ + "/rootfs-" + family + "-" + NewRequestId();
    Status staged = MakeDirs(work_dir_, 0700);
    if (staged.ok()) staged = StageRootfs(*recipe, *resolved, tree);
    Result<chunks::Manifest> published = staged.ok() ? PublishTree(tree, name) : Result<chunks::Manifest>(staged);
    RemoveTree(tree);
    if (!published.ok()) return Status::Error("runtime image " + family + ": " + published.status().message());
  }
  runtime_names_[family] = name;
  return name;
}

}  // namespace kindling::images
