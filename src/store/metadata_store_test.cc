#include "store/metadata_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/files.h"
#include "store/function_registry.h"

namespace kindling {

class MetadataStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kindling-store-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { RemoveTree(dir_); }
  FunctionConfig Fn(const std::string& name) {
    FunctionConfig fn;
    fn.name = name;
    fn.runtime = "provided.al2023";
    fn.code_digest = "d-" + name;
    return fn;
  }
  std::string dir_;
};

TEST_F(MetadataStoreTest, PersistsAcrossReopen) {
  {
    auto store = MetadataStore::Open(dir_ + "/m.db");
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Put(Fn("a")).ok());
    auto inserted = (*store)->Insert(Fn("a"));
    ASSERT_TRUE(inserted.ok());
    EXPECT_FALSE(*inserted);  // exists already
  }
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  auto got = (*store)->Get("a", "$LATEST");
  ASSERT_TRUE(got.ok());
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->code_digest, "d-a");
  auto missing = (*store)->Get("b", "$LATEST");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());
}

TEST_F(MetadataStoreTest, DatabaseFilesAreOwnerOnly) {
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  FunctionConfig fn = Fn("secret");
  fn.environment = {{"TOKEN", "s3cr3t"}};
  ASSERT_TRUE((*store)->Put(fn).ok());
  for (const char* f : {"/m.db", "/m.db-wal"}) {
    struct stat st;
    ASSERT_EQ(stat((dir_ + f).c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 0077, 0u) << f;
  }
}

TEST_F(MetadataStoreTest, ListPagesInNameOrder) {
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  for (const char* n : {"c", "a", "b", "d"}) ASSERT_TRUE((*store)->Put(Fn(n)).ok());
  auto page = (*store)->List("$LATEST", "", 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].name, "a");
  EXPECT_EQ((*page)[1].name, "b");
  page = (*store)->List("$LATEST", "b", 10);
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].name, "c");
  auto digests = (*store)->CodeDigestsInUse();
  ASSERT_TRUE(digests.ok());
  EXPECT_EQ(digests->size(), 4u);
}

TEST_F(MetadataStoreTest, RegistryCachesAndWritesThrough) {
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  FunctionRegistry registry(std::move(store).value());
  EXPECT_EQ(registry.Find("a", "$LATEST"), nullptr);
  auto inserted = registry.Insert(Fn("a"));
  ASSERT_TRUE(inserted.ok() && *inserted);
  ASSERT_NE(registry.Find("a", "$LATEST"), nullptr);
  ASSERT_TRUE(registry.Delete("a").ok());
  EXPECT_EQ(registry.Find("a", "$LATEST"), nullptr);
  auto direct = registry.store().Get("a", "$LATEST");
  EXPECT_FALSE(direct->has_value());
}

TEST_F(MetadataStoreTest, CorruptRecordIsAnErrorNotACrash) {
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Put(Fn("a")).ok());
  store = Result<std::unique_ptr<MetadataStore>>(Status::Error("closed"));
  ASSERT_EQ(system(("sqlite3 " + dir_ + "/m.db \"UPDATE functions SET doc='{bad'\"").c_str()), 0);
  auto reopened = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(reopened.ok());
  EXPECT_FALSE((*reopened)->Get("a", "$LATEST").ok());
}

}  // namespace kindling
