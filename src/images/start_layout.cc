#include "images/start_layout.h"

#include <cstring>

#include "chunks/digest.h"

namespace kindling::images {
namespace {

constexpr uint64_t kMagicBytes = 16;
constexpr uint64_t kFixedHeader = 24;  // magic + N + H

uint32_t Le32(const std::string& b, uint64_t at) {
  return uint32_t(uint8_t(b[at])) | uint32_t(uint8_t(b[at + 1])) << 8 | uint32_t(uint8_t(b[at + 2])) << 16 |
         uint32_t(uint8_t(b[at + 3])) << 24;
}

void PutLe32(std::string* b, uint64_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*b)[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

uint64_t HeaderBytes(uint64_t blocks) {
  uint64_t raw = kFixedHeader + 4 * blocks;
  return (raw + kLayoutBlock - 1) / kLayoutBlock * kLayoutBlock;
}

}  // namespace

bool HasLayoutHeader(const std::string& head) {
  return head.size() >= kMagicBytes && memcmp(head.data(), kLayoutMagic, kMagicBytes) == 0;
}

Result<StartLayout> ParseLayoutHeader(const std::string& head, uint64_t stored_size) {
  if (!HasLayoutHeader(head) || head.size() < kFixedHeader) return Status::Error("no start layout header");
  uint64_t blocks = Le32(head, 16);
  uint32_t hot = Le32(head, 20);
  StartLayout layout;
  layout.header_bytes = HeaderBytes(blocks);
  if (blocks == 0 || hot > blocks || layout.header_bytes + blocks * kLayoutBlock != stored_size)
    return Status::Error("start layout header does not match the image's size");
  if (head.size() < kFixedHeader + 4 * blocks) return Status::Error("start layout header is truncated");
  layout.hot_blocks = hot;
  layout.stored_block_of.resize(blocks);
  std::vector<bool> seen(blocks, false);
  for (uint64_t i = 0; i < blocks; ++i) {
    uint32_t s = Le32(head, kFixedHeader + 4 * i);
    if (s >= blocks || seen[s]) return Status::Error("start layout map is not a permutation");
    seen[s] = true;
    layout.stored_block_of[i] = s;
  }
  return layout;
}

Result<std::string> LayOutForStart(const std::string& image, const std::vector<uint32_t>& first_read,
                                   uint32_t* hot_blocks) {
  if (image.empty() || image.size() % kLayoutBlock != 0)
    return Status::Error("only images of whole 4 KiB blocks can be laid out");
  const uint64_t blocks = image.size() / kLayoutBlock;
  // The header must fit in the first chunk: workers read it before anything else.
  if (HeaderBytes(blocks) > chunks::kChunkSize)
    return Status::Error("image too large for a start layout (over " +
                         std::to_string((chunks::kChunkSize - kFixedHeader) / 4 * kLayoutBlock >> 20) + " MiB)");
  std::vector<uint32_t> order;  // stored position -> image block
  order.reserve(blocks);
  std::vector<bool> placed(blocks, false);
  for (uint32_t b : first_read)
    if (b < blocks && !placed[b]) {
      placed[b] = true;
      order.push_back(b);
    }
  *hot_blocks = static_cast<uint32_t>(order.size());
  for (uint64_t b = 0; b < blocks; ++b)
    if (!placed[b]) order.push_back(static_cast<uint32_t>(b));

  const uint64_t header = HeaderBytes(blocks);
  std::string out(header + image.size(), '\0');
  memcpy(out.data(), kLayoutMagic, kMagicBytes);
  PutLe32(&out, 16, static_cast<uint32_t>(blocks));
  PutLe32(&out, 20, *hot_blocks);
  for (uint64_t pos = 0; pos < blocks; ++pos) {
    PutLe32(&out, kFixedHeader + 4 * uint64_t(order[pos]), static_cast<uint32_t>(pos));
    memcpy(out.data() + header + pos * kLayoutBlock, image.data() + uint64_t(order[pos]) * kLayoutBlock, kLayoutBlock);
  }
  return out;
}

}  // namespace kindling::images
