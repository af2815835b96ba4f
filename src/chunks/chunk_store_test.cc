#include "chunks/chunk_store.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <random>

#include "common/files.h"

namespace kindling::chunks {

// Random (incompressible) bytes, deterministic per seed.
std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

class ChunkStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kindling-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { RemoveTree(root_); }
  std::string PathOf(const Digest& d) { return root_ + "/s/" + d.Hex().substr(0, 2) + "/" + d.Hex(); }
  std::string root_;
};

TEST_F(ChunkStoreTest, PutGetIdempotentRemoveList) {
  auto store = ChunkStore::Open(root_ + "/s");
  ASSERT_TRUE(store.ok()) << store.status().message();
  struct stat st;
  ASSERT_EQ(stat((root_ + "/s").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::string a = RandomBytes(1000, 1), b = RandomBytes(kChunkSize, 2);
  Digest da = Sha256Of(a), db = Sha256Of(b);
  ASSERT_TRUE((*store)->Put(da, a).ok());
  ASSERT_TRUE((*store)->Put(da, a).ok());  // idempotent
  ASSERT_TRUE((*store)->Put(db, b).ok());
  EXPECT_EQ((*store)->StoredChunks(), 2u);
  EXPECT_EQ((*store)->StoredBytes(), 1000 + kChunkSize + 2 * kChunkHeaderSize);
  auto got = (*store)->Get(da);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, a);
  EXPECT_TRUE((*store)->Has(db));
  EXPECT_EQ((*store)->List().size(), 2u);
  ASSERT_TRUE((*store)->Remove(db).ok());
  ASSERT_TRUE((*store)->Remove(db).ok());  // absent is fine
  EXPECT_FALSE((*store)->Has(db));
  auto missing = (*store)->Get(db);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_EQ((*store)->StoredChunks(), 1u);
  EXPECT_EQ((*store)->StoredBytes(), 1000 + kChunkHeaderSize);
  // The empty chunk is a valid chunk too.
  ASSERT_TRUE((*store)->Put(Sha256Of(""), "").ok());
  auto empty = (*store)->Get(Sha256Of(""));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, "");
}

TEST_F(ChunkStoreTest, PutVerifiesDigestAndSize) {
  auto store = ChunkStore::Open(root_ + "/s");
  ASSERT_TRUE(store.ok());
  Status s = (*store)->Put(Sha256Of("other"), "data");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kCorrupt);
  EXPECT_TRUE((*store)->List().empty());
  std::string big(kChunkSize + 1, 'x');
  EXPECT_FALSE((*store)->Put(Sha256Of(big), big).ok());
  EXPECT_EQ((*store)->StoredBytes(), 0u);
}

TEST_F(ChunkStoreTest, CompressesOnlyWhenItSaves) {
  auto store = ChunkStore::Open(root_ + "/s");
  ASSERT_TRUE(store.ok());
  std::string zeros(kChunkSize, '\0'), noise = RandomBytes(kChunkSize, 3);
  ASSERT_TRUE((*store)->Put(Sha256Of(zeros), zeros).ok());
  ASSERT_TRUE((*store)->Put(Sha256Of(noise), noise).ok());
  EXPECT_LT((*store)->FileBytes(Sha256Of(zeros)).value(), 1000u);
  EXPECT_EQ((*store)->FileBytes(Sha256Of(noise)).value(), kChunkSize + kChunkHeaderSize);  // stored raw
  EXPECT_EQ((*store)->Get(Sha256Of(zeros)).value(), zeros);
  EXPECT_EQ((*store)->Get(Sha256Of(noise)).value(), noise);
  auto raw = ChunkStore::Open(root_ + "/raw", {.compress = false});
  ASSERT_TRUE(raw.ok());
  ASSERT_TRUE((*raw)->Put(Sha256Of(zeros), zeros).ok());
  EXPECT_EQ((*raw)->FileBytes(Sha256Of(zeros)).value(), kChunkSize + kChunkHeaderSize);
}

// Every kind of damage to a stored file is detected, the file deleted, and ChunkCorrupt returned.
TEST_F(ChunkStoreTest, CorruptFilesAreDiscardedNeverReturned) {
  auto store = ChunkStore::Open(root_ + "/s");
  ASSERT_TRUE(store.ok());
  std::string text(kChunkSize, 'k');  // compressible: zstd payload
  std::string noise = RandomBytes(5000, 4);  // raw payload
  struct Damage {
    const char* name;
    std::string data;
    std::function<void(std::string&)> damage;
  };
  std::vector<Damage> cases = {
      {"flipped raw byte", noise, [](std::string& f) { f[kChunkHeaderSize + 10] ^= 1; }},
      {"flipped zstd byte", text, [](std::string& f) { f[f.size() - 3] ^= 0x55; }},
      {"truncated raw", noise, [](std::string& f) { f.resize(f.size() - 1); }},
      {"truncated zstd", text, [](std::string& f) { f.resize(f.size() - 4); }},
      {"empty file", noise, [](std::string& f) { f.clear(); }},
      {"bad magic", noise, [](std::string& f) { f[0] = 'X'; }},
      {"unknown format", noise, [](std::string& f) { f[4] = 7; }},
      {"length over chunk size", noise, [](std::string& f) { f[11] = 0x10; }},
      {"length lies", noise, [](std::string& f) { f[8] ^= 1; }},
      {"raw claimed as zstd", noise, [](std::string& f) { f[4] = kFormatZstd; }},
  };
  for (auto& c : cases) {
    Digest d = Sha256Of(c.data);
    ASSERT_TRUE((*store)->Put(d, c.data).ok()) << c.name;
    std::string file;
    ASSERT_TRUE(ReadFile(PathOf(d), &file).ok()) << c.name;
    c.damage(file);
    ASSERT_TRUE(WriteFile(PathOf(d), file).ok());
    auto got = (*store)->Get(d);
    EXPECT_FALSE(got.ok()) << c.name;
    EXPECT_EQ(got.status().code(), StatusCode::kCorrupt) << c.name;
    EXPECT_FALSE((*store)->Has(d)) << c.name << ": the corrupt file was not deleted";
    // The chunk can be stored again.
    ASSERT_TRUE((*store)->Put(d, c.data).ok()) << c.name;
    EXPECT_EQ((*store)->Get(d).value(), c.data) << c.name;
    ASSERT_TRUE((*store)->Remove(d).ok());
  }
  EXPECT_EQ((*store)->StoredChunks(), 0u);
}

TEST_F(ChunkStoreTest, OpenRemovesTemporariesCountsChunksAndLocks) {
  std::string a = RandomBytes(100, 5);
  {
    auto store = ChunkStore::Open(root_ + "/s");
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Put(Sha256Of(a), a).ok());
    auto again = ChunkStore::Open(root_ + "/s");
    EXPECT_FALSE(again.ok());  // one store per directory
    std::string shard = root_ + "/s/" + Sha256Of(a).Hex().substr(0, 2);
    ASSERT_TRUE(WriteFile(shard + "/.tmp-" + Sha256Of(a).Hex() + "-1-1", "partial").ok());
  }
  auto store = ChunkStore::Open(root_ + "/s");
  ASSERT_TRUE(store.ok()) << store.status().message();
  EXPECT_EQ((*store)->StoredChunks(), 1u);
  EXPECT_EQ((*store)->StoredBytes(), 100 + kChunkHeaderSize);
  std::string shard = root_ + "/s/" + Sha256Of(a).Hex().substr(0, 2);
  EXPECT_NE(access((shard + "/.tmp-" + Sha256Of(a).Hex() + "-1-1").c_str(), F_OK), 0);
  EXPECT_EQ((*store)->Get(Sha256Of(a)).value(), a);
}

TEST_F(ChunkStoreTest, TouchAndAge) {
  auto store = ChunkStore::Open(root_ + "/s");
  ASSERT_TRUE(store.ok());
  Digest d = Sha256Of("aged");
  ASSERT_TRUE((*store)->Put(d, "aged").ok());
  struct timespec old[2] = {{time(nullptr) - 1000, 0}, {time(nullptr) - 1000, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, PathOf(d).c_str(), old, 0), 0);
  EXPECT_GT((*store)->AgeSeconds(d).value(), 999.0);
  ASSERT_TRUE((*store)->Touch(d).ok());
  EXPECT_LT((*store)->AgeSeconds(d).value(), 10.0);
  EXPECT_EQ((*store)->Touch(Sha256Of("absent")).code(), StatusCode::kNotFound);
}

}  // namespace kindling::chunks
