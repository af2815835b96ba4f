// Asynchronous invocation in the Lambda API: InvocationType Event, the 2019-09-25
// event-invoke-config operations, and Kindling's local queues (/kindling/queues, where records
// for SQS / SNS / EventBridge destinations and dead letters are kept; see docs/async.md).
#include <nlohmann/json.hpp>

#include "api/lambda_api.h"
#include "common/validation.h"
#include "async/async_invoker.h"
#include "async/destination.h"
#include "common/clock.h"
#include "common/ids.h"
#include "frontend/function_name.h"

namespace kindling {

using boost::asio::awaitable;
using nlohmann::json;

namespace {

HttpResponse Json(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

HttpResponse Empty(int status) {
  HttpResponse r;
  r.status = status;
  r.content_type.clear();
  return r;
}

std::variant<json, ApiError> ParseObject(const std::string& body) {
  json doc = json::parse(body.empty() ? std::string("{}") : body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return ApiError::InvalidContent("Could not parse request body into json: the body is not a JSON object.");
  return doc;
}

ApiError AsyncOff() {
  return ApiError::InvalidParameter("Asynchronous invocation is not enabled on this Kindling server.");
}

// An integer query parameter in [lo, hi]; `fallback` when absent.
std::variant<int64_t, ApiError> QueryInt(const HttpRequest& req, const std::string& key, const std::string& field,
                                         int64_t lo, int64_t hi, int64_t fallback) {
  const std::string& text = req.Query(key);
  if (text.empty()) return fallback;
  char* end = nullptr;
  long long n = strtoll(text.c_str(), &end, 10);
  if (*end != '\0' || n < lo || n > hi)
    return ApiError::Validation(ConstraintMessage(text.substr(0, 32), field,
                                                  "Member must have value between " + std::to_string(lo) + " and " +
                                                      std::to_string(hi)));
  return static_cast<int64_t>(n);
}

}  // namespace

awaitable<HttpResponse> LambdaApi::InvokeEvent(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  if (!async_) co_return ErrorResponse(AsyncOff(), rid);
  InvokeCall call;
  call.function = name;
  call.qualifier = req.Query("Qualifier");
  call.invocation_type = "Event";
  call.log_type = req.Header("x-amz-log-type");
  call.client_context = req.Header("x-amz-client-context");
  call.payload = std::move(req.body);
  FunctionRef ref;
  if (auto e = ParseFunctionRef(call.function, call.qualifier, &ref)) co_return ErrorResponse(*e, rid);
  std::string client_context = call.client_context;
  // Validation, resolution (404 for an unknown function or qualifier) and the 1 MB limit (413),
  // all before anything is written.
  auto prepared = frontend_.Prepare(std::move(call));
  if (auto* e = std::get_if<ApiError>(&prepared)) co_return ErrorResponse(*e, rid);
  const PreparedInvoke& p = std::get<PreparedInvoke>(prepared);
  Status s = co_await async_->Accept(p, p.fn.name, ref.qualifier, client_context, rid);
  if (!s.ok()) co_return ErrorResponse(ApiError::Service("Kindling could not queue the event: " + s.message()), rid);
  // 202 only now: the event is committed to events.db.
  HttpResponse r = Empty(202);
  r.headers.emplace_back("x-amzn-RequestId", rid);
  co_return r;
}

awaitable<HttpResponse> LambdaApi::EventInvokeConfigRoute(HttpRequest& req, std::string_view rest) {
  std::string rid = NewRequestId();
  const std::string& m = req.method;
  size_t slash = rest.find('/');
  std::string name(rest.substr(0, slash));
  std::string sub = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  bool list = sub == "/event-invoke-config/list" && m == "GET";
  if (sub != "/event-invoke-config" && !list)
    co_return ErrorResponse({404, "UnknownOperationException", "Unknown operation " + m + " " + req.path, ""}, rid);
  if (!async_) co_return ErrorResponse(AsyncOff(), rid);

  std::string qualifier = list ? "" : req.Query("Qualifier");
  FunctionRef ref;
  if (auto e = ParseFunctionRef(name, qualifier, &ref)) co_return ErrorResponse(*e, rid);
  if (list && !ref.qualifier.empty())
    co_return ErrorResponse(ApiError::InvalidParameter("ListFunctionEventInvokeConfigs takes an unqualified function name."), rid);
  auto found = Resolve(name, qualifier);  // 404 for an unknown function, version or alias
  if (auto* e = std::get_if<ApiError>(&found)) co_return ErrorResponse(*e, rid);
  std::string fn_name = std::get<const FunctionConfig*>(found)->name;
  std::string config_qualifier = ref.qualifier.empty() ? "$LATEST" : ref.qualifier;
  std::string fn_arn = options_.arn.FunctionArn(fn_name) + ":" + config_qualifier;
  auto missing = [&] {
    return ApiError::NotFound("The function " + fn_arn + " doesn't have an EventInvokeConfig");
  };

  if (list) {
    auto max_items = QueryInt(req, "MaxItems", "maxItems", 1, 50, 50);
    if (auto* e = std::get_if<ApiError>(&max_items)) co_return ErrorResponse(*e, rid);
    std::string after;
    const std::string& marker = req.Query("Marker");
    if (!marker.empty() && !Base64Decode(marker, &after))
      co_return ErrorResponse(ApiError::InvalidParameter("Invalid Marker: " + marker.substr(0, 64)), rid);
    json configs = json::array();
    std::string last;
    bool more = false;
    for (const auto& [q, c] : async_->ListConfigs(fn_name)) {
      if (!after.empty() && q <= after) continue;
      if (static_cast<int64_t>(configs.size()) == std::get<int64_t>(max_items)) {
        more = true;
        break;
      }
      configs.push_back(ToApiJson(c, options_.arn.FunctionArn(fn_name) + ":" + q));
      last = q;
    }
    json body = {{"FunctionEventInvokeConfigs", configs}};
    if (more) body["NextMarker"] = Base64Encode(last);
    co_return Json(200, body);
  }
  if (m == "GET") {
    auto c = async_->GetConfig(fn_name, config_qualifier);
    if (!c) co_return ErrorResponse(missing(), rid);
    co_return Json(200, ToApiJson(*c, fn_arn));
  }
  if (m == "DELETE") {
    auto deleted = co_await async_->DeleteConfig(fn_name, config_qualifier);
    if (!deleted.ok()) co_return ErrorResponse(ApiError::Service(deleted.status().message()), rid);
    if (!*deleted) co_return ErrorResponse(missing(), rid);
    co_return Empty(204);
  }
  if (m != "PUT" && m != "POST")
    co_return ErrorResponse({405, "MethodNotAllowedException", "Method not allowed", ""}, rid);
  // PUT (Put...) replaces the whole configuration; POST (Update...) changes the fields given.
  auto parsed = ParseObject(req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) co_return ErrorResponse(*e, rid);
  EventInvokeConfig config;
  if (m == "POST") {
    auto existing = async_->GetConfig(fn_name, config_qualifier);
    if (!existing) co_return ErrorResponse(missing(), rid);
    config = *existing;
  }
  if (auto e = ApplyEventInvokeConfig(std::get<json>(parsed), m == "PUT", options_.arn, &config))
    co_return ErrorResponse(*e, rid);
  config.last_modified_s = NowEpochMs() / 1000.0;
  Status s = co_await async_->PutConfig(fn_name, config_qualifier, config);
  if (!s.ok()) co_return ErrorResponse(ApiError::Service(s.message()), rid);
  co_return Json(200, ToApiJson(config, fn_arn));
}

awaitable<HttpResponse> LambdaApi::LocalQueueRoute(HttpRequest& req, std::string_view rest) {
  std::string rid = NewRequestId();
  const std::string& m = req.method;
  if (!async_) co_return ErrorResponse(AsyncOff(), rid);
  if (!rest.empty() && rest.front() == '/') rest.remove_prefix(1);
  if (rest.empty()) {
    if (m != "GET") co_return ErrorResponse({405, "MethodNotAllowedException", "Method not allowed", ""}, rid);
    auto queues = co_await async_->ListQueues();
    if (!queues.ok()) co_return ErrorResponse(ApiError::Service(queues.status().message()), rid);
    json list = json::array();
    for (const auto& [name, n] : *queues) list.push_back({{"Name", name}, {"ApproximateNumberOfMessages", n}});
    co_return Json(200, {{"Queues", list}});
  }
  size_t slash = rest.find('/');
  std::string queue(rest.substr(0, slash));
  std::string sub = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
  if (!ValidQueueName(queue))
    co_return ErrorResponse(ApiError::InvalidParameter("Invalid local queue name: " + queue.substr(0, 100)), rid);
  if (sub.empty() && m == "GET") {
    auto max = QueryInt(req, "MaxNumberOfMessages", "maxNumberOfMessages", 1, 1000, 10);
    if (auto* e = std::get_if<ApiError>(&max)) co_return ErrorResponse(*e, rid);
    auto visibility = QueryInt(req, "VisibilityTimeout", "visibilityTimeout", 0, 43200, 30);
    if (auto* e = std::get_if<ApiError>(&visibility)) co_return ErrorResponse(*e, rid);
    auto got = co_await async_->Receive(queue, static_cast<int>(std::get<int64_t>(max)),
                                        std::get<int64_t>(visibility) * 1000);
    if (!got.ok()) co_return ErrorResponse(ApiError::Service(got.status().message()), rid);
    json messages = json::array();
    for (const ReceivedMessage& msg : *got) {
      json attrs = json::parse(msg.attributes, nullptr, false);
      json one = {{"MessageId", msg.message_id},
                  {"Body", msg.body},
                  {"TargetArn", msg.target_arn},
                  {"Attributes", {{"SentTimestamp", std::to_string(msg.sent_ms)},
                                  {"ApproximateReceiveCount", std::to_string(msg.receive_count)}}},
                  {"MessageAttributes", attrs.is_object() ? attrs : json::object()}};
      if (!msg.receipt_handle.empty()) one["ReceiptHandle"] = msg.receipt_handle;
      messages.push_back(one);
    }
    co_return Json(200, {{"Messages", messages}});
  }
  if (sub.empty() && m == "DELETE") {
    auto purged = co_await async_->PurgeQueue(queue);
    if (!purged.ok()) co_return ErrorResponse(ApiError::Service(purged.status().message()), rid);
    co_return Json(200, {{"Purged", *purged}});
  }
  if (sub.rfind("/messages/", 0) == 0 && sub.size() > 10 && m == "DELETE") {
    auto deleted = co_await async_->DeleteMessage(queue, sub.substr(10));
    if (!deleted.ok()) co_return ErrorResponse(ApiError::Service(deleted.status().message()), rid);
    if (!*deleted) co_return ErrorResponse(ApiError::NotFound("No such message in local queue " + queue), rid);
    co_return Json(200, json::object());
  }
  co_return ErrorResponse({404, "UnknownOperationException", "Unknown operation " + m + " " + req.path, ""}, rid);
}

}  // namespace kindling
