// Fuzzes the API's JSON handling: nlohmann::json::parse without exceptions (as the API parses
// request bodies), then ApplyFunctionConfiguration (src/api/function_validation.cc) on what
// parsed, both as CreateFunction and as UpdateFunctionConfiguration. Must never throw or crash.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "api/function_validation.h"
#include "common/function.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto body = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;
  for (bool creating : {true, false}) {
    kindling::FunctionConfig fn;
    (void)kindling::ApplyFunctionConfiguration(body, creating, &fn);
  }
  return 0;
}
