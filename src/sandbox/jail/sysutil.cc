#include "sandbox/jail/sysutil.h"

#include "common/files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>

namespace kindling::jail {

Status WriteCtl(const std::string& path, std::string_view data) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::Errno("open " + path);
  ssize_t n;
  do {
    n = write(fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  int e = errno;
  close(fd);
  if (n < 0) return Status::Errno("write '" + std::string(data) + "' to " + path, e);
  if (static_cast<size_t>(n) != data.size()) return Status::Error("short write to " + path);
  return Status::Ok();
}

Status ReadCtl(const std::string& path, std::string* out) { return ReadFile(path, out); }

uint64_t ParseKeyedU64(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == ' ') {
      return strtoull(std::string(line.substr(key.size() + 1)).c_str(), nullptr, 10);
    }
    pos = eol + 1;
  }
  return 0;
}

int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace kindling::jail
