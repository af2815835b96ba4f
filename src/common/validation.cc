#include "common/validation.h"

namespace kindling {

std::string ConstraintMessage(const std::string& value, const std::string& field, const std::string& rule) {
  return "1 validation error detected: Value '" + value.substr(0, 256) + "' at '" + field +
         "' failed to satisfy constraint: " + rule;
}

std::optional<ApiError> IntInRange(const nlohmann::json& body, const char* key, const char* field, int lo, int hi,
                                   int* out) {
  if (!body.contains(key)) return std::nullopt;
  const nlohmann::json& v = body[key];
  if (!v.is_number_integer()) return ApiError::InvalidParameter(std::string(key) + " must be an integer.");
  int64_t n = v.get<int64_t>();
  if (n < lo)
    return ApiError::Validation(ConstraintMessage(std::to_string(n), field,
                                                  "Member must have value greater than or equal to " + std::to_string(lo)));
  if (n > hi)
    return ApiError::Validation(ConstraintMessage(std::to_string(n), field,
                                                  "Member must have value less than or equal to " + std::to_string(hi)));
  *out = static_cast<int>(n);
  return std::nullopt;
}

}  // namespace kindling
