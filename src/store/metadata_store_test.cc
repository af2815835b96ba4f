#include "store/metadata_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/files.h"
#include "common/function_json.h"
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

TEST_F(MetadataStoreTest, VersionNumbersAreNeverReused) {
  {
    auto store = MetadataStore::Open(dir_ + "/m.db");
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Put(Fn("a")).ok());
    auto v1 = (*store)->PublishVersion(Fn("a"));
    ASSERT_TRUE(v1.ok());
    EXPECT_EQ(v1->version, "1");
    auto v2 = (*store)->PublishVersion(Fn("a"));
    ASSERT_TRUE(v2.ok());
    EXPECT_EQ(v2->version, "2");
    auto other = (*store)->PublishVersion(Fn("b"));  // numbers are per function
    ASSERT_TRUE(other.ok());
    EXPECT_EQ(other->version, "1");
    auto deleted = (*store)->DeleteVersion("a", "2");
    ASSERT_TRUE(deleted.ok() && *deleted);
    deleted = (*store)->DeleteVersion("a", "2");
    ASSERT_TRUE(deleted.ok());
    EXPECT_FALSE(*deleted);
    deleted = (*store)->DeleteVersion("a", "$LATEST");  // never through this call
    ASSERT_TRUE(deleted.ok());
    EXPECT_FALSE(*deleted);
  }
  auto store = MetadataStore::Open(dir_ + "/m.db");  // the counter is durable
  ASSERT_TRUE(store.ok());
  auto v3 = (*store)->PublishVersion(Fn("a"));
  ASSERT_TRUE(v3.ok());
  EXPECT_EQ(v3->version, "3");
  auto latest = (*store)->LatestPublished("a");
  ASSERT_TRUE(latest.ok() && latest->has_value());
  EXPECT_EQ((*latest)->version, "3");
  // Deleting the function resets the numbering, as a new function starts at 1.
  ASSERT_TRUE((*store)->DeleteFunction("a").ok());
  ASSERT_TRUE((*store)->Put(Fn("a")).ok());
  auto again = (*store)->PublishVersion(Fn("a"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->version, "1");
}

TEST_F(MetadataStoreTest, ListVersionsLatestFirstThenByNumber) {
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->Put(Fn("a")).ok());
  for (int i = 0; i < 11; ++i) ASSERT_TRUE((*store)->PublishVersion(Fn("a")).ok());
  auto page = (*store)->ListVersions("a", "", 3);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 3u);
  EXPECT_EQ((*page)[0].version, "$LATEST");
  EXPECT_EQ((*page)[1].version, "1");
  EXPECT_EQ((*page)[2].version, "2");
  page = (*store)->ListVersions("a", "9", 10);  // numeric order: 10 after 9, not after 1
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].version, "10");
  EXPECT_EQ((*page)[1].version, "11");
  auto none = (*store)->ListVersions("missing", "", 10);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_F(MetadataStoreTest, AliasesPersistAndGoWithTheFunction) {
  AliasConfig live{"a", "live", "1", "prod", "2", 0.25, "rev-1"};
  {
    auto store = MetadataStore::Open(dir_ + "/m.db");
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Put(Fn("a")).ok());
    auto inserted = (*store)->InsertAlias(live);
    ASSERT_TRUE(inserted.ok() && *inserted);
    inserted = (*store)->InsertAlias(live);
    ASSERT_TRUE(inserted.ok());
    EXPECT_FALSE(*inserted);  // duplicate
    ASSERT_TRUE((*store)->InsertAlias({"a", "beta", "$LATEST", "", "", 0, "rev-2"}).ok());
    ASSERT_TRUE((*store)->InsertAlias({"b", "live", "1", "", "", 0, "rev-3"}).ok());
  }
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  auto got = (*store)->GetAlias("a", "live");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->function_version, "1");
  EXPECT_EQ((*got)->additional_version, "2");
  EXPECT_DOUBLE_EQ((*got)->additional_weight, 0.25);
  EXPECT_EQ((*got)->description, "prod");
  auto list = (*store)->ListAliases("a", "", 10);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].name, "beta");
  EXPECT_TRUE((*list)[0].additional_version.empty());
  list = (*store)->ListAliases("a", "beta", 10);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].name, "live");
  ASSERT_TRUE((*store)->DeleteFunction("a").ok());
  EXPECT_FALSE((*store)->GetAlias("a", "live")->has_value());
  EXPECT_TRUE((*store)->GetAlias("b", "live")->has_value());  // other functions keep theirs
  auto deleted = (*store)->DeleteAlias("b", "live");
  ASSERT_TRUE(deleted.ok() && *deleted);
  EXPECT_FALSE((*store)->GetAlias("b", "live")->has_value());
}

TEST_F(MetadataStoreTest, OpensADatabaseFromBeforeVersions) {
  // A metadata.db written before the versions and aliases tables existed.
  std::string path = dir_ + "/old.db";
  std::string doc = ToStored(Fn("old")).dump();
  std::string quoted;
  for (char c : doc) quoted += c == '\'' ? std::string("''") : std::string(1, c);
  std::string sql = "CREATE TABLE functions (name TEXT NOT NULL, version TEXT NOT NULL, doc TEXT NOT NULL,"
                    " PRIMARY KEY (name, version)); INSERT INTO functions VALUES ('old', '$LATEST', '" + quoted + "');";
  ASSERT_TRUE(WriteFile(dir_ + "/old.sql", sql).ok());
  ASSERT_EQ(system(("sqlite3 " + path + " < " + dir_ + "/old.sql").c_str()), 0);
  auto store = MetadataStore::Open(path);
  ASSERT_TRUE(store.ok());
  auto got = (*store)->Get("old", "$LATEST");
  ASSERT_TRUE(got.ok() && got->has_value());
  auto v1 = (*store)->PublishVersion(**got);
  ASSERT_TRUE(v1.ok());
  EXPECT_EQ(v1->version, "1");
  EXPECT_TRUE((*store)->ListAliases("old", "", 10)->empty());
}

TEST_F(MetadataStoreTest, RegistryKeepsVersionsAndAliasesCoherent) {
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  FunctionRegistry registry(std::move(store).value());
  ASSERT_TRUE(registry.Insert(Fn("a")).ok());
  EXPECT_EQ(registry.Find("a", "1"), nullptr);  // cached as absent...
  auto v1 = registry.PublishVersion(*registry.Find("a", "$LATEST"));
  ASSERT_TRUE(v1.ok());
  const FunctionConfig* found = registry.Find("a", "1");  // ...and present once published
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->version, "1");

  EXPECT_EQ(registry.FindAlias("a", "live"), nullptr);
  ASSERT_TRUE(registry.InsertAlias({"a", "live", "1", "", "", 0, "r1"}).ok());
  ASSERT_NE(registry.FindAlias("a", "live"), nullptr);
  ASSERT_TRUE(registry.PutAlias({"a", "live", "$LATEST", "", "", 0, "r2"}).ok());
  EXPECT_EQ(registry.FindAlias("a", "live")->function_version, "$LATEST");
  EXPECT_EQ(registry.store().GetAlias("a", "live").value()->revision_id, "r2");

  auto deleted = registry.DeleteVersion("a", "1");
  ASSERT_TRUE(deleted.ok() && *deleted);
  EXPECT_EQ(registry.Find("a", "1"), nullptr);
  ASSERT_TRUE(registry.DeleteAlias("a", "live").ok());
  EXPECT_EQ(registry.FindAlias("a", "live"), nullptr);

  ASSERT_TRUE(registry.InsertAlias({"a", "other", "$LATEST", "", "", 0, "r3"}).ok());
  ASSERT_NE(registry.FindAlias("a", "other"), nullptr);
  ASSERT_TRUE(registry.Delete("a").ok());
  EXPECT_EQ(registry.FindAlias("a", "other"), nullptr);
  EXPECT_EQ(registry.Find("a", "$LATEST"), nullptr);
}

}  // namespace kindling

namespace kindling {

TEST_F(MetadataStoreTest, ProvisionedConfigsPersistAndGoWithTheFunction) {
  {
    auto store = MetadataStore::Open(dir_ + "/m.db");
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Put(Fn("f")).ok());
    ASSERT_TRUE((*store)->PutProvisioned({"f", "1", "t0", 2}).ok());
    ASSERT_TRUE((*store)->PutProvisioned({"f", "live", "t1", 3}).ok());
    ASSERT_TRUE((*store)->PutProvisioned({"g", "1", "t2", 1}).ok());
    ASSERT_TRUE((*store)->PutProvisioned({"f", "1", "t3", 4}).ok());  // replaces
  }
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  auto f = (*store)->ListProvisioned("f");
  ASSERT_TRUE(f.ok());
  ASSERT_EQ(f->size(), 2u);
  EXPECT_EQ((*f)[0].qualifier, "1");
  EXPECT_EQ((*f)[0].requested, 4);
  EXPECT_EQ((*f)[0].last_modified, "t3");
  EXPECT_EQ((*store)->ListProvisioned("")->size(), 3u);
  auto deleted = (*store)->DeleteProvisioned("f", "live");
  ASSERT_TRUE(deleted.ok() && *deleted);
  EXPECT_FALSE((*store)->DeleteProvisioned("f", "live").value());
  ASSERT_TRUE((*store)->DeleteFunction("f").ok());
  EXPECT_TRUE((*store)->ListProvisioned("f")->empty());
  EXPECT_EQ((*store)->ListProvisioned("")->size(), 1u);
}

}  // namespace kindling

namespace kindling {

TEST_F(MetadataStoreTest, ListAllVersionsPagesByNameThenVersion) {
  auto store = MetadataStore::Open(dir_ + "/m.db");
  ASSERT_TRUE(store.ok());
  for (const char* n : {"b", "a"}) {
    ASSERT_TRUE((*store)->Put(Fn(n)).ok());
    for (int i = 0; i < 2; ++i) ASSERT_TRUE((*store)->PublishVersion(Fn(n)).ok());
  }
  std::vector<std::string> seen;
  std::string after_name, after_version;
  for (int pages = 0; pages < 10; ++pages) {
    auto page = (*store)->ListAllVersions(after_name, after_version, 4);
    ASSERT_TRUE(page.ok());
    if (page->empty()) break;
    for (const auto& fn : *page) seen.push_back(fn.name + ":" + fn.version);
    after_name = page->back().name;
    after_version = page->back().version;
  }
  EXPECT_EQ(seen, (std::vector<std::string>{"a:$LATEST", "a:1", "a:2", "b:$LATEST", "b:1", "b:2"}));
}

}  // namespace kindling
