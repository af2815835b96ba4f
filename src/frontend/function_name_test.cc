#include "frontend/function_name.h"

#include <gtest/gtest.h>

namespace kindling {

TEST(FunctionName, AcceptsLambdaForms) {
  FunctionRef r;
  EXPECT_FALSE(ParseFunctionRef("my-fn_1", "", &r));
  EXPECT_EQ(r.name, "my-fn_1");
  EXPECT_EQ(r.qualifier, "");
  EXPECT_FALSE(ParseFunctionRef("my-fn:live", "", &r));
  EXPECT_EQ(r.qualifier, "live");
  EXPECT_FALSE(ParseFunctionRef("123456789012:function:f", "", &r));
  EXPECT_EQ(r.name, "f");
  EXPECT_FALSE(ParseFunctionRef("arn:aws:lambda:us-east-1:123456789012:function:f:$LATEST", "", &r));
  EXPECT_EQ(r.name, "f");
  EXPECT_EQ(r.qualifier, "$LATEST");
  EXPECT_FALSE(ParseFunctionRef("f", "7", &r));
  EXPECT_EQ(r.qualifier, "7");
}

TEST(FunctionName, RejectsMalformed) {
  FunctionRef r;
  for (const std::string& bad : std::vector<std::string>{"", "a b", "../etc", "f:", "a:b:c", std::string(65, 'x'),
                          "arn:aws:lambda:us-east-1:123456789012:function:f:q:extra",
                          "12345:function:f", "f:bad!qual"}) {
    auto err = ParseFunctionRef(bad, "", &r);
    ASSERT_TRUE(err.has_value()) << bad;
    EXPECT_EQ(err->status, 400);
    EXPECT_EQ(err->type, "ValidationException");
  }
  auto mismatch = ParseFunctionRef("f:one", "two", &r);
  ASSERT_TRUE(mismatch.has_value());
  EXPECT_NE(mismatch->message.find("does not match"), std::string::npos);
}

}  // namespace kindling

namespace kindling {

TEST(FunctionName, ForeignRegionsAndAccountsAreOutOfScope) {
  FunctionRef r;
  ASSERT_FALSE(ParseFunctionRef("arn:aws:lambda:eu-west-1:000000000000:function:f", "", &r));
  auto err = CheckArnScope(r, "us-east-1", "000000000000");
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->status, 404);
  ASSERT_FALSE(ParseFunctionRef("111111111111:function:f", "", &r));
  err = CheckArnScope(r, "us-east-1", "000000000000");
  ASSERT_TRUE(err.has_value());
  EXPECT_EQ(err->status, 403);
  ASSERT_FALSE(ParseFunctionRef("arn:aws:lambda:us-east-1:000000000000:function:f", "", &r));
  EXPECT_FALSE(CheckArnScope(r, "us-east-1", "000000000000").has_value());
  ASSERT_FALSE(ParseFunctionRef("f", "", &r));
  EXPECT_FALSE(CheckArnScope(r, "us-east-1", "000000000000").has_value());
}

}  // namespace kindling
