// Messages of the invoke path, shared by frontend, assignment and worker.
#pragma once

#include <chrono>
#include <string>

namespace kindling {

struct InvokeRequest {
  std::string request_id;
  std::string payload;            // opaque bytes
  std::string invoked_arn;        // the ARN the caller used (with qualifier if any)
  std::string client_context;     // base64 JSON from X-Amz-Client-Context, or ""
  std::string cognito_identity;
  std::string trace_id;
  std::chrono::milliseconds function_timeout{0};  // the function's Timeout (bounds remote calls)
};

struct InvokeResult {
  std::string payload;         // the function's response, or its error document
  std::string function_error;  // "" on success, "Unhandled" on a function error
  std::string log;             // this invocation's log text, at most the last kLogTailBytes
  std::string executed_version = "$LATEST";
  bool cold_start = false;
  bool undelivered = false;    // the sandbox died before its runtime took the event: safe to retry
  bool sandbox_gone = false;   // the sandbox did not survive the invocation (timeout, crash, exit)
  double duration_ms = 0;      // from sending the event to the result
};

constexpr size_t kLogTailBytes = 4096;

}  // namespace kindling
