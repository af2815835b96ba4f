// Frontend::Resolve: how a FunctionName + qualifier becomes the function version that runs.
#include <gtest/gtest.h>
#include <unistd.h>

#include "common/files.h"
#include "frontend/frontend.h"

namespace kindling {

class ResolveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kindling-resolve-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = MetadataStore::Open(dir_ + "/m.db");
    ASSERT_TRUE(store.ok());
    registry_ = std::make_unique<FunctionRegistry>(std::move(store).value());
    assignment_ = std::make_unique<AssignmentService>(io_, workers_, AssignmentOptions{});
    frontend_ = std::make_unique<Frontend>(*registry_, counting_, *assignment_, workers_, metrics_, ArnContext{});
    FunctionConfig fn;
    fn.name = "f";
    fn.runtime = "provided.al2023";
    fn.code_digest = "d1";
    ASSERT_TRUE(registry_->Insert(fn).ok());
    ASSERT_TRUE(registry_->PublishVersion(fn).ok());  // 1
    fn.code_digest = "d2";
    ASSERT_TRUE(registry_->Put(fn).ok());
    ASSERT_TRUE(registry_->PublishVersion(fn).ok());  // 2
  }
  void TearDown() override { RemoveTree(dir_); }

  std::string Version(const std::string& text, Frontend::AliasRouting routing = Frontend::AliasRouting::kRouted) {
    FunctionRef ref;
    EXPECT_FALSE(ParseFunctionRef(text, "", &ref));
    auto got = frontend_->Resolve(ref, routing);
    if (auto* e = std::get_if<ApiError>(&got)) return e->type + ": " + e->message;
    return std::get<FunctionConfig>(got).version;
  }

  std::string dir_;
  boost::asio::io_context io_;
  WorkerDirectory workers_;
  Counting counting_{1000};
  Metrics metrics_;
  std::unique_ptr<FunctionRegistry> registry_;
  std::unique_ptr<AssignmentService> assignment_;
  std::unique_ptr<Frontend> frontend_;
};

TEST_F(ResolveTest, VersionsAndLatest) {
  EXPECT_EQ(Version("f"), "$LATEST");
  EXPECT_EQ(Version("f:$LATEST"), "$LATEST");
  EXPECT_EQ(Version("f:1"), "1");
  EXPECT_EQ(Version("arn:aws:lambda:us-east-1:000000000000:function:f:2"), "2");
  EXPECT_EQ(Version("f:3"), "ResourceNotFoundException: Function not found: "
                            "arn:aws:lambda:us-east-1:000000000000:function:f:3");
  EXPECT_EQ(Version("g"), "ResourceNotFoundException: Function not found: "
                          "arn:aws:lambda:us-east-1:000000000000:function:g");
}

TEST_F(ResolveTest, AliasesAndUnknownQualifiers) {
  ASSERT_TRUE(registry_->InsertAlias({"f", "live", "1", "", "", 0, "r"}).ok());
  ASSERT_TRUE(registry_->InsertAlias({"f", "edge", "$LATEST", "", "", 0, "r"}).ok());
  EXPECT_EQ(Version("f:live"), "1");
  EXPECT_EQ(Version("f:edge"), "$LATEST");
  EXPECT_EQ(Version("f:nope"), "ResourceNotFoundException: Function not found: "
                               "arn:aws:lambda:us-east-1:000000000000:function:f:nope");
  // "0" and "01" are not version numbers: they are looked up as alias names, and are not there.
  EXPECT_EQ(Version("f:01").rfind("ResourceNotFoundException", 0), 0u);
  // Moving the alias is seen at once (the registry cache is written through).
  ASSERT_TRUE(registry_->PutAlias({"f", "live", "2", "", "", 0, "r2"}).ok());
  EXPECT_EQ(Version("f:live"), "2");
  ASSERT_TRUE(registry_->DeleteAlias("f", "live").ok());
  EXPECT_EQ(Version("f:live").rfind("ResourceNotFoundException", 0), 0u);
}

TEST_F(ResolveTest, WeightedAliasDrawsPerInvocation) {
  ASSERT_TRUE(registry_->InsertAlias({"f", "canary", "1", "", "2", 0.3, "r"}).ok());
  const int n = 4000;
  int second = 0;
  for (int i = 0; i < n; ++i) {
    std::string v = Version("f:canary");
    ASSERT_TRUE(v == "1" || v == "2") << v;
    second += v == "2";
  }
  // Binomial(4000, 0.3): sd ~29; 8 sd either side cannot fail by chance in practice.
  EXPECT_GT(second, 1200 - 8 * 29);
  EXPECT_LT(second, 1200 + 8 * 29);
  // The control plane reads the primary version, never a draw.
  for (int i = 0; i < 50; ++i) EXPECT_EQ(Version("f:canary", Frontend::AliasRouting::kPrimary), "1");
}

}  // namespace kindling
