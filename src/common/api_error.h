// ApiError: an error the Lambda API returns to its caller: HTTP status, the error type (sent as
// x-amzn-ErrorType) and a message; `reason` is set for 429s (TooManyRequestsException.Reason).
#pragma once

#include <string>

namespace kindling {

struct ApiError {
  int status = 500;
  std::string type = "ServiceException";
  std::string message;
  std::string reason;

  static ApiError InvalidParameter(std::string message) {
    return {400, "InvalidParameterValueException", std::move(message), ""};
  }
  // A request that breaks the API model's constraints ("1 validation error detected: ...").
  static ApiError Validation(std::string message) {
    return {400, "ValidationException", std::move(message), ""};
  }
  static ApiError InvalidContent(std::string message) {
    return {400, "InvalidRequestContentException", std::move(message), ""};
  }
  static ApiError NotFound(std::string message) {
    return {404, "ResourceNotFoundException", std::move(message), ""};
  }
  static ApiError Conflict(std::string message) {
    return {409, "ResourceConflictException", std::move(message), ""};
  }
  static ApiError TooLarge(std::string message) {
    return {413, "RequestTooLargeException", std::move(message), ""};
  }
  static ApiError Service(std::string message) {
    return {500, "ServiceException", std::move(message), ""};
  }
};

}  // namespace kindling
