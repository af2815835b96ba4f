// Status and Result<T>: errors cross module boundaries as values, never as exceptions.
//
// A Status carries a Code (what kind of failure: callers branch on it through the predicates,
// never on message text), a message for people, the errno of a failed system call (0 otherwise)
// and, for kFunctionError, the Lambda error type the function's fault is reported under
// ("Runtime.InvalidEntrypoint"). Codes travel between processes by name (CodeName / ParseCode).
#pragma once

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace kindling {

enum class StatusCode : uint8_t {
  kOk = 0,
  kUnknown,           // a failure with no better code: not retried
  kInvalidArgument,   // the request itself is wrong (a peer rejected it): never retried
  kNotFound,          // the thing named does not exist (a chunk, a sandbox, a key)
  kConflict,          // the thing is in another state (exists, busy, a stale lease)
  kUnavailable,       // a peer or resource could not be reached: retrying may succeed
  kDeadlineExceeded,  // no answer in time: retrying may succeed (the work may have happened)
  kThrottled,         // refused by a rate or concurrency limit
  kCorrupt,           // stored or received bytes fail their check
  kFunctionError,     // the function's own fault; lambda_error_type() names it
};

// "NotFound", "Unavailable", ...; ParseCode is its inverse (kUnknown for anything else).
const char* CodeName(StatusCode code);
StatusCode ParseCode(std::string_view name);

class Status {
 public:
  using Code = StatusCode;
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(Code::kUnknown, std::move(message)); }
  static Status Make(Code code, std::string message) { return Status(code, std::move(message)); }
  static Status InvalidArgument(std::string m) { return Status(Code::kInvalidArgument, std::move(m)); }
  static Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
  static Status Conflict(std::string m) { return Status(Code::kConflict, std::move(m)); }
  static Status Unavailable(std::string m) { return Status(Code::kUnavailable, std::move(m)); }
  static Status DeadlineExceeded(std::string m) { return Status(Code::kDeadlineExceeded, std::move(m)); }
  static Status Throttled(std::string m) { return Status(Code::kThrottled, std::move(m)); }
  static Status Corrupt(std::string m) { return Status(Code::kCorrupt, std::move(m)); }
  // The function's fault, reported to its caller as a function error of that Lambda type.
  static Status FunctionError(std::string lambda_error_type, std::string message) {
    Status s(Code::kFunctionError, std::move(message));
    s.lambda_error_type_ = std::move(lambda_error_type);
    return s;
  }
  // A failed system call: "context: strerror(err)", keeping errno; the code follows from it.
  static Status Errno(const std::string& context, int err = errno) {
    Status s(CodeOfErrno(err), context + ": " + std::strerror(err));
    s.errno_ = err;
    return s;
  }

  bool ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return ok(); }
  Code code() const { return code_; }
  const std::string& message() const {
    static const std::string kOk = "OK";
    return ok() ? kOk : message_;
  }
  int err() const { return errno_; }
  const std::string& lambda_error_type() const { return lambda_error_type_; }

  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsConflict() const { return code_ == Code::kConflict; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsThrottled() const { return code_ == Code::kThrottled; }
  bool IsCorrupt() const { return code_ == Code::kCorrupt; }
  bool IsFunctionError() const { return code_ == Code::kFunctionError; }
  // Worth another try (with backoff) when the operation is idempotent.
  bool IsRetryable() const { return code_ == Code::kUnavailable || code_ == Code::kDeadlineExceeded; }

  // The same error with "context: " before its message (code, errno and Lambda type kept).
  Status WithContext(const std::string& context) const {
    if (ok()) return *this;
    Status s = *this;
    s.message_ = context + ": " + message_;
    return s;
  }

 private:
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Code CodeOfErrno(int err) {
    switch (err) {
      case ENOENT: return Code::kNotFound;
      case EEXIST: case EBUSY: return Code::kConflict;
      case ETIMEDOUT: return Code::kDeadlineExceeded;
      case ECONNREFUSED: case ECONNRESET: case EAGAIN: case EHOSTUNREACH: case ENETUNREACH: case EPIPE:
        return Code::kUnavailable;
      case EINVAL: return Code::kInvalidArgument;
      default: return Code::kUnknown;
    }
  }
  Code code_ = Code::kOk;
  std::string message_;
  int errno_ = 0;
  std::string lambda_error_type_;
};

inline const char* CodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "Ok";
    case StatusCode::kUnknown: return "Unknown";
    case StatusCode::kInvalidArgument: return "InvalidArgument";
    case StatusCode::kNotFound: return "NotFound";
    case StatusCode::kConflict: return "Conflict";
    case StatusCode::kUnavailable: return "Unavailable";
    case StatusCode::kDeadlineExceeded: return "DeadlineExceeded";
    case StatusCode::kThrottled: return "Throttled";
    case StatusCode::kCorrupt: return "Corrupt";
    case StatusCode::kFunctionError: return "FunctionError";
  }
  return "Unknown";
}

inline StatusCode ParseCode(std::string_view name) {
  for (int c = 0; c <= static_cast<int>(StatusCode::kFunctionError); ++c)
    if (name == CodeName(static_cast<StatusCode>(c))) return static_cast<StatusCode>(c);
  return StatusCode::kUnknown;
}

// Result<T> holds either a value or a non-OK Status.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}         // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT: must not be OK

  bool ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return ok(); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace kindling
