// Start-ordered layout of an image: the 4 KiB blocks a start reads, stored first and in the order
// it read them, so that a later start on a cold worker reads (and prefetches) a few contiguous
// chunks instead of every chunk that holds one of its blocks.
//
// A laid-out image is stored as a header followed by the image's blocks in stored order:
//   +0   char[16]  magic "KINDLING-LAYOUT1"
//   +16  u32 LE    block count N (the image is N * 4096 bytes)
//   +20  u32 LE    hot block count H (the first H stored blocks are what the start read)
//   +24  u32 LE[N] stored position of each image block (a permutation of 0..N-1)
//   ...  zero padding to a multiple of 4096: the header length
//   then N blocks of 4096 bytes, stored block i at header length + i * 4096
// A plain erofs image starts with 1024 zero bytes, so the magic tells the two apart.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kindling::images {

constexpr uint64_t kLayoutBlock = 4096;
constexpr char kLayoutMagic[17] = "KINDLING-LAYOUT1";

struct StartLayout {
  uint64_t header_bytes = 0;             // 0: a plain image (identity)
  std::vector<uint32_t> stored_block_of;  // image block -> stored block; empty: identity
  uint32_t hot_blocks = 0;
};

// True when the image's stored bytes start with a layout header.
bool HasLayoutHeader(const std::string& head);

// Parses the header at the start of stored bytes of total stored_size (head must hold the whole
// header). Untrusted: checks the sizes and that the map is a permutation; never asserts.
Result<StartLayout> ParseLayoutHeader(const std::string& head, uint64_t stored_size);

// Lays out image (plain bytes, a multiple of 4096) with the blocks `first_read` names (image block
// indexes, in first-read order; duplicates and out-of-range indexes are ignored) first, the rest
// in image order. Returns the stored bytes (header + blocks). The header must fit in one 512 KiB
// chunk, which limits laid-out images to about 511 MiB.
Result<std::string> LayOutForStart(const std::string& image, const std::vector<uint32_t>& first_read,
                                   uint32_t* hot_blocks);

}  // namespace kindling::images
