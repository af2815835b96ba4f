#include "images/image_publisher.h"

#include <fcntl.h>
#include <unistd.h>

#include "common/files.h"
#include "common/ids.h"
#include "images/erofs.h"
#include "images/package_rootfs.h"
#include "images/start_layout.h"

#include <nlohmann/json.hpp>

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

ImagePublisher::~ImagePublisher() {
  std::lock_guard lock(threads_mu_);
  layouts_.clear();  // joins
}

void ImagePublisher::LayOutForStartLater(std::string name, std::vector<uint32_t> first_read_blocks) {
  std::lock_guard lock(threads_mu_);
  layouts_.emplace_back([this, name = std::move(name), blocks = std::move(first_read_blocks)] {
    Status s = LayOutForStart(name, blocks);
    if (!s.ok()) fprintf(stderr, "kindlingd: start layout of image %s: %s\n", name.c_str(), s.message().c_str());
  });
}

Status ImagePublisher::LayOutForStart(const std::string& name, const std::vector<uint32_t>& first_read_blocks) {
  std::lock_guard lock(layout_mu_);
  auto plain = remote_->GetImage(name);
  if (!plain.ok()) return plain.status();
  std::string image;
  image.reserve(plain->size);
  for (const auto& c : plain->chunks) {
    auto data = remote_->Fetch(c.digest);
    if (!data.ok()) return data.status();
    if (image.empty() && HasLayoutHeader(*data)) return Status::Ok();  // laid out already
    image += *data;
  }
  uint32_t hot = 0;
  auto stored = images::LayOutForStart(image, first_read_blocks, &hot);
  if (!stored.ok()) return stored.status();
  auto layout = ParseLayoutHeader(*stored, stored->size());
  if (!layout.ok()) return layout.status();
  chunks::Manifest m;
  m.size = stored->size();
  std::map<chunks::Digest, uint64_t> offset_of;
  for (uint64_t at = 0; at < stored->size(); at += chunks::kChunkSize) {
    std::string_view piece(stored->data() + at, std::min<uint64_t>(chunks::kChunkSize, stored->size() - at));
    m.chunks.push_back({chunks::Sha256Of(piece), static_cast<uint32_t>(piece.size())});
    offset_of.emplace(m.chunks.back().digest, at);
  }
  Status s = remote_->Upload(m, [&](const chunks::ChunkRef& ref) -> Result<std::string> {
    auto it = offset_of.find(ref.digest);
    if (it == offset_of.end()) return Status::Error("chunk " + ref.digest.Hex() + " is not in the image");
    return stored->substr(it->second, ref.size);
  });
  if (!s.ok()) return s;
  // What a start reads is now the header and the hot blocks: the first chunks, in order.
  uint64_t hot_end = layout->header_bytes + uint64_t(hot) * kLayoutBlock;
  std::vector<uint32_t> recorded;
  for (uint64_t i = 0; i * chunks::kChunkSize < hot_end && i < m.chunks.size(); ++i) recorded.push_back(static_cast<uint32_t>(i));
  nlohmann::json doc = {{"image", m.Id().Hex()}, {"chunks", recorded}, {"blocks", first_read_blocks}};
  if (Status put = remote_->PutRecording("start/" + m.Id().Hex(), doc.dump()); !put.ok()) return put;
  return remote_->PutImage(name, m);
}

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
