#include "chunks/chunk_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <chrono>
#include <cstring>

#include "common/files.h"

namespace kindling::chunks {

namespace {

// zstd contexts are reused per thread (allocating one costs more than compressing a small chunk).
struct ZstdContexts {
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_DCtx* d = ZSTD_createDCtx();
  ~ZstdContexts() {
    ZSTD_freeCCtx(c);
    ZSTD_freeDCtx(d);
  }
};
ZstdContexts& Zstd() {
  thread_local ZstdContexts contexts;
  return contexts;
}

void PutLe32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint32_t GetLe32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

bool IsShardName(const char* name) {
  return strlen(name) == 2 && isxdigit(static_cast<unsigned char>(name[0])) &&
         isxdigit(static_cast<unsigned char>(name[1])) && !isupper(static_cast<unsigned char>(name[0])) &&
         !isupper(static_cast<unsigned char>(name[1]));
}

// Calls f(shard_dir, entry_name) for every entry of every shard directory.
template <typename F>
void ForEachEntry(const std::string& dir, F f) {
  DIR* top = opendir(dir.c_str());
  if (!top) return;
  while (struct dirent* s = readdir(top)) {
    if (!IsShardName(s->d_name)) continue;
    std::string shard = dir + "/" + s->d_name;
    DIR* d = opendir(shard.c_str());
    if (!d) continue;
    while (struct dirent* e = readdir(d)) {
      if (e->d_name[0] == '.' && (e->d_name[1] == 0 || (e->d_name[1] == '.' && e->d_name[2] == 0))) continue;
      f(shard, std::string(e->d_name));
    }
    closedir(d);
  }
  closedir(top);
}

Status WriteAll(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return Status::Errno("write " + path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return Status::Ok();
}

Status FsyncDir(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::Errno("open " + path);
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  return rc == 0 ? Status::Ok() : Status::Errno("fsync " + path, e);
}

constexpr char kTempPrefix[] = ".tmp-";

}  // namespace

Result<std::unique_ptr<ChunkStore>> ChunkStore::Open(const std::string& dir, ChunkStoreOptions options) {
  Status s = MakeDirs(dir, 0700);
  if (!s.ok()) return s;
  std::string lock_path = dir + "/.lock";
  int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Errno("open " + lock_path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK) return Status::Error("chunk store " + dir + " is already open (locked by " + lock_path + ")");
    return Status::Errno("flock " + lock_path, e);
  }
  std::unique_ptr<ChunkStore> store(new ChunkStore(dir, options, fd));
  uint64_t bytes = 0, count = 0;
  ForEachEntry(dir, [&](const std::string& shard, const std::string& name) {
    std::string path = shard + "/" + name;
    if (name.rfind(kTempPrefix, 0) == 0) {
      unlink(path.c_str());  // an interrupted Put: never renamed, so never visible
      return;
    }
    struct stat st;
    auto d = Digest::FromHex(name);
    if (!d || d->Hex() != name || lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    bytes += static_cast<uint64_t>(st.st_size);
    count++;
  });
  store->stored_bytes_ = bytes;
  store->stored_chunks_ = count;
  return store;
}

ChunkStore::~ChunkStore() { close(lock_fd_); }

std::string ChunkStore::PathOf(const Digest& d) const {
  std::string hex = d.Hex();
  return dir_ + "/" + hex.substr(0, 2) + "/" + hex;
}

void ChunkStore::Forget(uint64_t file_bytes) {
  stored_bytes_ -= std::min<uint64_t>(file_bytes, stored_bytes_.load());
  if (stored_chunks_ > 0) stored_chunks_--;
}

Status ChunkStore::Put(const Digest& digest, std::string_view data) {
  if (data.size() > kChunkSize)
    return Status::Error("chunk of " + std::to_string(data.size()) + " bytes is larger than " + std::to_string(kChunkSize));
  if (Sha256Of(data) != digest)
    return Status::Corrupt("chunk data does not match digest " + digest.Hex());
  return PutVerified(digest, data);
}

Status ChunkStore::PutVerified(const Digest& digest, std::string_view data) {
  if (data.size() > kChunkSize)
    return Status::Error("chunk of " + std::to_string(data.size()) + " bytes is larger than " + std::to_string(kChunkSize));
  std::string path = PathOf(digest);
  if (Touch(digest).ok()) return Status::Ok();  // already stored: keep it, restart its grace period

  std::string file(kChunkHeaderSize, '\0');
  memcpy(file.data(), kChunkFileMagic, 4);
  file[4] = static_cast<char>(kFormatRaw);
  PutLe32(file.data() + 8, static_cast<uint32_t>(data.size()));
  bool compressed = false;
  if (options_.compress && !data.empty()) {
    size_t bound = ZSTD_compressBound(data.size());
    file.resize(kChunkHeaderSize + bound);
    size_t n = ZSTD_compressCCtx(Zstd().c, file.data() + kChunkHeaderSize, bound, data.data(), data.size(),
                                 options_.zstd_level);
    if (!ZSTD_isError(n) && n < data.size()) {
      file.resize(kChunkHeaderSize + n);
      file[4] = static_cast<char>(kFormatZstd);
      compressed = true;
    }
  }
  if (!compressed) {
    file.resize(kChunkHeaderSize);
    file.append(data);
  }

  std::string hex = digest.Hex();
  std::string shard = dir_ + "/" + hex.substr(0, 2);
  if (mkdir(shard.c_str(), 0700) != 0 && errno != EEXIST) return Status::Errno("mkdir " + shard);
  std::string tmp = shard + "/" + kTempPrefix + hex + "-" + std::to_string(getpid()) + "-" +
                    std::to_string(temp_counter_++);
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Errno("open " + tmp);
  Status s = WriteAll(fd, file.data(), file.size(), tmp);
  if (s.ok() && options_.durable && fsync(fd) != 0) s = Status::Errno("fsync " + tmp);
  if (close(fd) != 0 && s.ok()) s = Status::Errno("close " + tmp);
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  {
    std::lock_guard lock(mu_);
    if (access(path.c_str(), F_OK) == 0) {  // another Put of the same chunk won the race
      unlink(tmp.c_str());
      return Status::Ok();
    }
    if (rename(tmp.c_str(), path.c_str()) != 0) {
      Status e = Status::Errno("rename " + tmp);
      unlink(tmp.c_str());
      return e;
    }
    stored_bytes_ += file.size();
    stored_chunks_++;
  }
  if (options_.durable) return FsyncDir(shard);
  return Status::Ok();
}

Status ChunkStore::Discard(const Digest& d, const std::string& why) {
  return Status::Corrupt("chunk " + d.Hex() + " in " + dir_ + " is corrupt (" + why + "); discarded");
}

Result<std::string> ChunkStore::Get(const Digest& digest) {
  std::string path = PathOf(digest);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound("chunk " + digest.Hex() + " not found");
    return Status::Errno("open " + path);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return Status::Errno("stat " + path, e);
  }
  // Deletes the file we read, unless it has been replaced meanwhile (by a good copy).
  auto discard = [&](const std::string& why) {
    close(fd);
    {
      std::lock_guard lock(mu_);
      struct stat now;
      if (stat(path.c_str(), &now) == 0 && now.st_ino == st.st_ino && now.st_dev == st.st_dev &&
          unlink(path.c_str()) == 0)
        Forget(static_cast<uint64_t>(st.st_size));
    }
    return Discard(digest, why);
  };
  const uint64_t max_file = kChunkHeaderSize + ZSTD_compressBound(kChunkSize);
  if (static_cast<uint64_t>(st.st_size) > max_file) return discard("file too large");
  if (static_cast<uint64_t>(st.st_size) < kChunkHeaderSize) return discard("truncated header");
  std::string file(static_cast<size_t>(st.st_size), '\0');
  size_t have = 0;
  while (have < file.size()) {
    ssize_t n = pread(fd, file.data() + have, file.size() - have, static_cast<off_t>(have));
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return Status::Errno("read " + path, e);
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  if (have != file.size()) return discard("truncated");
  if (memcmp(file.data(), kChunkFileMagic, 4) != 0) return discard("bad magic");
  uint8_t format = static_cast<uint8_t>(file[4]);
  uint32_t length = GetLe32(file.data() + 8);
  if (length > kChunkSize) return discard("length over the chunk size");
  std::string_view payload(file.data() + kChunkHeaderSize, file.size() - kChunkHeaderSize);
  std::string data;
  if (format == kFormatRaw) {
    if (payload.size() != length) return discard("raw payload length mismatch");
    data.assign(payload);
  } else if (format == kFormatZstd) {
    unsigned long long content = ZSTD_getFrameContentSize(payload.data(), payload.size());
    if (content != length) return discard("zstd frame length mismatch");
    data.resize(length);
    size_t n = ZSTD_decompressDCtx(Zstd().d, data.data(), data.size(), payload.data(), payload.size());
    if (ZSTD_isError(n) || n != length) return discard("undecodable zstd payload");
  } else {
    return discard("unknown format " + std::to_string(format));
  }
  if (Sha256Of(data) != digest) return discard("digest mismatch");
  close(fd);
  return data;
}

bool ChunkStore::Has(const Digest& digest) { return access(PathOf(digest).c_str(), F_OK) == 0; }

Status ChunkStore::Touch(const Digest& digest) {
  std::string path = PathOf(digest);
  if (utimensat(AT_FDCWD, path.c_str(), nullptr, 0) != 0) {
    if (errno == ENOENT) return Status::NotFound("chunk " + digest.Hex() + " not found");
    return Status::Errno("utimensat " + path);
  }
  return Status::Ok();
}

Result<double> ChunkStore::AgeSeconds(const Digest& digest) {
  std::string path = PathOf(digest);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::NotFound("chunk " + digest.Hex() + " not found");
    return Status::Errno("stat " + path);
  }
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return double(now.tv_sec - st.st_mtim.tv_sec) + double(now.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
}

Status ChunkStore::Remove(const Digest& digest) {
  std::string path = PathOf(digest);
  std::lock_guard lock(mu_);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return errno == ENOENT ? Status::Ok() : Status::Errno("stat " + path);
  if (unlink(path.c_str()) != 0) return errno == ENOENT ? Status::Ok() : Status::Errno("unlink " + path);
  Forget(static_cast<uint64_t>(st.st_size));
  return Status::Ok();
}

std::vector<Digest> ChunkStore::List() {
  std::vector<Digest> out;
  ForEachEntry(dir_, [&](const std::string&, const std::string& name) {
    if (auto d = Digest::FromHex(name); d && d->Hex() == name) out.push_back(*d);
  });
  return out;
}

Result<uint64_t> ChunkStore::FileBytes(const Digest& digest) {
  std::string path = PathOf(digest);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::NotFound("chunk " + digest.Hex() + " not found");
    return Status::Errno("stat " + path);
  }
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace kindling::chunks
