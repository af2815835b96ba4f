#include "images/erofs.h"

#include "common/subprocess.h"

namespace kindling::images {
namespace {

uint32_t Le32(const std::string& b, uint64_t at) {
  return uint32_t(uint8_t(b[at])) | uint32_t(uint8_t(b[at + 1])) << 8 | uint32_t(uint8_t(b[at + 2])) << 16 |
         uint32_t(uint8_t(b[at + 3])) << 24;
}

}  // namespace

Status BuildErofs(const std::string& source_dir, const std::string& image_path) {
  auto out = RunCommand({"mkfs.erofs", "--quiet", "-x-1", "-T0", "--all-root",
                         "-U", "00000000-0000-0000-0000-000000000000", image_path, source_dir});
  if (!out.ok()) return Status::Error("building the erofs image of " + source_dir + ": " + out.status().message());
  return Status::Ok();
}

Status CheckErofsSuperblock(const std::string& head, uint64_t image_size) {
  const uint64_t sb = kErofsSuperblockOffset;
  if (head.size() < sb + kErofsBlocksOffset + 4 || image_size < sb + kErofsBlocksOffset + 4)
    return Status::Error("not an erofs image: shorter than its superblock");
  if (Le32(head, sb) != kErofsMagic) return Status::Error("not an erofs image: bad magic");
  if (uint8_t(head[sb + kErofsBlockBitsOffset]) != 12)
    return Status::Error("unsupported erofs image: block size is not 4 KiB");
  uint64_t blocks = Le32(head, sb + kErofsBlocksOffset);
  if (blocks == 0 || blocks * 4096 > image_size)
    return Status::Error("truncated erofs image: " + std::to_string(blocks) + " blocks in " +
                         std::to_string(image_size) + " bytes");
  return Status::Ok();
}

}  // namespace kindling::images
