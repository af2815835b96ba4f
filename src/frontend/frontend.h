// Frontend: the synchronous invoke entry. Validates the call (function reference, invocation type,
// payload size and JSON, client context), resolves the function version, admits it through
// Counting, takes a sandbox lease from the Assigner and sends the payload to the lease's worker
// itself (the assignment service never carries payloads).
//
// Thread safety: every method runs on the io_context thread.
#pragma once

#include "common/asio.h"
#include <string>
#include <variant>

#include "assignment/assignment_service.h"
#include "common/api_error.h"
#include "common/function.h"
#include "common/metrics.h"
#include "frontend/counting.h"
#include "frontend/function_name.h"
#include "store/function_registry.h"

namespace kindling {

constexpr size_t kMaxSyncPayloadBytes = 6291456;      // 6 MB request
constexpr size_t kMaxSyncResponseBytes = 6291556;     // what Lambda lets a function return
constexpr size_t kMaxAsyncPayloadBytes = 1048576;     // 1 MB event (InvocationType Event)
constexpr size_t kMaxClientContextBytes = 3583;
// TooManyRequestsException's Reason when a cold start exceeds the function's scaling rate.
constexpr const char* kScalingThrottled = "FunctionInvocationRateLimitExceeded";

struct InvokeCall {
  std::string function;         // FunctionName path parameter, URL-decoded
  std::string qualifier;        // ?Qualifier=
  std::string invocation_type;  // X-Amz-Invocation-Type ("" = RequestResponse)
  std::string log_type;         // X-Amz-Log-Type
  std::string client_context;   // X-Amz-Client-Context (base64)
  std::string payload;
};

// A validated invocation of a resolved function version.
struct PreparedInvoke {
  FunctionConfig fn;
  std::string invoked_arn;      // the ARN as the caller named it (with qualifier if any)
  std::string invocation_type;  // RequestResponse | DryRun | Event
  std::string log_type;
  std::string client_context;   // decoded JSON, or ""
  std::string payload;
};

struct InvokeReply {
  int status = 200;
  std::string body;
  std::string function_error;    // X-Amz-Function-Error
  std::string executed_version;  // X-Amz-Executed-Version
  std::string log_result;        // X-Amz-Log-Result (base64), when Tail was asked for
};

class Frontend {
 public:
  Frontend(FunctionRegistry& registry, Counting& counting, Assigner& assignment,
           const WorkerDirectory& workers, Metrics& metrics, ArnContext arn)
      : registry_(registry), counting_(counting), assignment_(assignment), workers_(workers),
        metrics_(metrics), arn_(arn) {}

  // Validates a call and resolves its function version (no side effects): the step the
  // asynchronous path takes before it accepts an event.
  std::variant<PreparedInvoke, ApiError> Prepare(InvokeCall call);
  // Prepare + Run for RequestResponse and DryRun calls.
  boost::asio::awaitable<std::variant<InvokeReply, ApiError>> Invoke(InvokeCall call,
                                                                     std::string request_id);
  // Admits a prepared call through Counting and runs it on a sandbox.
  boost::asio::awaitable<std::variant<InvokeReply, ApiError>> Run(PreparedInvoke prepared,
                                                                  std::string request_id);

  // How an alias with a second version (RoutingConfig) resolves: kRouted draws per call by the
  // alias's weight (invocations), kPrimary always gives its FunctionVersion (control plane).
  enum class AliasRouting { kRouted, kPrimary };
  // FunctionName + qualifier -> a function version: no qualifier or "$LATEST" -> $LATEST, a number
  // -> that published version, anything else -> the alias of that name. The one place qualifiers
  // are resolved. Unknown -> ResourceNotFoundException "Function not found: <arn>:<qualifier>".
  std::variant<FunctionConfig, ApiError> Resolve(const FunctionRef& ref,
                                                 AliasRouting routing = AliasRouting::kRouted);

 private:
  // Runs the invocation on a leased sandbox. An event that never reached the function (the
  // sandbox ended first, or the worker refused the lease) is run once more on a fresh lease.
  boost::asio::awaitable<Result<InvokeResult>> RunOnSandbox(const FunctionConfig& fn,
                                                            const InvokeRequest& request);

  FunctionRegistry& registry_;
  Counting& counting_;
  Assigner& assignment_;
  const WorkerDirectory& workers_;
  Metrics& metrics_;
  ArnContext arn_;
};

}  // namespace kindling
