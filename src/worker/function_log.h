// FunctionLog: the on-disk log of one function, <logs_root>/<function>.log, rotated to .log.1 at
// max_bytes so a function that writes gigabytes keeps at most twice that on disk.
//
// Thread safety: not thread-safe (used from the worker's thread).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kindling {

class FunctionLog {
 public:
  FunctionLog(std::string path, uint64_t max_bytes = 64ull << 20);
  ~FunctionLog();
  FunctionLog(const FunctionLog&) = delete;
  FunctionLog& operator=(const FunctionLog&) = delete;

  void Append(std::string_view text);

 private:
  void Open();
  std::string path_;
  uint64_t max_bytes_;
  uint64_t size_ = 0;
  int fd_ = -1;
};

}  // namespace kindling
