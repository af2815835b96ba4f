// Wall-clock helpers in the formats Lambda uses.
#pragma once

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

namespace kindling {

inline int64_t NowEpochMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-11-27T22:40:10.123+0000", Lambda's LastModified format.
inline std::string LambdaTimestamp(int64_t epoch_ms = NowEpochMs()) {
  time_t secs = static_cast<time_t>(epoch_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%03d+0000", static_cast<int>(epoch_ms % 1000));
  return buf;
}

// "2026-11-27T22:40:10.123Z", used in log lines.
inline std::string IsoTimestamp(int64_t epoch_ms = NowEpochMs()) {
  std::string s = LambdaTimestamp(epoch_ms);
  return s.substr(0, 23) + "Z";
}

}  // namespace kindling
