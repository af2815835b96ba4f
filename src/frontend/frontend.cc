#include "frontend/frontend.h"

#include <nlohmann/json.hpp>
#include <random>

#include "common/ids.h"
#include "common/validation.h"
#include "frontend/function_name.h"
#include "store/alias.h"

namespace kindling {

using boost::asio::awaitable;

std::variant<FunctionConfig, ApiError> Frontend::Resolve(const FunctionRef& ref, AliasRouting routing) {
  auto not_found = [&] {
    std::string arn = arn_.FunctionArn(ref.name) + (ref.qualifier.empty() ? "" : ":" + ref.qualifier);
    return ApiError::NotFound("Function not found: " + arn);
  };
  std::string version = ref.qualifier.empty() ? "$LATEST" : ref.qualifier;
  if (version != "$LATEST" && !IsPublishedVersion(version)) {
    const AliasConfig* alias = registry_.FindAlias(ref.name, version);
    if (!alias) return not_found();
    if (routing == AliasRouting::kRouted && !alias->additional_version.empty()) {
      // Per-invocation draw; a generator per thread, seeded once from the OS.
      thread_local std::mt19937_64 rng{std::random_device{}()};
      version = ChooseAliasVersion(*alias, std::uniform_real_distribution<double>(0.0, 1.0)(rng));
    } else {
      version = alias->function_version;
    }
  }
  const FunctionConfig* found = registry_.Find(ref.name, version);
  if (!found) return not_found();
  return *found;  // a copy: the registry may change while the invocation runs
}

std::variant<PreparedInvoke, ApiError> Frontend::Prepare(InvokeCall call) {
  FunctionRef ref;
  if (auto err = ParseFunctionRef(call.function, call.qualifier, &ref)) return *err;
  if (auto err = CheckArnScope(ref, arn_.region, arn_.account_id)) return *err;
  const std::string& type = call.invocation_type;
  if (!type.empty() && type != "RequestResponse" && type != "DryRun" && type != "Event")
    return ApiError::Validation(ConstraintMessage(
        type.substr(0, 64), "invocationType", "Member must satisfy enum value set: [Event, RequestResponse, DryRun]"));
  if (!call.log_type.empty() && call.log_type != "None" && call.log_type != "Tail")
    return ApiError::Validation(ConstraintMessage(call.log_type.substr(0, 64), "logType",
                                                  "Member must satisfy enum value set: [None, Tail]"));

  auto resolved = Resolve(ref);
  if (auto* err = std::get_if<ApiError>(&resolved)) return *err;

  bool async = type == "Event";
  size_t limit = async ? kMaxAsyncPayloadBytes : kMaxSyncPayloadBytes;
  if (call.payload.size() > limit)
    return ApiError::TooLarge("Request must be smaller than " + std::to_string(limit) +
                              " bytes for the InvokeFunction operation");
  if (call.payload.empty()) call.payload = "{}";
  if (!nlohmann::json::accept(call.payload))
    return ApiError::InvalidContent("Could not parse request body into json: Could not parse payload into json");

  PreparedInvoke p;
  if (!call.client_context.empty()) {
    bool ok = call.client_context.size() <= kMaxClientContextBytes &&
              Base64Decode(call.client_context, &p.client_context) &&
              nlohmann::json::accept(p.client_context);
    if (!ok) return ApiError::InvalidParameter("Client context must be a valid Base64-encoded JSON object.");
  }
  p.fn = std::move(std::get<FunctionConfig>(resolved));
  p.invoked_arn = arn_.FunctionArn(ref.name) + (ref.qualifier.empty() ? "" : ":" + ref.qualifier);
  p.invocation_type = type.empty() ? "RequestResponse" : type;
  p.log_type = call.log_type;
  p.payload = std::move(call.payload);
  return p;
}

awaitable<std::variant<InvokeReply, ApiError>> Frontend::Invoke(InvokeCall call, std::string request_id) {
  auto prepared = Prepare(std::move(call));
  if (auto* err = std::get_if<ApiError>(&prepared)) co_return *err;
  PreparedInvoke& p = std::get<PreparedInvoke>(prepared);
  if (p.invocation_type == "Event")  // the API hands Event calls to the AsyncInvoker instead
    co_return ApiError::Service("an Event invocation reached the synchronous path");
  co_return co_await Run(std::move(p), std::move(request_id));
}

awaitable<std::variant<InvokeReply, ApiError>> Frontend::Run(PreparedInvoke p, std::string request_id) {
  const FunctionConfig& fn = p.fn;
  InvokeReply reply;
  reply.executed_version = fn.version;
  if (p.invocation_type == "DryRun") {
    reply.status = 204;
    co_return reply;
  }
  if (auto throttled = counting_.Acquire(fn.name)) {
    metrics_.RecordThrottle(fn.name);
    co_return *throttled;
  }
  InvokeRequest request;
  request.request_id = request_id;
  request.payload = std::move(p.payload);
  request.invoked_arn = std::move(p.invoked_arn);
  request.client_context = std::move(p.client_context);
  request.function_timeout = std::chrono::seconds(fn.timeout_s);
  request.trace_id = "Root=1-" + request_id.substr(0, 8) + "-" + HexEncode(request_id.substr(9, 12)) +
                     ";Parent=" + request_id.substr(24, 12) + "0000;Sampled=0";
  auto result = co_await RunOnSandbox(fn, request);
  counting_.Release(fn.name);
  if (!result.ok() && result.status().IsThrottled()) {
    metrics_.RecordThrottle(fn.name);
    co_return ApiError{429, "TooManyRequestsException", "Rate Exceeded.", kScalingThrottled};
  }
  if (!result.ok()) {
    metrics_.RecordServiceError(fn.name);
    co_return ApiError::Service("Kindling could not run the function: " + result.status().message());
  }
  InvokeResult& r = *result;
  metrics_.RecordInvocation(fn.name, !r.function_error.empty(), r.cold_start, r.duration_ms);
  reply.body = std::move(r.payload);
  reply.function_error = std::move(r.function_error);
  reply.executed_version = r.executed_version;
  if (p.log_type == "Tail") {
    std::string_view tail = r.log;
    if (tail.size() > kLogTailBytes) tail = tail.substr(tail.size() - kLogTailBytes);
    reply.log_result = Base64Encode(tail);
  }
  co_return reply;
}

awaitable<Result<InvokeResult>> Frontend::RunOnSandbox(const FunctionConfig& fn, const InvokeRequest& request) {
  for (int attempt = 0;; ++attempt) {
    auto lease = co_await assignment_.Acquire(fn);
    if (!lease.ok()) {
      const Status& s = lease.status();
      if (!s.IsFunctionError()) co_return s;
      InvokeResult failed;  // the function cannot start, e.g. no bootstrap in its package
      failed.function_error = "Unhandled";
      failed.cold_start = true;
      failed.executed_version = fn.version;
      failed.payload = nlohmann::json{{"errorType", s.lambda_error_type()},
                                      {"errorMessage", "RequestId: " + request.request_id + " Error: " + s.message()}}
                           .dump();
      co_return failed;
    }
    // (No co_await inside ?: or &&: GCC 12 miscompiles it.)
    Result<InvokeResult> result = Status::NotFound("worker " + lease->worker + " is gone");
    if (WorkerClient* worker = workers_.Find(lease->worker)) result = co_await worker->Invoke(*lease, request);
    // Not delivered: the worker refused the lease (sandbox gone, stale), could not be reached, or
    // the runtime ended before taking the event. The function never saw it: it may run elsewhere.
    const Status& s = result.status();
    bool undelivered = result.ok() ? result->undelivered
                                   : s.IsNotFound() || s.IsConflict() || s.code() == StatusCode::kUnavailable;
    assignment_.Release(*lease, result.ok() && !result->sandbox_gone);
    if (!undelivered) co_return result;
    if (attempt == 1)
      co_return Status::Unavailable("the sandbox ended before its runtime took the event, twice");
  }
}

}  // namespace kindling
