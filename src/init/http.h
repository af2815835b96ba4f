// The HTTP/1.1 subset kindling-init speaks on the Runtime API: request heads, chunked bodies,
// routes. Pure functions over bytes, no I/O. The input is untrusted (the runtime is user code):
// every function bounds its work and reports malformed input instead of asserting.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kindling::init::http {

constexpr size_t kMaxHeadBytes = 64 * 1024;  // request line + headers
// Lambda's limit on a response payload; larger bodies get 413 (and, for an invocation result,
// Function.ResponseSizeTooLarge).
constexpr uint64_t kMaxBodyBytes = 6291556;

enum class ParseStatus {
  kOk,          // *head is filled
  kIncomplete,  // need more bytes
  kBad,         // malformed: 400 and close
  kTooLarge,    // head over kMaxHeadBytes: 431 and close
  kNotImplemented,  // a Transfer-Encoding other than chunked: 501 and close
};

// A parsed request head. The string_views point into the parsed buffer.
struct RequestHead {
  size_t head_bytes = 0;       // bytes up to and including the blank line
  std::string_view method;
  std::string_view path;       // target without the query string (and without scheme://authority)
  bool keep_alive = true;
  bool chunked = false;
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool expect_continue = false;
  std::string_view function_error_type;  // Lambda-Runtime-Function-Error-Type
};

// Parses the request head at the start of buf. *scan is where the search for the end of the head
// resumes (start with 0; kept across kIncomplete calls so parsing is linear in the bytes received).
// Leading empty lines (CRLF between pipelined requests) are counted into head_bytes.
ParseStatus ParseRequestHead(std::string_view buf, size_t* scan, RequestHead* head);

// Incremental, in-place decoder of a chunked body. The encoded bytes are buf[*pos, len); decoded
// bytes are moved down to buf[*out, ...) (*out <= *pos always, so this never needs more space).
class ChunkedDecoder {
 public:
  enum Result { kDone = 1, kNeedMore = 0, kBad = -1, kTooLarge = -2 };
  // On kDone, *pos is one past the final CRLF (the end of the request).
  Result Run(char* buf, size_t len, size_t* pos, size_t* out, uint64_t max_body);
  uint64_t decoded() const { return decoded_; }
  void Reset() { *this = ChunkedDecoder(); }

 private:
  enum State { kSizeLine, kData, kDataCrlf, kTrailer };
  State state_ = kSizeLine;
  uint64_t remaining_ = 0;  // of the current chunk
  uint64_t decoded_ = 0;
  size_t trailer_bytes_ = 0;
};

enum class Route { kNext, kResponse, kError, kInitError, kNotFound };
// Matches /2018-06-01/runtime/...; *id receives the request id of /invocation/{id}/....
Route MatchRoute(std::string_view path, std::string_view* id);

// The value of the top-level "errorType" string in a Lambda error document, or empty. Cheap and
// forgiving: a bounded scan, not a JSON parser; returns empty for escapes or odd characters.
std::string_view ExtractErrorType(std::string_view json);

}  // namespace kindling::init::http
