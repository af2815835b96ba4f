// The control protocol between the worker (in kindlingd) and kindling-init (PID 1 of a sandbox),
// spoken over the stream socket the sandbox inherits as fd 3 (kControlFd).
//
// Byte layout of one frame (all integers little-endian):
//   u32 length   number of bytes that follow this field (type + fields), <= kMaxFrameBytes
//   u8  type     FrameType
//   fields       zero or more of: u32 size, then `size` bytes. Their number and order are fixed per
//                type (see FrameType); missing trailing fields decode as empty.
//
// Flow of one invocation:
//   worker -> init   kInvoke
//   init -> worker   kLog* (START line, runtime stdout/stderr, END and REPORT lines)
//   init -> worker   kResponse | kError          (or kInitError / kExited if the runtime fails)
// kindling-init keeps no state that exists only in its memory beyond the current invocation, so a
// restored sandbox can re-create its Runtime API connection.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kindling::protocol {

constexpr int kControlFd = 3;                      // inherited by kindling-init
constexpr uint32_t kMaxFrameBytes = 16u << 20;     // 6 MB payloads plus headers fit easily

enum class FrameType : uint8_t {
  // worker -> init
  kInvoke = 1,     // request_id, deadline_ms (epoch ms, decimal), invoked_function_arn, trace_id,
                   // client_context, cognito_identity, payload
  // init -> worker
  kReady = 10,     // init_duration_us (decimal): the runtime asked for its first event
  kResponse = 11,  // request_id, payload
  kError = 12,     // request_id, error_type, payload (the runtime's JSON error document)
  kInitError = 13, // error_type, payload (JSON error document)
  kLog = 14,       // bytes: log text (runtime output and START/END/REPORT lines)
  kExited = 15,    // wait_status (decimal, as from waitpid): the runtime process ended
};

struct Frame {
  FrameType type{};
  std::vector<std::string> fields;
  const std::string& field(size_t i) const {
    static const std::string kEmpty;
    return i < fields.size() ? fields[i] : kEmpty;
  }
};

// Appends the encoding of a frame to out.
void Encode(FrameType type, const std::vector<std::string_view>& fields, std::string* out);

// Incremental decoder for a byte stream. Feed bytes, then pop complete frames.
class FrameDecoder {
 public:
  void Feed(const char* data, size_t n) { buf_.append(data, n); }
  // Returns 1 and fills *frame when a full frame is buffered, 0 when more bytes are needed,
  // -1 when the stream is malformed (oversized frame or a field overrunning its frame).
  int Next(Frame* frame);
  size_t buffered() const { return buf_.size() - off_; }

 private:
  std::string buf_;
  size_t off_ = 0;
};

}  // namespace kindling::protocol
