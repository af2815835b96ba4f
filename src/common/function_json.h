// FunctionConfig <-> JSON in Lambda's FunctionConfiguration shape (the stored form too).
#pragma once

#include <nlohmann/json.hpp>

#include "common/function.h"

namespace kindling {

// The FunctionConfiguration document the Lambda API returns.
nlohmann::json ToFunctionConfiguration(const FunctionConfig& fn, const ArnContext& arn);
// The stored form: the API document plus Kindling's internal fields.
nlohmann::json ToStored(const FunctionConfig& fn);
// Parses the stored form; returns false when fields are missing or mistyped.
bool FromStored(const nlohmann::json& doc, FunctionConfig* fn);

}  // namespace kindling
