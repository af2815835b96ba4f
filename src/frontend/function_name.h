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
  std::string region;     // from a full ARN, else ""
  std::string account;    // from a full or partial ARN, else ""
};

// Combines the path's FunctionName with the ?Qualifier= parameter; returns an error when either is
// malformed or they disagree.
std::optional<ApiError> ParseFunctionRef(const std::string& text, const std::string& qualifier_param,
                                         FunctionRef* out);

// The error for a reference into another region or account: this server holds the functions of
// one region and account only.
std::optional<ApiError> CheckArnScope(const FunctionRef& ref, const std::string& region,
                                      const std::string& account);

// True for a valid bare function name: 1-64 of [A-Za-z0-9_-].
bool IsValidFunctionName(const std::string& name);

}  // namespace kindling
