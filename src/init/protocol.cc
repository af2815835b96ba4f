#include "init/protocol.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace kindling::protocol {
namespace {
void PutU32(uint32_t v, char* b) {
  b[0] = static_cast<char>(v);
  b[1] = static_cast<char>(v >> 8);
  b[2] = static_cast<char>(v >> 16);
  b[3] = static_cast<char>(v >> 24);
}
uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return u[0] | (u[1] << 8) | (u[2] << 16) | (static_cast<uint32_t>(u[3]) << 24);
}
}  // namespace

void EncodeFrameHeader(FrameType type, size_t fields_bytes, char out[kFrameHeaderBytes]) {
  PutU32(static_cast<uint32_t>(fields_bytes + 1), out);
  out[4] = static_cast<char>(type);
}

void EncodeFieldHeader(uint32_t size, char out[kFieldHeaderBytes]) { PutU32(size, out); }

void Encode(FrameType type, const std::vector<std::string_view>& fields, std::string* out) {
  size_t len = 0;
  for (auto f : fields) len += kFieldHeaderBytes + f.size();
  char h[kFrameHeaderBytes];
  EncodeFrameHeader(type, len, h);
  out->reserve(out->size() + kFrameHeaderBytes + len);
  out->append(h, sizeof h);
  for (auto f : fields) {
    char fh[kFieldHeaderBytes];
    PutU32(static_cast<uint32_t>(f.size()), fh);
    out->append(fh, sizeof fh);
    out->append(f.data(), f.size());
  }
}

FrameDecoder::~FrameDecoder() { std::free(buf_); }

char* FrameDecoder::FeedSpace(size_t n) {
  if (cap_ - end_ >= n) return buf_ + end_;
  if (off_ > 0) {  // compact first
    std::memmove(buf_, buf_ + off_, end_ - off_);
    end_ -= off_;
    off_ = 0;
    if (cap_ - end_ >= n) return buf_ + end_;
  }
  size_t want = end_ + n;
  size_t cap = cap_ ? cap_ * 2 : 4096;
  while (cap < want) cap *= 2;
  char* p = static_cast<char*>(std::realloc(buf_, cap));
  if (!p) throw std::bad_alloc();
  buf_ = p;
  cap_ = cap;
  return buf_ + end_;
}

void FrameDecoder::Feed(const char* data, size_t n) {
  if (n == 0) return;
  std::memcpy(FeedSpace(n), data, n);
  Commit(n);
}

void FrameDecoder::ShrinkIfEmpty(size_t keep) {
  if (off_ == end_ && cap_ > keep) {
    std::free(buf_);
    buf_ = nullptr;
    cap_ = off_ = end_ = 0;
  }
}

int FrameDecoder::Next(Frame* frame) {
  size_t avail = end_ - off_;
  if (avail < 4) return 0;
  uint32_t len = GetU32(buf_ + off_);
  if (len < 1 || len > kMaxFrameBytes) return -1;
  if (avail < 4 + static_cast<size_t>(len)) return 0;
  const char* p = buf_ + off_ + 4;
  const char* end = p + len;
  FrameType type = static_cast<FrameType>(static_cast<unsigned char>(*p++));
  size_t i = 0;
  while (p < end) {
    if (end - p < 4) return -1;
    uint32_t n = GetU32(p);
    p += 4;
    if (static_cast<size_t>(end - p) < n) return -1;
    if (i < frame->fields.size()) {
      frame->fields[i].assign(p, n);
    } else {
      frame->fields.emplace_back(p, n);
    }
    ++i;
    p += n;
  }
  frame->fields.resize(i);
  frame->type = type;
  off_ += 4 + len;
  if (off_ == end_) off_ = end_ = 0;
  return 1;
}

}  // namespace kindling::protocol
