// The control protocol between the worker (in kindlingd) and kindling-init (PID 1 of a sandbox),
// spoken over the stream socket the sandbox inherits as fd 3 (kControlFd).
//
// Byte layout of one frame (all integers little-endian):
//   u32 length   number of bytes that follow this field (type + fields), <= kMaxFrameBytes
//   u8  type     FrameType
//   fields       zero or more of: u32 size, then `size` bytes. Their number and order are fixed per
//                type (see FrameType); missing trailing fields decode as empty.
//
// Start of a sandbox:
//   init -> worker   kLog* (runtime output during its init phase)
//   init -> worker   kReady                      (the runtime asked for its first event)
//                    or kInitError and/or kExited (the runtime failed before asking)
// Flow of one invocation:
//   worker -> init   kInvoke                     (at most one outstanding; init holds it until the
//                                                 runtime asks /next)
//   init -> worker   kLog* (START line, runtime stdout/stderr, END and REPORT lines)
//   init -> worker   kResponse | kError          (or kInitError / kExited if the runtime fails)
//   init -> worker   kWaiting                    (the runtime asked /next again: it is idle, and
//                                                 the worker may freeze the sandbox)
// Runtime output goes out in kLog frames of up to 64 KiB, at most ~5 ms after init read it, or
// sooner together with the next result / kReady / kInitError / kExited. The START line is not
// written on its own either: it travels with the next frame init sends (runtime output, or
// END/REPORT and the result), so a warm invoke costs the worker one wakeup, not two or more. A
// worker that gives up on an invocation (timeout) may therefore not have seen START.
// If the runtime exits during an invocation, init sends END and REPORT for it, then kExited.
// init exits after kExited, on EOF of the control socket, and (non-zero) on a malformed frame, a
// frame type it does not accept, or a second kInvoke while one is outstanding.
// kindling-init keeps no state that exists only in its memory beyond the current invocation, so a
// restored sandbox can re-create its Runtime API connection: a /next asked while an invocation is
// delivered but unanswered gets that same invocation again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace kindling::protocol {

constexpr int kControlFd = 3;                      // inherited by kindling-init
constexpr uint32_t kMaxFrameBytes = 16u << 20;     // 6 MB payloads plus headers fit easily
constexpr size_t kFrameHeaderBytes = 5;            // u32 length + u8 type
constexpr size_t kFieldHeaderBytes = 4;            // u32 size

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
  kExited = 15,    // wait_status (decimal, as from waitpid), delivered ("1" when the runtime had
                   // received the outstanding invocation, "0" when there was none or it was still
                   // held): the runtime process ended
  kWaiting = 16,   // (no fields) the runtime asked for an event after its first and none is held
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

// Pieces of the encoding, for writers that gather a frame from separate buffers (writev):
// a frame is EncodeFrameHeader(type, sum over fields of (kFieldHeaderBytes + size)) followed, per
// field, by EncodeFieldHeader(size) and the field's bytes.
void EncodeFrameHeader(FrameType type, size_t fields_bytes, char out[kFrameHeaderBytes]);
void EncodeFieldHeader(uint32_t size, char out[kFieldHeaderBytes]);

// Incremental decoder for a byte stream. Feed bytes, then pop complete frames.
class FrameDecoder {
 public:
  FrameDecoder() = default;
  ~FrameDecoder();
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  void Feed(const char* data, size_t n);
  // Zero-copy feeding: returns space for at least n bytes (valid until the next call on this
  // decoder); read into it, then Commit the number of bytes actually written.
  char* FeedSpace(size_t n);
  void Commit(size_t n) { end_ += n; }
  // Returns 1 and fills *frame when a full frame is buffered, 0 when more bytes are needed,
  // -1 when the stream is malformed (oversized frame or a field overrunning its frame).
  // Reuses the capacity of frame->fields' strings.
  int Next(Frame* frame);
  size_t buffered() const { return end_ - off_; }
  // Frees the buffer if it is empty and larger than `keep` bytes (after a large frame).
  void ShrinkIfEmpty(size_t keep);

 private:
  char* buf_ = nullptr;
  size_t cap_ = 0;
  size_t off_ = 0;  // first unconsumed byte
  size_t end_ = 0;  // one past the last buffered byte
};

}  // namespace kindling::protocol
