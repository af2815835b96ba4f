// erofs images: how Kindling flattens a directory tree into one read-only file system image.
//
// Why erofs: it is built for read-only container images; uncompressed, every file's data is
// 4 KiB-aligned in the image, so a start that reads a few files touches few 512 KiB chunks; the
// kernel mounts it straight from a file (no loop device), and mkfs.erofs output is byte-for-byte
// reproducible with a fixed timestamp, UUID and owner. squashfs compresses blocks together, which
// makes lazy reads coarser and dedup across versions worse; ext4 images carry free space and
// journal metadata.
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace kindling::images {

// erofs superblock, at byte 1024 of the image (little endian; linux/fs/erofs/erofs_fs.h).
constexpr uint64_t kErofsSuperblockOffset = 1024;
constexpr uint32_t kErofsMagic = 0xE0F5E1E2;   // +0  __le32 magic
constexpr uint64_t kErofsBlockBitsOffset = 12;  // +12 u8 blkszbits (12: 4 KiB blocks)
constexpr uint64_t kErofsBlocksOffset = 36;     // +36 __le32 blocks: image length in blocks

// Writes a reproducible, uncompressed erofs image of source_dir to image_path (replacing it): all
// files owned by root, timestamps 0, fixed UUID, no extended attributes. The same tree always
// gives the same bytes.
Status BuildErofs(const std::string& source_dir, const std::string& image_path);

// Checks the superblock at the start of an image of image_size bytes: the erofs magic, 4 KiB
// blocks, and a block count that fits in the image. Untrusted bytes: never asserts.
Status CheckErofsSuperblock(const std::string& head, uint64_t image_size);

}  // namespace kindling::images
