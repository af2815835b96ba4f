#include "common/function_json.h"

namespace kindling {

using nlohmann::json;

json ToFunctionConfiguration(const FunctionConfig& fn, const ArnContext& arn) {
  json env = json::object();
  for (const auto& [k, v] : fn.environment) env[k] = v;
  std::string fn_arn = arn.FunctionArn(fn.name);
  json doc = json{
      {"FunctionName", fn.name},
      {"FunctionArn", fn.version == "$LATEST" ? fn_arn : fn_arn + ":" + fn.version},
      {"Runtime", fn.runtime},
      {"Role", fn.role},
      {"Handler", fn.handler},
      {"CodeSize", fn.code_size},
      {"Description", fn.description},
      {"Timeout", fn.timeout_s},
      {"MemorySize", fn.memory_mb},
      {"LastModified", fn.last_modified},
      {"CodeSha256", fn.code_sha256},
      {"Version", fn.version},
      {"Environment", {{"Variables", env}}},
      {"TracingConfig", {{"Mode", "PassThrough"}}},
      {"RevisionId", fn.revision_id},
      {"State", "Active"},
      {"LastUpdateStatus", "Successful"},
      {"PackageType", "Zip"},
      {"Architectures", fn.architectures},
      {"EphemeralStorage", {{"Size", fn.ephemeral_mb}}},
      {"SnapStart", {{"ApplyOn", "None"}, {"OptimizationStatus", "Off"}}},
      {"LoggingConfig", {{"LogFormat", "Text"}, {"LogGroup", "/aws/lambda/" + fn.name}}},
  };
  if (!fn.dead_letter_arn.empty()) doc["DeadLetterConfig"] = {{"TargetArn", fn.dead_letter_arn}};
  return doc;
}

json ToStored(const FunctionConfig& fn) {
  json doc = ToFunctionConfiguration(fn, ArnContext{});
  doc.erase("FunctionArn");
  doc["CodeDigest"] = fn.code_digest;
  if (fn.reserved_concurrency >= 0) doc["ReservedConcurrentExecutions"] = fn.reserved_concurrency;
  return doc;
}

bool FromStored(const json& doc, FunctionConfig* fn) {
  try {
    fn->name = doc.at("FunctionName").get<std::string>();
    fn->version = doc.at("Version").get<std::string>();
    fn->runtime = doc.at("Runtime").get<std::string>();
    fn->handler = doc.at("Handler").get<std::string>();
    fn->role = doc.at("Role").get<std::string>();
    fn->description = doc.at("Description").get<std::string>();
    fn->memory_mb = doc.at("MemorySize").get<int>();
    fn->timeout_s = doc.at("Timeout").get<int>();
    fn->ephemeral_mb = doc.at("EphemeralStorage").at("Size").get<int>();
    fn->environment = doc.at("Environment").at("Variables").get<std::map<std::string, std::string>>();
    fn->architectures = doc.at("Architectures").get<std::vector<std::string>>();
    fn->code_sha256 = doc.at("CodeSha256").get<std::string>();
    fn->code_size = doc.at("CodeSize").get<int64_t>();
    fn->code_digest = doc.at("CodeDigest").get<std::string>();
    fn->last_modified = doc.at("LastModified").get<std::string>();
    fn->revision_id = doc.at("RevisionId").get<std::string>();
    if (doc.contains("DeadLetterConfig")) fn->dead_letter_arn = doc["DeadLetterConfig"].value("TargetArn", "");
    fn->reserved_concurrency = doc.value("ReservedConcurrentExecutions", -1);
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

}  // namespace kindling
