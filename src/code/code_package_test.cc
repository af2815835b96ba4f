#include "code/code_package.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <vector>

#include "common/files.h"

namespace kindling {
namespace {

struct Entry {
  std::string name;
  std::string data;
  mode_t mode = S_IFREG | 0644;
};

// Builds a zip archive in memory with libzip.
std::string MakeZip(const std::string& dir, const std::vector<Entry>& entries) {
  std::string path = dir + "/build.zip";
  int err = 0;
  zip_t* za = zip_open(path.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &err);
  EXPECT_NE(za, nullptr);
  for (const Entry& e : entries) {
    zip_source_t* src = zip_source_buffer(za, e.data.data(), e.data.size(), 0);
    zip_int64_t idx = zip_file_add(za, e.name.c_str(), src, ZIP_FL_ENC_UTF_8);
    EXPECT_GE(idx, 0) << e.name;
    zip_file_set_external_attributes(za, idx, 0, ZIP_OPSYS_UNIX, static_cast<zip_uint32_t>(e.mode) << 16);
  }
  EXPECT_EQ(zip_close(za), 0);
  std::string data;
  EXPECT_TRUE(ReadFile(path, &data).ok());
  unlink(path.c_str());
  return data;
}

class CodePackageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kindling-code-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { RemoveTree(dir_); }
  std::string dir_;
};

TEST_F(CodePackageTest, ExtractsFilesModesAndInnerSymlinks) {
  std::string zip = MakeZip(dir_, {{"bootstrap", "#!/bin/sh\n", S_IFREG | 0755},
                                   {"lib/util.py", "x = 1\n"},
                                   {"lib/link.py", "util.py", S_IFLNK | 0777}});
  auto pkg = ExtractCodePackage(zip, dir_ + "/code");
  ASSERT_TRUE(pkg.ok()) << pkg.status().message();
  EXPECT_EQ(pkg->zip_size, static_cast<int64_t>(zip.size()));
  EXPECT_TRUE(PackageHasExecutable(pkg->dir, "bootstrap"));
  EXPECT_FALSE(PackageHasExecutable(pkg->dir, "lib/util.py"));
  std::string got;
  ASSERT_TRUE(ReadFile(pkg->dir + "/lib/link.py", &got).ok());
  EXPECT_EQ(got, "x = 1\n");
  ASSERT_TRUE(ReadFile(pkg->dir + ".zip", &got).ok());
  EXPECT_EQ(got, zip);
  // Same bytes again: the existing directory is reused.
  auto again = ExtractCodePackage(zip, dir_ + "/code");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->dir, pkg->dir);
}

TEST_F(CodePackageTest, RejectsHostileArchives) {
  std::vector<std::vector<Entry>> hostile = {
      {{"../evil", "x"}},
      {{"a/../../evil", "x"}},
      {{"/etc/evil", "x"}},
      {{"link", "/etc/shadow", S_IFLNK | 0777}},
      {{"a/link", "../../outside", S_IFLNK | 0777}},
      {{"a", "file"}, {"a/b", "a file used as a directory"}},
  };
  for (const auto& entries : hostile) {
    auto pkg = ExtractCodePackage(MakeZip(dir_, entries), dir_ + "/code");
    EXPECT_FALSE(pkg.ok()) << entries[0].name;
    if (!pkg.ok()) {
      EXPECT_EQ(pkg.status().err(), 0) << pkg.status().message();  // a user error, not a system one
    }
  }
  struct stat st;
  EXPECT_NE(stat((dir_ + "/evil").c_str(), &st), 0);
}

TEST_F(CodePackageTest, RejectsCorruptAndBombs) {
  EXPECT_FALSE(ExtractCodePackage("this is not a zip", dir_ + "/code").ok());
  std::string zip = MakeZip(dir_, {{"a", "hello"}});
  std::string truncated = zip.substr(0, zip.size() / 2);
  EXPECT_FALSE(ExtractCodePackage(truncated, dir_ + "/code").ok());
  // 64 MiB of zeros compresses to ~64 KiB; the limit counts bytes actually inflated.
  std::string zeros(64 << 20, '\0');
  std::string bomb = MakeZip(dir_, {{"zeros", zeros}});
  EXPECT_LT(bomb.size(), 1u << 20);
  CodeLimits limits;
  limits.max_unzipped_bytes = 16 << 20;
  auto pkg = ExtractCodePackage(bomb, dir_ + "/code", limits);
  ASSERT_FALSE(pkg.ok());
  EXPECT_NE(pkg.status().message().find("Unzipped size"), std::string::npos);
  // Nothing half-extracted is left behind.
  std::string listing;
  EXPECT_EQ(system(("test -z \"$(ls -A " + dir_ + "/code)\"").c_str()), 0);
}

}  // namespace
}  // namespace kindling

namespace kindling {
namespace {

TEST_F(CodePackageTest, RemovesOnlyUnusedPackages) {
  auto keep = ExtractCodePackage(MakeZip(dir_, {{"a", "keep"}}), dir_ + "/code");
  auto drop = ExtractCodePackage(MakeZip(dir_, {{"a", "drop"}}), dir_ + "/code");
  ASSERT_TRUE(keep.ok() && drop.ok());
  ASSERT_TRUE(MakeDirs(dir_ + "/code/.tmp-interrupted").ok());
  ASSERT_TRUE(RemoveUnusedPackages(dir_ + "/code", {keep->digest_hex}).ok());
  struct stat st;
  EXPECT_EQ(stat(keep->dir.c_str(), &st), 0);
  EXPECT_EQ(stat((keep->dir + ".zip").c_str(), &st), 0);
  EXPECT_NE(stat(drop->dir.c_str(), &st), 0);
  EXPECT_NE(stat((drop->dir + ".zip").c_str(), &st), 0);
  EXPECT_NE(stat((dir_ + "/code/.tmp-interrupted").c_str(), &st), 0);
}

}  // namespace
}  // namespace kindling
