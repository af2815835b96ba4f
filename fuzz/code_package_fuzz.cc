// Fuzzes the code package extractor (src/code/code_package.cc): the zip comes straight from the
// CreateFunction / UpdateFunctionCode caller. Each input is extracted into a fresh temporary
// directory, removed afterwards. Limits are small so zip bombs fail fast.
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>

#include "code/code_package.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::string root = [] {
    char tmpl[] = "/tmp/kindling-code-fuzz-XXXXXX";
    if (!mkdtemp(tmpl)) abort();
    return std::string(tmpl);
  }();
  kindling::CodeLimits limits;
  limits.max_unzipped_bytes = 8 << 20;
  limits.max_entries = 256;
  std::string zip(reinterpret_cast<const char*>(data), size);
  auto pkg = kindling::ExtractCodePackage(zip, root + "/code", limits);
  if (pkg.ok()) {
    // Nothing may land outside the package directory.
    for (auto& e : std::filesystem::directory_iterator(root + "/code")) {
      std::string n = e.path().filename();
      if (n != pkg.value().digest_hex && n != pkg.value().digest_hex + ".zip") abort();
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(root + "/code", ec);
  return 0;
}
