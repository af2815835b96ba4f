// Images: reproducible erofs builds, superblock checks, runtime root file systems from Debian
// packages, and lazily loaded images through the real FUSE file system and kernel erofs mounts.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <mutex>
#include <random>

#include "common/files.h"
#include "common/ids.h"
#include "images/erofs.h"
#include "images/lazy_image_fs.h"
#include "images/package_rootfs.h"

namespace kindling::images {
namespace {

using chunks::ChunkRef;
using chunks::Digest;
using chunks::Manifest;

std::string TempDir() {
  std::string dir = "/var/tmp/kindling-images-test-" + NewRequestId();
  EXPECT_TRUE(MakeDirs(dir, 0755).ok());
  return dir;
}

std::string Slurp(const std::string& path) {
  std::string data;
  EXPECT_TRUE(ReadFile(path, &data).ok()) << path;
  return data;
}

std::string RandomBytes(size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(gen());
  return s;
}

void Write(const std::string& path, const std::string& data) {
  ASSERT_TRUE(WriteFile(path, data).ok()) << path;
}

// A tree with one small file among several large ones.
std::string MakeTree(const std::string& root) {
  std::string tree = root + "/tree";
  EXPECT_TRUE(MakeDirs(tree + "/lib", 0755).ok());
  Write(tree + "/hello.txt", "hello from an image\n");
  for (int i = 0; i < 6; ++i) Write(tree + "/lib/big" + std::to_string(i), RandomBytes(700 * 1024, i));
  EXPECT_EQ(symlink("lib/big0", (tree + "/link").c_str()), 0);
  return tree;
}

class MemorySink : public chunks::ChunkSink {
 public:
  Status Put(const Digest& d, std::string_view data) override {
    std::lock_guard lock(mu);
    chunks[d] = std::string(data);
    return Status::Ok();
  }
  std::mutex mu;
  std::map<Digest, std::string> chunks;
};

TEST(ErofsTest, BuildsAreReproducible) {
  std::string root = TempDir();
  std::string tree = MakeTree(root);
  ASSERT_TRUE(BuildErofs(tree, root + "/a.img").ok());
  ASSERT_TRUE(BuildErofs(tree, root + "/b.img").ok());
  std::string a = Slurp(root + "/a.img"), b = Slurp(root + "/b.img");
  EXPECT_EQ(a, b);
  EXPECT_TRUE(CheckErofsSuperblock(a.substr(0, 8192), a.size()).ok());
  RemoveTree(root);
}

TEST(ErofsTest, SuperblockCheckRejectsHostileImages) {
  std::string root = TempDir();
  std::string tree = MakeTree(root);
  ASSERT_TRUE(BuildErofs(tree, root + "/a.img").ok());
  std::string img = Slurp(root + "/a.img");
  EXPECT_FALSE(CheckErofsSuperblock("", 0).ok());
  EXPECT_FALSE(CheckErofsSuperblock(std::string(4096, '\0'), 4096).ok());       // no magic
  EXPECT_FALSE(CheckErofsSuperblock(img.substr(0, 1030), img.size()).ok());     // cut superblock
  EXPECT_FALSE(CheckErofsSuperblock(img.substr(0, 8192), img.size() / 2).ok()); // truncated image
  std::string bad_blocks = img.substr(0, 8192);
  bad_blocks[kErofsSuperblockOffset + kErofsBlockBitsOffset] = 9;               // 512-byte blocks
  EXPECT_FALSE(CheckErofsSuperblock(bad_blocks, img.size()).ok());
  RemoveTree(root);
}

TEST(PackageRootfsTest, ProvidedRootfsFromInstalledPackages) {
  auto recipes = RuntimeRecipes("/nonexistent");
  const RootfsRecipe* provided = nullptr;
  for (const auto& r : recipes)
    if (r.name == "provided") provided = &r;
  ASSERT_NE(provided, nullptr);
  auto resolved = ResolveRecipe(*provided);
  ASSERT_TRUE(resolved.ok()) << resolved.status().message();
  auto again = ResolveRecipe(*provided);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(resolved->key, again->key);
  std::map<std::string, std::string> pkgs(resolved->packages.begin(), resolved->packages.end());
  EXPECT_TRUE(pkgs.count("libc6"));
  EXPECT_TRUE(pkgs.count("dash"));
  EXPECT_FALSE(pkgs.count("dpkg")) << "package management stays out of runtime images";

  std::string root = TempDir();
  std::string tree = root + "/rootfs";
  ASSERT_TRUE(StageRootfs(*provided, *resolved, tree).ok());
  struct stat st;
  EXPECT_EQ(stat((tree + "/usr/bin/dash").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 06000, 0u) << "no set-id bits in images";
  EXPECT_EQ(lstat((tree + "/bin").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "merged /usr: bin -> usr/bin as on the host";
  EXPECT_NE(stat((tree + "/usr/share/doc").c_str(), &st), 0) << "documentation is left out";
  EXPECT_NE(stat((tree + "/etc/shadow").c_str(), &st), 0) << "nothing outside the packages' files";
  RemoveTree(root);
}

// The real thing: FUSE serves the image file chunk by chunk, the kernel mounts erofs from it.
class LazyImageFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = TempDir();
    std::string tree = MakeTree(root_);
    expected_hello_ = Slurp(tree + "/hello.txt");
    expected_big3_ = Slurp(tree + "/lib/big3");
    ASSERT_TRUE(BuildErofs(tree, root_ + "/image.erofs").ok());
    auto m = chunks::ChunkFile(root_ + "/image.erofs", sink_);
    ASSERT_TRUE(m.ok()) << m.status().message();
    manifest_ = *m;
    ASSERT_GT(manifest_.chunks.size(), 6u);
    ASSERT_TRUE(MakeDirs(root_ + "/fuse", 0755).ok());
    ASSERT_TRUE(MakeDirs(root_ + "/mnt", 0755).ok());
    auto fs = LazyImageFs::Mount(root_ + "/fuse", [this](const ChunkRef& ref) -> Result<std::shared_ptr<const std::string>> {
      ++reads_;
      if (fail_) return Status::Error("chunk server http://127.0.0.1:1: connection refused");
      std::lock_guard lock(sink_.mu);
      auto it = sink_.chunks.find(ref.digest);
      if (it == sink_.chunks.end()) return Status::Error("missing chunk");
      return std::make_shared<const std::string>(it->second);
    });
    ASSERT_TRUE(fs.ok()) << fs.status().message();
    fs_ = std::move(fs).value();
  }
  void TearDown() override {
    umount2((root_ + "/mnt").c_str(), MNT_DETACH);
    fs_.reset();
    RemoveTree(root_);
  }

  std::string root_, expected_hello_, expected_big3_;
  MemorySink sink_;
  Manifest manifest_;
  std::unique_ptr<LazyImageFs> fs_;
  std::atomic<int> reads_{0};
  std::atomic<bool> fail_{false};
};

TEST_F(LazyImageFsTest, StartReadsOnlyTheChunksItTouches) {
  std::string file = fs_->Add(manifest_);
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), manifest_.size);
  EXPECT_EQ(st.st_mode & 0777, 0444u);
  EXPECT_LT(open(file.c_str(), O_WRONLY), 0) << "image files are read-only";

  ASSERT_EQ(mount(file.c_str(), (root_ + "/mnt").c_str(), "erofs", MS_RDONLY | MS_NOSUID | MS_NODEV, nullptr), 0)
      << strerror(errno);
  EXPECT_EQ(Slurp(root_ + "/mnt/hello.txt"), expected_hello_);
  ImageReadStats small = fs_->Stats(manifest_.Id());
  EXPECT_LE(small.chunks_touched, 2u) << "superblock, metadata and one small file";
  EXPECT_LT(small.bytes_touched, manifest_.size / 2);

  EXPECT_EQ(Slurp(root_ + "/mnt/lib/big3"), expected_big3_);
  ImageReadStats more = fs_->Stats(manifest_.Id());
  EXPECT_GT(more.chunks_touched, small.chunks_touched);
  EXPECT_LT(more.chunks_touched, manifest_.chunks.size()) << "the other big files were never read";

  auto order = fs_->FirstReads(manifest_.Id());
  EXPECT_EQ(order.size(), more.chunks_touched);
  EXPECT_EQ(order.front(), 0u) << "the superblock is read first";

  // Reading again comes from the erofs page cache, not from the chunk reader.
  int before = reads_;
  EXPECT_EQ(Slurp(root_ + "/mnt/lib/big3"), expected_big3_);
  EXPECT_EQ(reads_, before);
}

TEST_F(LazyImageFsTest, UnreadableChunkFailsTheReadWithEio) {
  std::string file = fs_->Add(manifest_);
  ASSERT_EQ(mount(file.c_str(), (root_ + "/mnt").c_str(), "erofs", MS_RDONLY, nullptr), 0) << strerror(errno);
  fail_ = true;
  int fd = open((root_ + "/mnt/lib/big5").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[4096];
  errno = 0;
  EXPECT_LT(read(fd, buf, sizeof buf), 0);
  EXPECT_EQ(errno, EIO);
  close(fd);
  EXPECT_NE(fs_->LastError(manifest_.Id()).find("connection refused"), std::string::npos);
  EXPECT_GT(fs_->Stats(manifest_.Id()).errors, 0u);
}

TEST_F(LazyImageFsTest, RemovedImagesDisappear) {
  std::string file = fs_->Add(manifest_);
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  fs_->Remove(manifest_.Id());
  EXPECT_NE(stat(file.c_str(), &st), 0);
  EXPECT_NE(stat((root_ + "/fuse/not-an-image").c_str(), &st), 0);
}

}  // namespace
}  // namespace kindling::images

namespace kindling::images {
namespace {

TEST(StartLayoutTest, LaysOutHotBlocksFirstAndParsesBack) {
  std::string image = RandomBytes(64 * kLayoutBlock, 11);
  uint32_t hot = 0;
  auto stored = LayOutForStart(image, {40, 3, 40, 999, 7}, &hot);
  ASSERT_TRUE(stored.ok()) << stored.status().message();
  EXPECT_EQ(hot, 3u) << "duplicates and out-of-range blocks are ignored";
  auto layout = ParseLayoutHeader(*stored, stored->size());
  ASSERT_TRUE(layout.ok()) << layout.status().message();
  EXPECT_EQ(layout->hot_blocks, 3u);
  EXPECT_EQ(layout->stored_block_of[40], 0u);
  EXPECT_EQ(layout->stored_block_of[3], 1u);
  EXPECT_EQ(layout->stored_block_of[7], 2u);
  for (uint32_t b = 0; b < 64; ++b)
    EXPECT_EQ(stored->substr(layout->header_bytes + uint64_t(layout->stored_block_of[b]) * kLayoutBlock, kLayoutBlock),
              image.substr(uint64_t(b) * kLayoutBlock, kLayoutBlock));
  EXPECT_FALSE(HasLayoutHeader(std::string(4096, '\0'))) << "a plain erofs image starts with zeros";
}

TEST(StartLayoutTest, HostileHeadersAreRejected) {
  std::string image = RandomBytes(16 * kLayoutBlock, 12);
  uint32_t hot = 0;
  std::string stored = LayOutForStart(image, {1, 2}, &hot).value();
  EXPECT_FALSE(ParseLayoutHeader(stored, stored.size() - 1).ok()) << "size mismatch";
  EXPECT_FALSE(ParseLayoutHeader(stored.substr(0, 30), stored.size()).ok()) << "truncated map";
  std::string dup = stored;
  memcpy(dup.data() + 24, dup.data() + 28, 4);  // two blocks at one stored place
  EXPECT_FALSE(ParseLayoutHeader(dup, dup.size()).ok());
  std::string big = stored;
  big[16] = static_cast<char>(0xff);  // block count
  EXPECT_FALSE(ParseLayoutHeader(big, big.size()).ok());
  std::string hot_over = stored;
  hot_over[20] = 100;  // more hot blocks than blocks
  EXPECT_FALSE(ParseLayoutHeader(hot_over, hot_over.size()).ok());
  EXPECT_FALSE(LayOutForStart(image.substr(1), {}, &hot).ok()) << "not whole blocks";
}

// A laid-out image reads back exactly as the plain one, and a start that reads what was recorded
// touches only the first chunks.
TEST_F(LazyImageFsTest, LaidOutImageReadsTheSameAndKeepsTheStartTogether) {
  std::string plain = Slurp(root_ + "/image.erofs");
  std::string file = fs_->Add(manifest_);
  ASSERT_EQ(mount(file.c_str(), (root_ + "/mnt").c_str(), "erofs", MS_RDONLY, nullptr), 0) << strerror(errno);
  EXPECT_EQ(Slurp(root_ + "/mnt/hello.txt"), expected_hello_);
  EXPECT_EQ(Slurp(root_ + "/mnt/lib/big3"), expected_big3_);
  auto blocks = fs_->FirstReadBlocks(manifest_.Id());
  ASSERT_FALSE(blocks.empty());
  ASSERT_EQ(umount2((root_ + "/mnt").c_str(), 0), 0);

  uint32_t hot = 0;
  std::string stored = LayOutForStart(plain, blocks, &hot).value();
  Write(root_ + "/stored", stored);
  auto m = chunks::ChunkFile(root_ + "/stored", sink_);
  ASSERT_TRUE(m.ok());
  auto layout = ParseLayoutHeader(stored, stored.size());
  ASSERT_TRUE(layout.ok());
  uint64_t hot_end = layout->header_bytes + uint64_t(hot) * kLayoutBlock;
  std::string laid = fs_->Add(*m, *layout);
  struct stat st;
  ASSERT_EQ(stat(laid.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), plain.size()) << "the file shows the plain image";
  EXPECT_EQ(Slurp(laid), plain);
  fs_->Remove(m->Id());
  laid = fs_->Add(*m, *layout);  // fresh statistics
  ASSERT_EQ(mount(laid.c_str(), (root_ + "/mnt").c_str(), "erofs", MS_RDONLY, nullptr), 0) << strerror(errno);
  EXPECT_EQ(Slurp(root_ + "/mnt/hello.txt"), expected_hello_);
  EXPECT_EQ(Slurp(root_ + "/mnt/lib/big3"), expected_big3_);
  for (uint32_t c : fs_->FirstReads(m->Id())) EXPECT_LT(uint64_t(c) * chunks::kChunkSize, hot_end) << c;
}

}  // namespace
}  // namespace kindling::images
