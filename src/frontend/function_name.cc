#include "frontend/function_name.h"
#include "common/validation.h"

#include <vector>

namespace kindling {
namespace {

bool IsValidQualifier(const std::string& q) {
  if (q == "$LATEST") return true;
  if (q.empty() || q.size() > 128) return false;
  for (char c : q)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  return true;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    size_t end = s.find(sep, start);
    parts.push_back(s.substr(start, end == std::string::npos ? std::string::npos : end - start));
    if (end == std::string::npos) return parts;
    start = end + 1;
  }
}

}  // namespace

bool IsValidFunctionName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  return true;
}

std::optional<ApiError> ParseFunctionRef(const std::string& text, const std::string& qualifier_param,
                                         FunctionRef* out) {
  auto invalid = [&] {
    return ApiError::Validation(ConstraintMessage(
        text, "functionName",
        "Member must satisfy regular expression pattern: (arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\\d{1}:)?(\\d{12}:)?"
        "(function:)?([a-zA-Z0-9-_\\.]+)(:(\\$LATEST|[a-zA-Z0-9-_]+))?"));
  };
  if (text.empty() || text.size() > 170) return invalid();
  std::vector<std::string> p = Split(text, ':');
  std::string name, qualifier, region, account;
  if (p.size() >= 7 && p[0] == "arn" && p[2] == "lambda" && p[5] == "function") {
    if (p.size() > 8) return invalid();
    region = p[3];
    account = p[4];
    name = p[6];
    if (p.size() == 8) qualifier = p[7];
  } else if (p.size() >= 3 && p[1] == "function") {
    if (p.size() > 4 || p[0].size() != 12) return invalid();
    account = p[0];
    name = p[2];
    if (p.size() == 4) qualifier = p[3];
  } else if (p.size() <= 2) {
    name = p[0];
    if (p.size() == 2) qualifier = p[1];
  } else {
    return invalid();
  }
  if (!IsValidFunctionName(name)) return invalid();
  if (p.size() > 1 && p.back().empty()) return invalid();
  if (!qualifier.empty() && !IsValidQualifier(qualifier)) return invalid();
  if (!qualifier_param.empty()) {
    if (!IsValidQualifier(qualifier_param))
      return ApiError::Validation(ConstraintMessage(
          qualifier_param, "qualifier", "Member must satisfy regular expression pattern: (|[a-zA-Z0-9$_-]+)"));
    if (!qualifier.empty() && qualifier != qualifier_param)
      return ApiError::InvalidParameter(
          "The derived qualifier from the function name does not match the specified qualifier.");
    qualifier = qualifier_param;
  }
  out->name = name;
  out->qualifier = qualifier;
  out->region = region;
  out->account = account;
  return std::nullopt;
}

std::optional<ApiError> CheckArnScope(const FunctionRef& ref, const std::string& region,
                                      const std::string& account) {
  if (!ref.region.empty() && ref.region != region)
    return ApiError::NotFound("Functions from '" + ref.region + "' are not reachable in this region ('" +
                              region + "')");
  if (!ref.account.empty() && ref.account != account)
    return ApiError{403, "AccessDeniedException",
                    "Functions of account " + ref.account + " are not served here (account " + account + ")", ""};
  return std::nullopt;
}

}  // namespace kindling
