// Fuzzes kindling-init's Runtime API HTTP parser (src/init/http.cc): the runtime is user code, so
// every byte it sends is untrusted. Parses the head incrementally (as bytes arrive), then decodes a
// chunked body in place, matches the route and scans an error document.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "init/http.h"

using namespace kindling::init::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string buf(reinterpret_cast<const char*>(data), size);
  // Head: fed in growing prefixes (split points from the input length), resuming the scan.
  size_t scan = 0;
  RequestHead head;
  ParseStatus st = ParseStatus::kIncomplete;
  size_t step = 1 + size % 17;
  for (size_t len = std::min(step, size);; len = std::min(len + step, size)) {
    head = RequestHead();
    st = ParseRequestHead(std::string_view(buf.data(), len), &scan, &head);
    if (st != ParseStatus::kIncomplete || len == size) break;
  }
  std::string_view id;
  (void)ExtractErrorType(buf);
  if (st != ParseStatus::kOk) return 0;
  if (head.head_bytes > size) abort();
  (void)MatchRoute(head.path, &id);
  if (head.chunked) {
    ChunkedDecoder dec;
    size_t pos = head.head_bytes, out = head.head_bytes;
    // Feed the body in two parts to exercise kNeedMore resumption.
    size_t half = head.head_bytes + (size - head.head_bytes) / 2;
    auto r = dec.Run(buf.data(), half, &pos, &out, kMaxBodyBytes);
    if (r == ChunkedDecoder::kNeedMore) r = dec.Run(buf.data(), size, &pos, &out, kMaxBodyBytes);
    if (out > pos || pos > size) abort();
    if (r == ChunkedDecoder::kDone)
      (void)ExtractErrorType(std::string_view(buf.data() + head.head_bytes, out - head.head_bytes));
  }
  return 0;
}
