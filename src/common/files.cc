#include "common/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace kindling {

Status WriteFile(const std::string& path, const std::string& data) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Errno("open " + path);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return Status::Errno("write " + path, e);
    }
    off += static_cast<size_t>(n);
  }
  if (close(fd) != 0) return Status::Errno("close " + path);
  return Status::Ok();
}

Status ReadFile(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::Errno("open " + path);
  out->clear();
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return Status::Errno("read " + path, e);
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return Status::Ok();
}

Status MakeDirs(const std::string& path, unsigned mode) {
  if (path.empty()) return Status::Ok();
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return Status::Errno("mkdir " + cur);
  }
  return Status::Ok();
}

namespace {
Status RemoveAt(int parent_fd, const char* name, dev_t dev) {
  struct stat st;
  if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT ? Status::Ok() : Status::Errno(std::string("stat ") + name);
  }
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(parent_fd, name, 0) != 0 && errno != ENOENT)
      return Status::Errno(std::string("unlink ") + name);
    return Status::Ok();
  }
  if (st.st_dev != dev) return Status::Error(std::string("refusing to cross mount at ") + name);
  int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Status::Errno(std::string("open ") + name);
  DIR* dir = fdopendir(fd);
  if (!dir) {
    close(fd);
    return Status::Errno(std::string("fdopendir ") + name);
  }
  Status result;
  while (struct dirent* e = readdir(dir)) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    Status s = RemoveAt(fd, e->d_name, dev);
    if (!s.ok() && result.ok()) result = s;
  }
  closedir(dir);
  if (unlinkat(parent_fd, name, AT_REMOVEDIR) != 0 && errno != ENOENT && result.ok())
    result = Status::Errno(std::string("rmdir ") + name);
  return result;
}
}  // namespace

Status RemoveTree(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return errno == ENOENT ? Status::Ok() : Status::Errno("stat " + path);
  return RemoveAt(AT_FDCWD, path.c_str(), st.st_dev);
}

}  // namespace kindling
