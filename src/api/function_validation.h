// Validation of CreateFunction / UpdateFunctionConfiguration documents, with Lambda's limits and
// messages. Untrusted input: never throws, returns the ApiError to send.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>

#include "common/api_error.h"
#include "common/function.h"

namespace kindling {

// Applies the configuration fields present in `body` to fn. With `creating`, Runtime, Handler and
// Role are required. Unknown fields are ignored, as the AWS SDKs may send newer ones.
std::optional<ApiError> ApplyFunctionConfiguration(const nlohmann::json& body, bool creating,
                                                   FunctionConfig* fn);

}  // namespace kindling
