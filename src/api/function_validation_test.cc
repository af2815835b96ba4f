#include "api/function_validation.h"

#include <gtest/gtest.h>

namespace kindling {

using nlohmann::json;

json Valid() {
  return {{"FunctionName", "f"}, {"Runtime", "python3.12"}, {"Handler", "app.handler"},
          {"Role", "arn:aws:iam::123456789012:role/lambda"}};
}

TEST(FunctionValidation, AppliesFieldsAndDefaults) {
  FunctionConfig fn;
  json body = Valid();
  body["MemorySize"] = 512;
  body["Timeout"] = 30;
  body["Environment"] = {{"Variables", {{"GREETING", "hi"}}}};
  ASSERT_FALSE(ApplyFunctionConfiguration(body, true, &fn));
  EXPECT_EQ(fn.memory_mb, 512);
  EXPECT_EQ(fn.timeout_s, 30);
  EXPECT_EQ(fn.ephemeral_mb, 512);
  EXPECT_EQ(fn.environment.at("GREETING"), "hi");
}

TEST(FunctionValidation, RejectsOutOfRangeAndUnknown) {
  struct Case {
    const char* key;
    json value;
  };
  for (const Case& c : std::vector<Case>{{"MemorySize", 64},
                                         {"MemorySize", 10241},
                                         {"MemorySize", "big"},
                                         {"Timeout", 0},
                                         {"Timeout", 901},
                                         {"Runtime", "cobol1.0"},
                                         {"Handler", ""},
                                         {"Handler", "a b"},
                                         {"Role", "admin"},
                                         {"Description", std::string(257, 'd')},
                                         {"Architectures", json::array({"arm64"})},
                                         {"EphemeralStorage", {{"Size", 100}}},
                                         {"Environment", {{"Variables", {{"AWS_REGION", "x"}}}}},
                                         {"Environment", {{"Variables", {{"1BAD", "x"}}}}},
                                         {"Environment", {{"Variables", {{"BIG", std::string(5000, 'x')}}}}},
                                         {"PackageType", "Image"}}) {
    FunctionConfig fn;
    json body = Valid();
    body[c.key] = c.value;
    auto err = ApplyFunctionConfiguration(body, true, &fn);
    ASSERT_TRUE(err.has_value()) << c.key << "=" << c.value.dump();
    EXPECT_EQ(err->status, 400);
  }
}

TEST(FunctionValidation, CreateRequiresRoleRuntimeHandler) {
  for (const char* key : {"Role", "Runtime", "Handler"}) {
    FunctionConfig fn;
    json body = Valid();
    body.erase(key);
    EXPECT_TRUE(ApplyFunctionConfiguration(body, true, &fn).has_value()) << key;
  }
  FunctionConfig fn;
  ASSERT_FALSE(ApplyFunctionConfiguration(Valid(), true, &fn));
  EXPECT_FALSE(ApplyFunctionConfiguration(json{{"Timeout", 10}}, false, &fn));  // update: partial
  EXPECT_EQ(fn.timeout_s, 10);
}

}  // namespace kindling
