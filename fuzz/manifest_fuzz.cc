// Fuzzes Manifest::Parse (src/chunks/manifest.cc): image manifests come from the chunk server
// (PUT /v1/images/<name> bodies, and the GET answers a worker trusts no further than it parses).
// Checks that parsing never crashes and that whatever it accepts is a valid image whose canonical
// encoding parses back to the same manifest.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "chunks/manifest.h"

using namespace kindling::chunks;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto m = Manifest::Parse(text);
  if (!m.ok()) return 0;
  uint64_t sum = 0;
  if (m->chunks.size() > kMaxChunks) abort();
  for (size_t i = 0; i < m->chunks.size(); ++i) {
    uint32_t s = m->chunks[i].size;
    if (s == 0 || s > kChunkSize) abort();
    if (i + 1 < m->chunks.size() && s != kChunkSize) abort();
    sum += s;
  }
  if (sum != m->size) abort();
  std::string canonical = m->Encode();
  auto again = Manifest::Parse(canonical);
  if (!again.ok() || !(again.value() == m.value()) || again->Encode() != canonical) abort();
  if (again->Id() != m->Id()) abort();
  return 0;
}
