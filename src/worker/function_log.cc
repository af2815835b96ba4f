#include "worker/function_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace kindling {

FunctionLog::FunctionLog(std::string path, uint64_t max_bytes)
    : path_(std::move(path)), max_bytes_(max_bytes) {
  Open();
}

FunctionLog::~FunctionLog() {
  if (fd_ >= 0) close(fd_);
}

void FunctionLog::Open() {
  fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  struct stat st;
  size_ = (fd_ >= 0 && fstat(fd_, &st) == 0) ? static_cast<uint64_t>(st.st_size) : 0;
}

void FunctionLog::Append(std::string_view text) {
  if (size_ + text.size() > max_bytes_ && size_ > 0) {
    if (fd_ >= 0) close(fd_);
    rename(path_.c_str(), (path_ + ".1").c_str());
    Open();
  }
  if (fd_ < 0) return;  // logging must never fail an invocation
  ssize_t n = write(fd_, text.data(), text.size());
  if (n > 0) size_ += static_cast<uint64_t>(n);
}

}  // namespace kindling
