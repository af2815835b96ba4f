// Status and Result<T>: errors cross module boundaries as values, never as exceptions.
#pragma once

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace kindling {

class Status {
 public:
  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message), 0); }
  // An error with a machine-readable code (a Lambda error type such as "Runtime.InvalidEntrypoint").
  static Status Coded(std::string code, std::string message) {
    Status s(std::move(message), 0);
    s.code_ = std::move(code);
    return s;
  }
  // An error from a system call: "context: strerror(err)", keeping errno.
  static Status Errno(const std::string& context, int err = errno) {
    return Status(context + ": " + std::strerror(err), err);
  }

  bool ok() const { return !message_.has_value(); }
  explicit operator bool() const { return ok(); }
  const std::string& message() const {
    static const std::string kOk = "OK";
    return message_ ? *message_ : kOk;
  }
  int err() const { return errno_; }
  const std::string& code() const { return code_; }

 private:
  Status(std::string message, int err) : message_(std::move(message)), errno_(err) {}
  std::optional<std::string> message_;
  int errno_ = 0;
  std::string code_;
};

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

 private:
  std::variant<T, Status> v_;
};

}  // namespace kindling
