#include "common/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

namespace kindling {

TEST(Files, WriteReadMakeDirsRemoveTree) {
  char tmpl[] = "/tmp/kindling-files-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string root = tmpl;
  ASSERT_TRUE(MakeDirs(root + "/a/b/c").ok());
  ASSERT_TRUE(WriteFile(root + "/a/b/c/f", "hello").ok());
  std::string got;
  ASSERT_TRUE(ReadFile(root + "/a/b/c/f", &got).ok());
  EXPECT_EQ(got, "hello");
  ASSERT_EQ(symlink("/etc", (root + "/a/link").c_str()), 0);
  ASSERT_TRUE(RemoveTree(root).ok());
  struct stat st;
  EXPECT_NE(stat(root.c_str(), &st), 0);
  EXPECT_EQ(stat("/etc/hostname", &st), 0);  // the symlink's target was not followed
}

TEST(Files, ErrorsCarryErrno) {
  std::string got;
  Status s = ReadFile("/nonexistent/kindling", &got);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ENOENT);
}

}  // namespace kindling
