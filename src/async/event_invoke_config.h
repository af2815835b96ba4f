// EventInvokeConfig: the per-function (and per-qualifier) settings of asynchronous invocation:
// retries after function errors, the oldest an event may get, and OnSuccess / OnFailure
// destinations. The API shape is Lambda's FunctionEventInvokeConfig.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/api_error.h"
#include "common/function.h"

namespace kindling {

constexpr int kDefaultMaximumRetryAttempts = 2;         // 0..2
constexpr int kDefaultMaximumEventAgeSeconds = 21600;   // 60..21600 (6 hours)

struct EventInvokeConfig {
  std::optional<int> maximum_retry_attempts;    // unset: 2
  std::optional<int> maximum_event_age_s;       // unset: 21600
  std::string on_success;                       // destination ARN, "" = none
  std::string on_failure;
  double last_modified_s = 0;                   // epoch seconds (the API's timestamp type)

  int RetryAttempts() const { return maximum_retry_attempts.value_or(kDefaultMaximumRetryAttempts); }
  int MaxEventAgeSeconds() const { return maximum_event_age_s.value_or(kDefaultMaximumEventAgeSeconds); }
};

// The FunctionEventInvokeConfig document (function_arn is the qualified ARN).
nlohmann::json ToApiJson(const EventInvokeConfig& c, const std::string& function_arn);
// The stored form and back.
nlohmann::json ToStoredJson(const EventInvokeConfig& c);
bool FromStoredJson(const nlohmann::json& doc, EventInvokeConfig* c);

// Applies a Put (replace: fields absent from the body are unset) or an Update (merge) request
// body to *c. Validates ranges and destination ARNs as Lambda does; `arn` gives the local region
// and account (a Lambda destination must be a function of this server).
std::optional<ApiError> ApplyEventInvokeConfig(const nlohmann::json& body, bool replace,
                                               const ArnContext& arn, EventInvokeConfig* c);

// Validates DeadLetterConfig.TargetArn (an SQS queue or an SNS topic; "" clears it).
std::optional<ApiError> ValidateDeadLetterTarget(const std::string& arn);

}  // namespace kindling
