// Fuzzes Base64Decode (src/common/ids.cc): untrusted in Invoke's X-Amz-Client-Context and
// CreateFunction's ZipFile. Checks that decoding never crashes and round-trips what it accepts.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/ids.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string out;
  if (kindling::Base64Decode(text, &out)) {
    // Whatever decodes must decode back from its own canonical encoding.
    std::string again;
    if (!kindling::Base64Decode(kindling::Base64Encode(out), &again) || again != out) abort();
    if (out.size() > size) abort();
  }
  std::string encoded = kindling::Base64Encode(text);
  std::string back;
  if (!kindling::Base64Decode(encoded, &back) || back != text) abort();
  return 0;
}
