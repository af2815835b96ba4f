// Small system-call helpers shared by the jail's files (parent side only: they allocate).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace kindling::jail {

// An owned file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Writes a control file (cgroup, /proc) in one write(2), without O_CREAT/O_TRUNC.
Status WriteCtl(const std::string& path, std::string_view data);
// Reads a small control file (< 64 KiB).
Status ReadCtl(const std::string& path, std::string* out);
// The value of "key <u64>" on its own line in text (cgroup keyed files); 0 when missing.
uint64_t ParseKeyedU64(std::string_view text, std::string_view key);
// Monotonic clock in nanoseconds.
int64_t NowNs();

}  // namespace kindling::jail
