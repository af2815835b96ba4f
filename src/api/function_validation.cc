#include "api/function_validation.h"

#include <regex>
#include <set>

#include "async/event_invoke_config.h"
#include "common/validation.h"
#include "worker/runtimes.h"

namespace kindling {

using nlohmann::json;

namespace {

const std::set<std::string>& ReservedEnvironmentKeys() {
  static const std::set<std::string> kKeys = {
      "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
      "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
      "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
      "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
      "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR"};
  return kKeys;
}

std::optional<ApiError> StringField(const json& body, const char* key, std::string* out) {
  if (!body.contains(key)) return std::nullopt;
  if (!body[key].is_string()) return ApiError::InvalidParameter(std::string(key) + " must be a string.");
  *out = body[key].get<std::string>();
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> ApplyFunctionConfiguration(const json& body, bool creating, FunctionConfig* fn) {
  if (!body.is_object()) return ApiError::InvalidContent("The request body must be a JSON object.");
  if (creating) {
    for (const char* key : {"Role", "Runtime", "Handler"})
      if (!body.contains(key) || body[key].is_null())
        return ApiError::InvalidParameter(std::string(key) + " is required for .zip deployment packages.");
  }
  if (body.contains("PackageType") && body["PackageType"] != "Zip")
    return ApiError::InvalidParameter("Kindling supports PackageType Zip only.");
  if (body.contains("Layers") && !(body["Layers"].is_array() && body["Layers"].empty()))
    return ApiError::InvalidParameter("Layers are not supported by Kindling yet.");

  std::string runtime = fn->runtime, handler = fn->handler, role = fn->role, description = fn->description;
  if (auto e = StringField(body, "Runtime", &runtime)) return e;
  if (auto e = StringField(body, "Handler", &handler)) return e;
  if (auto e = StringField(body, "Role", &role)) return e;
  if (auto e = StringField(body, "Description", &description)) return e;
  if (!FindRuntime(runtime)) {
    std::string all;
    for (const auto& r : SupportedRuntimes()) all += (all.empty() ? "" : ", ") + r;
    return ApiError::Validation(ConstraintMessage(runtime, "runtime", "Member must satisfy enum value set: [" + all + "]"));
  }
  static const std::regex kHandler(R"([^\s]+)");
  if (handler.empty() || handler.size() > 128 || !std::regex_match(handler, kHandler))
    return ApiError::Validation(ConstraintMessage(handler, "handler",
                                                 "Member must satisfy regular expression pattern: [^\\s]+ and have length less than or equal to 128"));
  static const std::regex kRole(R"(arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+)");
  if (role.size() > 2048 || !std::regex_match(role, kRole))
    return ApiError::Validation(ConstraintMessage(role, "role",
                                                 "Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+"));
  if (description.size() > 256)
    return ApiError::Validation(ConstraintMessage(description, "description", "Member must have length less than or equal to 256"));

  int memory = fn->memory_mb, timeout = fn->timeout_s, ephemeral = fn->ephemeral_mb;
  if (auto e = IntInRange(body, "MemorySize", "memorySize", 128, 10240, &memory)) return e;
  if (auto e = IntInRange(body, "Timeout", "timeout", 1, 900, &timeout)) return e;
  if (body.contains("EphemeralStorage")) {
    const json& es = body["EphemeralStorage"];
    if (!es.is_object() || !es.contains("Size"))
      return ApiError::InvalidParameter("EphemeralStorage must be an object with a Size.");
    if (auto e = IntInRange(es, "Size", "ephemeralStorage.size", 512, 10240, &ephemeral)) return e;
  }

  std::map<std::string, std::string> environment = fn->environment;
  if (body.contains("Environment")) {
    const json& env = body["Environment"];
    if (!env.is_object()) return ApiError::InvalidParameter("Environment must be an object.");
    environment.clear();
    if (env.contains("Variables") && !env["Variables"].is_null()) {
      if (!env["Variables"].is_object())
        return ApiError::InvalidParameter("Environment.Variables must be a map of strings.");
      static const std::regex kKey(R"([a-zA-Z]([a-zA-Z0-9_])+)");
      size_t total = 0;
      std::string reserved;
      for (const auto& [k, v] : env["Variables"].items()) {
        if (!v.is_string()) return ApiError::InvalidParameter("Environment variable " + k + " must be a string.");
        if (!std::regex_match(k, kKey))
          return ApiError::Validation(ConstraintMessage(k, "environment.variables", "Member must satisfy regular expression pattern: [a-zA-Z]([a-zA-Z0-9_])+"));
        if (ReservedEnvironmentKeys().count(k)) reserved += (reserved.empty() ? "" : ", ") + k;
        total += k.size() + v.get<std::string>().size();
        environment[k] = v.get<std::string>();
      }
      if (!reserved.empty())
        return ApiError::InvalidParameter(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided contains reserved keys that are currently not supported "
            "for modification. Reserved keys used in this request: " + reserved);
      if (total > 4096)
        return ApiError::InvalidParameter(
            "Lambda was unable to configure your environment variables because the environment "
            "variables you have provided exceeded the 4KB limit. String measured: " + std::to_string(total));
    }
  }
  std::vector<std::string> architectures = fn->architectures;
  if (body.contains("Architectures")) {
    const json& a = body["Architectures"];
    if (!a.is_array() || a.size() != 1 || !a[0].is_string())
      return ApiError::InvalidParameter("Architectures must list exactly one architecture.");
    if (a[0] != "x86_64")
      return ApiError::InvalidParameter("This Kindling host runs x86_64 functions only.");
    architectures = {"x86_64"};
  }

  std::string dead_letter = fn->dead_letter_arn;
  if (body.contains("DeadLetterConfig") && !body["DeadLetterConfig"].is_null()) {
    const json& dl = body["DeadLetterConfig"];
    if (!dl.is_object()) return ApiError::InvalidParameter("DeadLetterConfig must be an object.");
    dead_letter.clear();
    if (auto e = StringField(dl, "TargetArn", &dead_letter)) return e;
    if (auto e = ValidateDeadLetterTarget(dead_letter)) return e;
  }

  fn->runtime = runtime;
  fn->handler = handler;
  fn->role = role;
  fn->description = description;
  fn->memory_mb = memory;
  fn->timeout_s = timeout;
  fn->ephemeral_mb = ephemeral;
  fn->environment = std::move(environment);
  fn->architectures = std::move(architectures);
  fn->dead_letter_arn = std::move(dead_letter);
  return std::nullopt;
}

}  // namespace kindling
