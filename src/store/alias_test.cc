#include "store/alias.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

namespace kindling {

TEST(AliasRouting, WeightSplitsTraffic) {
  AliasConfig alias{"f", "live", "1", "", "2", 0.3, "r"};
  EXPECT_EQ(ChooseAliasVersion(alias, 0.0), "2");
  EXPECT_EQ(ChooseAliasVersion(alias, 0.2999), "2");
  EXPECT_EQ(ChooseAliasVersion(alias, 0.3), "1");
  EXPECT_EQ(ChooseAliasVersion(alias, 0.9999), "1");
}

TEST(AliasRouting, EdgeWeights) {
  AliasConfig none{"f", "a", "1", "", "2", 0.0, "r"};
  AliasConfig all{"f", "a", "1", "", "2", 1.0, "r"};
  AliasConfig single{"f", "a", "3", "", "", 0.9, "r"};  // no second version: weight unused
  for (double u : {0.0, 0.5, 0.999999}) {
    EXPECT_EQ(ChooseAliasVersion(none, u), "1");
    EXPECT_EQ(ChooseAliasVersion(all, u), "2");
    EXPECT_EQ(ChooseAliasVersion(single, u), "3");
  }
}

TEST(AliasRouting, ShareMatchesWeightOverManyDraws) {
  AliasConfig alias{"f", "live", "1", "", "2", 0.3, "r"};
  std::mt19937_64 rng(42);  // fixed seed: deterministic
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const int n = 100000;
  int second = 0;
  for (int i = 0; i < n; ++i) second += ChooseAliasVersion(alias, uniform(rng)) == "2";
  double sd = std::sqrt(n * 0.3 * 0.7);
  EXPECT_NEAR(second, n * 0.3, 5 * sd);
}

TEST(AliasNames, PatternAsLambda) {
  EXPECT_TRUE(IsValidAliasName("live"));
  EXPECT_TRUE(IsValidAliasName("v1-blue_green"));
  EXPECT_TRUE(IsValidAliasName("1a"));
  EXPECT_FALSE(IsValidAliasName("123"));      // would read as a version
  EXPECT_FALSE(IsValidAliasName("$LATEST"));
  EXPECT_FALSE(IsValidAliasName(""));
  EXPECT_FALSE(IsValidAliasName("a.b"));
  EXPECT_FALSE(IsValidAliasName(std::string(129, 'a')));
  EXPECT_TRUE(IsValidAliasName(std::string(128, 'a')));
}

TEST(AliasNames, PublishedVersionNumbers) {
  EXPECT_TRUE(IsPublishedVersion("1"));
  EXPECT_TRUE(IsPublishedVersion("42"));
  EXPECT_FALSE(IsPublishedVersion("0"));
  EXPECT_FALSE(IsPublishedVersion("01"));
  EXPECT_FALSE(IsPublishedVersion("$LATEST"));
  EXPECT_FALSE(IsPublishedVersion("1a"));
  EXPECT_FALSE(IsPublishedVersion(""));
}

TEST(AliasJson, StoredFormRoundTrips) {
  AliasConfig in{"f", "live", "1", "d", "2", 0.25, "r"};
  AliasConfig out;
  ASSERT_TRUE(FromStoredAlias(ToStoredAlias(in), &out));
  EXPECT_EQ(out.function, "f");
  EXPECT_EQ(out.additional_version, "2");
  EXPECT_DOUBLE_EQ(out.additional_weight, 0.25);
  auto doc = ToAliasConfiguration(in, ArnContext{});
  EXPECT_EQ(doc["AliasArn"], "arn:aws:lambda:us-east-1:000000000000:function:f:live");
  EXPECT_EQ(doc["RoutingConfig"]["AdditionalVersionWeights"]["2"], 0.25);
  AliasConfig plain{"f", "p", "$LATEST", "", "", 0, "r"};
  EXPECT_FALSE(ToAliasConfiguration(plain, ArnContext{}).contains("RoutingConfig"));
  EXPECT_FALSE(FromStoredAlias(nlohmann::json{{"Name", "x"}}, &out));
}

}  // namespace kindling
