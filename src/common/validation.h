// Shared checks for request documents, with Lambda's validation messages.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/api_error.h"

namespace kindling {

// "1 validation error detected: Value '<value>' at '<field>' failed to satisfy constraint: <rule>".
std::string ConstraintMessage(const std::string& value, const std::string& field, const std::string& rule);

// When body has `key`: it must be an integer in [lo, hi] (ValidationException otherwise, naming
// `field`), stored in *out. An absent key leaves *out alone.
std::optional<ApiError> IntInRange(const nlohmann::json& body, const char* key, const char* field, int lo, int hi,
                                   int* out);

}  // namespace kindling
