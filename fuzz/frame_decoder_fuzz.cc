// Fuzzes the worker<->init framing decoder (src/init/protocol.cc FrameDecoder): both ends treat
// the other's bytes as untrusted (a hostile runtime may own the sandbox). The input is fed in
// pieces whose sizes come from the first byte, through both Feed and FeedSpace/Commit.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "init/protocol.h"

using namespace kindling::protocol;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  size_t step = 1 + data[0] % 64;
  data++, size--;
  FrameDecoder dec;
  Frame frame;
  bool zero_copy = false;
  for (size_t off = 0; off < size;) {
    size_t n = std::min(step, size - off);
    if (zero_copy) {
      std::memcpy(dec.FeedSpace(n), data + off, n);
      dec.Commit(n);
    } else {
      dec.Feed(reinterpret_cast<const char*>(data + off), n);
    }
    zero_copy = !zero_copy;
    off += n;
    for (;;) {
      int r = dec.Next(&frame);
      if (r < 0) return 0;  // malformed: the reader closes the stream
      if (r == 0) break;
      // Re-encoding a decoded frame must decode to the same frame.
      std::vector<std::string_view> fields(frame.fields.begin(), frame.fields.end());
      std::string enc;
      Encode(frame.type, fields, &enc);
      FrameDecoder again;
      Frame copy;
      again.Feed(enc.data(), enc.size());
      if (again.Next(&copy) != 1 || copy.type != frame.type) abort();
    }
    dec.ShrinkIfEmpty(1024);
  }
  return 0;
}
