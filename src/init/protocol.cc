#include "init/protocol.h"

#include <cstring>

namespace kindling::protocol {
namespace {
void PutU32(uint32_t v, std::string* out) {
  char b[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
               static_cast<char>(v >> 24)};
  out->append(b, 4);
}
uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return u[0] | (u[1] << 8) | (u[2] << 16) | (static_cast<uint32_t>(u[3]) << 24);
}
}  // namespace

void Encode(FrameType type, const std::vector<std::string_view>& fields, std::string* out) {
  size_t len = 1;
  for (auto f : fields) len += 4 + f.size();
  PutU32(static_cast<uint32_t>(len), out);
  out->push_back(static_cast<char>(type));
  for (auto f : fields) {
    PutU32(static_cast<uint32_t>(f.size()), out);
    out->append(f.data(), f.size());
  }
}

int FrameDecoder::Next(Frame* frame) {
  size_t avail = buf_.size() - off_;
  if (avail < 4) return 0;
  uint32_t len = GetU32(buf_.data() + off_);
  if (len < 1 || len > kMaxFrameBytes) return -1;
  if (avail < 4 + static_cast<size_t>(len)) return 0;
  const char* p = buf_.data() + off_ + 4;
  const char* end = p + len;
  frame->type = static_cast<FrameType>(static_cast<unsigned char>(*p++));
  frame->fields.clear();
  while (p < end) {
    if (end - p < 4) return -1;
    uint32_t n = GetU32(p);
    p += 4;
    if (static_cast<size_t>(end - p) < n) return -1;
    frame->fields.emplace_back(p, n);
    p += n;
  }
  off_ += 4 + len;
  if (off_ == buf_.size()) {
    buf_.clear();
    off_ = 0;
  } else if (off_ > (1u << 20) && off_ * 2 > buf_.size()) {
    buf_.erase(0, off_);
    off_ = 0;
  }
  return 1;
}

}  // namespace kindling::protocol
