#include "async/event_invoke_config.h"

#include <regex>

#include "async/destination.h"
#include "common/validation.h"

namespace kindling {

using nlohmann::json;

namespace {

// Lambda's DestinationArn pattern.
const char* kDestinationPattern =
    "^$|arn:(aws[a-zA-Z0-9-]*):([a-zA-Z0-9\\-])+:([a-z]{2}(-gov)?-[a-z]+-\\d{1})?:(\\d{12})?:(.*)";

// Like IntInRange, and a JSON null reads as absent.
std::optional<ApiError> RangeField(const json& body, const char* key, const char* field, int lo, int hi,
                                   std::optional<int>* out) {
  if (!body.contains(key) || body[key].is_null()) return std::nullopt;
  int n = 0;
  if (auto e = IntInRange(body, key, field, lo, hi, &n)) return e;
  *out = n;
  return std::nullopt;
}

std::optional<ApiError> CheckDestination(const std::string& arn, const char* field, const ArnContext& ctx) {
  if (arn.empty()) return std::nullopt;
  static const std::regex kPattern(kDestinationPattern);
  if (arn.size() > 350 || !std::regex_match(arn, kPattern))
    return ApiError::Validation(ConstraintMessage(arn, field, std::string("Member must satisfy regular expression pattern: ") +
                                                           kDestinationPattern));
  Destination d = ParseDestination(arn);
  if (d.kind == Destination::kUnsupported)
    return ApiError::InvalidParameter("The destination ARN " + arn +
                                      " is not supported by Kindling: use a Lambda function, or an SQS queue, "
                                      "SNS topic or EventBridge event bus ARN (delivered to a local queue).");
  if (d.kind != Destination::kLambda && d.kind != Destination::kLocalQueue)
    return ApiError::InvalidParameter("The destination ARN " + arn + " is invalid.");
  if (d.kind == Destination::kLambda && (d.region != ctx.region || d.account != ctx.account_id))
    return ApiError::InvalidParameter("The destination ARN " + arn +
                                      " is invalid: it names a function outside this server's region and account.");
  return std::nullopt;
}

// DestinationConfig.{OnSuccess,OnFailure}.Destination; absent keeps *out.
std::optional<ApiError> DestinationField(const json& dc, const char* key, const char* field,
                                         const ArnContext& ctx, std::string* out) {
  if (!dc.contains(key) || dc[key].is_null()) return std::nullopt;
  const json& d = dc[key];
  if (!d.is_object()) return ApiError::InvalidParameter(std::string("DestinationConfig.") + key + " must be an object.");
  std::string arn;
  if (d.contains("Destination") && !d["Destination"].is_null()) {
    if (!d["Destination"].is_string())
      return ApiError::InvalidParameter(std::string("DestinationConfig.") + key + ".Destination must be a string.");
    arn = d["Destination"].get<std::string>();
  }
  if (auto e = CheckDestination(arn, field, ctx)) return e;
  *out = arn;
  return std::nullopt;
}

}  // namespace

json ToApiJson(const EventInvokeConfig& c, const std::string& function_arn) {
  json out = {{"LastModified", c.last_modified_s}, {"FunctionArn", function_arn}};
  if (c.maximum_retry_attempts) out["MaximumRetryAttempts"] = *c.maximum_retry_attempts;
  if (c.maximum_event_age_s) out["MaximumEventAgeInSeconds"] = *c.maximum_event_age_s;
  json dc = {{"OnSuccess", json::object()}, {"OnFailure", json::object()}};
  if (!c.on_success.empty()) dc["OnSuccess"]["Destination"] = c.on_success;
  if (!c.on_failure.empty()) dc["OnFailure"]["Destination"] = c.on_failure;
  out["DestinationConfig"] = dc;
  return out;
}

json ToStoredJson(const EventInvokeConfig& c) {
  json out = ToApiJson(c, "");
  out.erase("FunctionArn");
  return out;
}

bool FromStoredJson(const json& doc, EventInvokeConfig* c) {
  try {
    c->last_modified_s = doc.at("LastModified").get<double>();
    if (doc.contains("MaximumRetryAttempts")) c->maximum_retry_attempts = doc["MaximumRetryAttempts"].get<int>();
    if (doc.contains("MaximumEventAgeInSeconds")) c->maximum_event_age_s = doc["MaximumEventAgeInSeconds"].get<int>();
    const json& dc = doc.at("DestinationConfig");
    c->on_success = dc.at("OnSuccess").value("Destination", "");
    c->on_failure = dc.at("OnFailure").value("Destination", "");
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

std::optional<ApiError> ApplyEventInvokeConfig(const json& body, bool replace, const ArnContext& ctx,
                                               EventInvokeConfig* c) {
  EventInvokeConfig next = replace ? EventInvokeConfig{} : *c;
  if (auto e = RangeField(body, "MaximumRetryAttempts", "maximumRetryAttempts", 0, 2, &next.maximum_retry_attempts))
    return e;
  if (auto e = RangeField(body, "MaximumEventAgeInSeconds", "maximumEventAgeInSeconds", 60, 21600,
                          &next.maximum_event_age_s))
    return e;
  if (body.contains("DestinationConfig") && !body["DestinationConfig"].is_null()) {
    const json& dc = body["DestinationConfig"];
    if (!dc.is_object()) return ApiError::InvalidParameter("DestinationConfig must be an object.");
    if (auto e = DestinationField(dc, "OnSuccess", "destinationConfig.onSuccess.destination", ctx, &next.on_success))
      return e;
    if (auto e = DestinationField(dc, "OnFailure", "destinationConfig.onFailure.destination", ctx, &next.on_failure))
      return e;
  }
  *c = std::move(next);
  return std::nullopt;
}

std::optional<ApiError> ValidateDeadLetterTarget(const std::string& arn) {
  if (arn.empty()) return std::nullopt;
  static const std::regex kPattern("(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()");
  if (!std::regex_match(arn, kPattern))
    return ApiError::Validation(ConstraintMessage(arn, "deadLetterConfig.targetArn",
                                           "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()"));
  Destination d = ParseDestination(arn);
  if (d.kind != Destination::kLocalQueue || (d.service != "sqs" && d.service != "sns"))
    return ApiError::InvalidParameter("The dead-letter queue target " + arn +
                                      " is invalid: DeadLetterConfig.TargetArn must be an Amazon SQS queue or Amazon SNS topic ARN.");
  return std::nullopt;
}

}  // namespace kindling
