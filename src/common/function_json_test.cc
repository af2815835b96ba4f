#include "common/function_json.h"

#include <gtest/gtest.h>

namespace kindling {

TEST(FunctionJson, StoredFormRoundTrips) {
  FunctionConfig fn;
  fn.name = "f";
  fn.runtime = "python3.12";
  fn.handler = "app.handler";
  fn.role = "arn:aws:iam::000000000000:role/r";
  fn.memory_mb = 256;
  fn.environment = {{"A", "1"}};
  fn.code_digest = "ab";
  fn.revision_id = "r1";
  FunctionConfig back;
  ASSERT_TRUE(FromStored(ToStored(fn), &back));
  EXPECT_EQ(back.name, "f");
  EXPECT_EQ(back.memory_mb, 256);
  EXPECT_EQ(back.environment.at("A"), "1");
  EXPECT_EQ(back.code_digest, "ab");
  EXPECT_FALSE(FromStored(nlohmann::json{{"FunctionName", 3}}, &back));
}

TEST(FunctionJson, ApiShapeHasArnAndNoInternals) {
  FunctionConfig fn;
  fn.name = "f";
  auto doc = ToFunctionConfiguration(fn, ArnContext{"eu-west-1", "123456789012"});
  EXPECT_EQ(doc["FunctionArn"], "arn:aws:lambda:eu-west-1:123456789012:function:f");
  EXPECT_FALSE(doc.contains("CodeDigest"));
  EXPECT_EQ(doc["PackageType"], "Zip");
}

}  // namespace kindling
