// Parsing of the FunctionName path parameter: a name ("my-fn"), a name with qualifier
// ("my-fn:live"), a partial ARN ("123456789012:function:my-fn[:q]") or a full ARN
// ("arn:aws:lambda:us-east-1:123456789012:function:my-fn[:q]").
#pragma once

#include <optional>
#include <string>

#include "common/api_error.h"

namespace kindling {

struct FunctionRef {
  std::string name;
  std::string qualifier;  // "" when none was given
};

// Combines the path's FunctionName with the ?Qualifier= parameter; returns an error when either is
// malformed or they disagree.
std::optional<ApiError> ParseFunctionRef(const std::string& text, const std::string& qualifier_param,
                                         FunctionRef* out);

// True for a valid bare function name: 1-64 of [A-Za-z0-9_-].
bool IsValidFunctionName(const std::string& name);

}  // namespace kindling
