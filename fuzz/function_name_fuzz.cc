// Fuzzes FunctionName / ARN parsing (src/frontend/function_name.cc): the path parameter of every
// function API call. Input: FunctionName, then an optional "\n" and the ?Qualifier= value.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "frontend/function_name.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string in(reinterpret_cast<const char*>(data), size);
  std::string name = in, qualifier;
  if (size_t nl = in.find('\n'); nl != std::string::npos) {
    name = in.substr(0, nl);
    qualifier = in.substr(nl + 1);
  }
  kindling::FunctionRef ref;
  if (!kindling::ParseFunctionRef(name, qualifier, &ref)) {
    // Accepted: the name must be a valid bare name.
    if (!kindling::IsValidFunctionName(ref.name)) abort();
    (void)kindling::CheckArnScope(ref, "us-east-1", "123456789012");
  }
  (void)kindling::IsValidFunctionName(in);
  return 0;
}
