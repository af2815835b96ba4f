#define FUSE_USE_VERSION 312
#include "images/lazy_image_fs.h"

#include <fuse_lowlevel.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace kindling::images {

using chunks::Digest;
using chunks::kChunkSize;
using chunks::Manifest;

struct LazyImageFs::Image {
  uint64_t inode = 0;
  Digest id;
  std::string name;  // id hex: the file name
  Manifest manifest;
  StartLayout layout;
  uint64_t size = 0;             // the file's size: the manifest's minus the layout header
  mutable std::mutex mu;
  std::vector<bool> touched;     // per chunk: read at least once
  std::vector<uint32_t> order;   // chunk indexes in first-read order
  std::vector<bool> block_touched;    // per file block
  std::vector<uint32_t> block_order;  // file blocks in first-read order
  ImageReadStats stats;
  std::string last_error;
};

namespace {

constexpr double kImmutableTimeout = 3600.0;  // names are content ids: attributes never change

void FillAttr(uint64_t inode, const LazyImageFs::Image* img, struct stat* st) {
  memset(st, 0, sizeof *st);
  st->st_ino = inode;
  if (!img) {
    st->st_mode = S_IFDIR | 0555;
    st->st_nlink = 2;
  } else {
    st->st_mode = S_IFREG | 0444;
    st->st_nlink = 1;
    st->st_size = static_cast<off_t>(img->size);
    st->st_blksize = 4096;
    st->st_blocks = static_cast<blkcnt_t>((img->size + 511) / 512);
  }
}

}  // namespace

// The FUSE low-level callbacks; userdata is the LazyImageFs.
struct FsCallbacks {
  static LazyImageFs* Fs(fuse_req_t req) { return static_cast<LazyImageFs*>(fuse_req_userdata(req)); }

  static std::shared_ptr<LazyImageFs::Image> ByInode(LazyImageFs* fs, fuse_ino_t ino) {
    std::lock_guard lock(fs->mu_);
    auto it = fs->by_inode_.find(ino);
    return it == fs->by_inode_.end() ? nullptr : it->second;
  }

  static void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
    LazyImageFs* fs = Fs(req);
    auto id = Digest::FromHex(name);
    std::shared_ptr<LazyImageFs::Image> img;
    if (parent == FUSE_ROOT_ID && id) img = fs->Find(*id);
    if (!img) {
      struct fuse_entry_param e = {};  // negative entry, not cached: images appear at any time
      fuse_reply_entry(req, &e);
      return;
    }
    struct fuse_entry_param e = {};
    e.ino = img->inode;
    e.attr_timeout = kImmutableTimeout;
    e.entry_timeout = kImmutableTimeout;
    FillAttr(img->inode, img.get(), &e.attr);
    fuse_reply_entry(req, &e);
  }

  static void GetAttr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info*) {
    struct stat st;
    if (ino == FUSE_ROOT_ID) {
      FillAttr(ino, nullptr, &st);
      fuse_reply_attr(req, &st, 1.0);
      return;
    }
    auto img = ByInode(Fs(req), ino);
    if (!img) {
      fuse_reply_err(req, ENOENT);
      return;
    }
    FillAttr(ino, img.get(), &st);
    fuse_reply_attr(req, &st, kImmutableTimeout);
  }

  static void Open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
    if ((fi->flags & O_ACCMODE) != O_RDONLY) {
      fuse_reply_err(req, EROFS);
      return;
    }
    auto img = ByInode(Fs(req), ino);
    if (!img) {
      fuse_reply_err(req, ENOENT);
      return;
    }
    // Direct I/O: erofs keeps its own page cache of the image; caching the file here too would
    // hold every byte twice.
    fi->direct_io = 1;
    fi->keep_cache = 0;
    LazyImageFs* fs = Fs(req);
    {
      std::lock_guard lock(fs->mu_);
      fi->fh = fs->next_handle_++;
      fs->open_files_[fi->fh] = std::move(img);
    }
    fuse_reply_open(req, fi);
  }

  static void Release(fuse_req_t req, fuse_ino_t, struct fuse_file_info* fi) {
    LazyImageFs* fs = Fs(req);
    {
      std::lock_guard lock(fs->mu_);
      fs->open_files_.erase(fi->fh);
    }
    fuse_reply_err(req, 0);
  }

  static void Read(fuse_req_t req, fuse_ino_t, size_t size, off_t off, struct fuse_file_info* fi) {
    LazyImageFs* fs = Fs(req);
    std::shared_ptr<LazyImageFs::Image> open_image;
    {
      std::lock_guard lock(fs->mu_);
      auto it = fs->open_files_.find(fi->fh);
      if (it != fs->open_files_.end()) open_image = it->second;
    }
    if (!open_image) {
      fuse_reply_err(req, EBADF);
      return;
    }
    LazyImageFs::Image& img = *open_image;
    if (off < 0 || static_cast<uint64_t>(off) >= img.size || size == 0) {
      fuse_reply_buf(req, nullptr, 0);
      return;
    }
    const uint64_t begin = static_cast<uint64_t>(off);
    const uint64_t end = std::min<uint64_t>(img.size, begin + size);
    const std::vector<uint32_t>& map = img.layout.stored_block_of;
    std::vector<std::shared_ptr<const std::string>> held;
    std::vector<struct iovec> iov;
    uint64_t held_index = UINT64_MAX;  // the chunk held.back() is
    // Piece by piece: within one file block (a laid-out image moves blocks) and one stored chunk.
    for (uint64_t pos = begin; pos < end;) {
      const uint64_t block = pos / kLayoutBlock;
      uint64_t stored = pos, piece = end - pos;
      if (!map.empty()) {
        stored = img.layout.header_bytes + uint64_t(map[block]) * kLayoutBlock + pos % kLayoutBlock;
        piece = std::min(piece, kLayoutBlock - pos % kLayoutBlock);
      }
      const uint64_t index = stored / kChunkSize;
      piece = std::min(piece, (index + 1) * kChunkSize - stored);
      const chunks::ChunkRef& ref = img.manifest.chunks[index];
      if (index != held_index) {
        auto data = fs->reader_(ref);
        if (data.ok() && (*data)->size() != ref.size)
          data = Status::Error("chunk " + ref.digest.Hex() + " has the wrong size");
        std::lock_guard lock(img.mu);
        if (!data.ok()) {
          ++img.stats.errors;
          img.last_error = data.status().message();
          fuse_reply_err(req, EIO);
          return;
        }
        if (!img.touched[index]) {
          img.touched[index] = true;
          img.order.push_back(static_cast<uint32_t>(index));
          ++img.stats.chunks_touched;
          img.stats.bytes_touched += ref.size;
        }
        held.push_back(std::move(data).value());
        held_index = index;
      }
      const uint64_t from = stored - index * kChunkSize;
      if (from + piece > held.back()->size()) {
        fuse_reply_err(req, EIO);
        return;
      }
      iov.push_back({const_cast<char*>(held.back()->data()) + from, piece});
      pos += piece;
    }
    {
      std::lock_guard lock(img.mu);
      ++img.stats.reads;
      img.stats.bytes_served += end - begin;
      for (uint64_t b = begin / kLayoutBlock; b * kLayoutBlock < end; ++b)
        if (b < img.block_touched.size() && !img.block_touched[b]) {
          img.block_touched[b] = true;
          img.block_order.push_back(static_cast<uint32_t>(b));
        }
    }
    fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
  }

  static void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info*) {
    if (ino != FUSE_ROOT_ID) {
      fuse_reply_err(req, ENOTDIR);
      return;
    }
    LazyImageFs* fs = Fs(req);
    std::vector<std::pair<uint64_t, std::string>> entries = {{FUSE_ROOT_ID, "."}, {FUSE_ROOT_ID, ".."}};
    {
      std::lock_guard lock(fs->mu_);
      for (const auto& [inode, img] : fs->by_inode_) entries.push_back({inode, img->name});
    }
    std::string buf;
    for (size_t i = static_cast<size_t>(std::max<off_t>(off, 0)); i < entries.size(); ++i) {
      struct stat st = {};
      st.st_ino = entries[i].first;
      st.st_mode = i < 2 ? S_IFDIR : S_IFREG;
      size_t need = fuse_add_direntry(req, nullptr, 0, entries[i].second.c_str(), nullptr, 0);
      if (buf.size() + need > size) break;
      size_t at = buf.size();
      buf.resize(at + need);
      fuse_add_direntry(req, buf.data() + at, need, entries[i].second.c_str(), &st, static_cast<off_t>(i + 1));
    }
    fuse_reply_buf(req, buf.data(), buf.size());
  }
};

namespace {

// Aborts the FUSE connection behind mountpoint's file system (device st_dev) through fusectl, so
// that threads blocked on it return even while a detached mount still holds one of its files.
void AbortConnection(dev_t dev) {
  const char* ctl = "/sys/fs/fuse/connections";
  std::string abort = std::string(ctl) + "/" + std::to_string(minor(dev)) + "/abort";
  if (access(abort.c_str(), W_OK) != 0) mount("fusectl", ctl, "fusectl", 0, nullptr);
  std::ofstream(abort) << "1";
}

}  // namespace

Result<std::unique_ptr<LazyImageFs>> LazyImageFs::Mount(const std::string& mountpoint, ChunkReader reader) {
  umount2(mountpoint.c_str(), MNT_DETACH);  // a stale mount of an earlier process; EINVAL if none
  std::unique_ptr<LazyImageFs> fs(new LazyImageFs());
  fs->mountpoint_ = mountpoint;
  fs->reader_ = std::move(reader);

  static const struct fuse_lowlevel_ops kOps = [] {
    struct fuse_lowlevel_ops ops = {};
    ops.lookup = FsCallbacks::Lookup;
    ops.getattr = FsCallbacks::GetAttr;
    ops.open = FsCallbacks::Open;
    ops.release = FsCallbacks::Release;
    ops.read = FsCallbacks::Read;
    ops.readdir = FsCallbacks::ReadDir;
    return ops;
  }();
  // allow_other: the kernel (erofs) and every sandbox uid read these files; default_permissions
  // lets the kernel enforce the 0444 modes.
  const char* argv[] = {"kindling-images", "-o",
                        "ro,allow_other,default_permissions,fsname=kindling-images,subtype=kindling-images"};
  struct fuse_args args = FUSE_ARGS_INIT(3, const_cast<char**>(argv));
  fs->session_ = fuse_session_new(&args, &kOps, sizeof kOps, fs.get());
  fuse_opt_free_args(&args);
  if (!fs->session_) return Status::Error("cannot create the FUSE session for " + mountpoint);
  if (fuse_session_mount(fs->session_, mountpoint.c_str()) != 0) {
    fuse_session_destroy(fs->session_);
    fs->session_ = nullptr;
    return Status::Error("cannot mount the image file system on " + mountpoint + " (is /dev/fuse there?)");
  }
  fs->loop_ = std::thread([se = fs->session_] {
    struct fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(config, 16);  // reads block on chunk fetches: keep many in flight
    fuse_loop_cfg_set_idle_threads(config, 4);
    fuse_session_loop_mt(se, config);
    fuse_loop_cfg_destroy(config);
  });
  return fs;
}

LazyImageFs::~LazyImageFs() {
  if (!session_) return;
  struct stat st;
  bool have_dev = stat(mountpoint_.c_str(), &st) == 0;
  fuse_session_exit(session_);
  fuse_session_unmount(session_);
  if (have_dev) AbortConnection(st.st_dev);
  if (loop_.joinable()) loop_.join();
  fuse_session_destroy(session_);
}

std::string LazyImageFs::Add(const Manifest& manifest, StartLayout layout) {
  Digest id = manifest.Id();
  std::lock_guard lock(mu_);
  if (!inode_of_.count(id)) {
    auto img = std::make_shared<Image>();
    img->inode = next_inode_++;
    img->id = id;
    img->name = id.Hex();
    img->manifest = manifest;
    img->size = manifest.size - std::min(manifest.size, layout.header_bytes);
    img->layout = std::move(layout);
    img->touched.assign(manifest.chunks.size(), false);
    img->block_touched.assign((img->size + kLayoutBlock - 1) / kLayoutBlock, false);
    inode_of_[id] = img->inode;
    by_inode_[img->inode] = std::move(img);
  }
  return mountpoint_ + "/" + id.Hex();
}

void LazyImageFs::Remove(const Digest& id) {
  {
    std::lock_guard lock(mu_);
    auto it = inode_of_.find(id);
    if (it == inode_of_.end()) return;
    by_inode_.erase(it->second);
    inode_of_.erase(it);
  }
  // The kernel caches names for kImmutableTimeout: drop this one now.
  std::string name = id.Hex();
  fuse_lowlevel_notify_inval_entry(session_, FUSE_ROOT_ID, name.c_str(), name.size());
}

std::string LazyImageFs::PathOf(const Digest& id) const { return mountpoint_ + "/" + id.Hex(); }

std::shared_ptr<LazyImageFs::Image> LazyImageFs::Find(const Digest& id) const {
  std::lock_guard lock(mu_);
  auto it = inode_of_.find(id);
  return it == inode_of_.end() ? nullptr : by_inode_.at(it->second);
}

std::vector<uint32_t> LazyImageFs::FirstReads(const Digest& id) const {
  auto img = Find(id);
  if (!img) return {};
  std::lock_guard lock(img->mu);
  return img->order;
}

std::vector<uint32_t> LazyImageFs::FirstReadBlocks(const Digest& id) const {
  auto img = Find(id);
  if (!img) return {};
  std::lock_guard lock(img->mu);
  return img->block_order;
}

ImageReadStats LazyImageFs::Stats(const Digest& id) const {
  auto img = Find(id);
  if (!img) return {};
  std::lock_guard lock(img->mu);
  return img->stats;
}

std::string LazyImageFs::LastError(const Digest& id) const {
  auto img = Find(id);
  if (!img) return "";
  std::lock_guard lock(img->mu);
  return img->last_error;
}

}  // namespace kindling::images
