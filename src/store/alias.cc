#include "store/alias.h"

namespace kindling {

using nlohmann::json;

json ToAliasConfiguration(const AliasConfig& alias, const ArnContext& arn) {
  json doc = {{"AliasArn", arn.FunctionArn(alias.function) + ":" + alias.name},
              {"Name", alias.name},
              {"FunctionVersion", alias.function_version},
              {"Description", alias.description},
              {"RevisionId", alias.revision_id}};
  if (!alias.additional_version.empty())
    doc["RoutingConfig"] = {{"AdditionalVersionWeights", {{alias.additional_version, alias.additional_weight}}}};
  return doc;
}

json ToStoredAlias(const AliasConfig& alias) {
  json doc = ToAliasConfiguration(alias, ArnContext{});
  doc.erase("AliasArn");
  doc["FunctionName"] = alias.function;
  return doc;
}

bool FromStoredAlias(const json& doc, AliasConfig* alias) {
  try {
    alias->function = doc.at("FunctionName").get<std::string>();
    alias->name = doc.at("Name").get<std::string>();
    alias->function_version = doc.at("FunctionVersion").get<std::string>();
    alias->description = doc.at("Description").get<std::string>();
    alias->revision_id = doc.at("RevisionId").get<std::string>();
    alias->additional_version.clear();
    alias->additional_weight = 0;
    if (doc.contains("RoutingConfig")) {
      const json& weights = doc.at("RoutingConfig").at("AdditionalVersionWeights");
      if (!weights.is_object() || weights.size() > 1) return false;
      for (const auto& [version, weight] : weights.items()) {
        alias->additional_version = version;
        alias->additional_weight = weight.get<double>();
      }
    }
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

const std::string& ChooseAliasVersion(const AliasConfig& alias, double uniform) {
  if (!alias.additional_version.empty() && uniform < alias.additional_weight) return alias.additional_version;
  return alias.function_version;
}

bool IsPublishedVersion(const std::string& q) {
  if (q.empty() || q.size() > 18 || q[0] == '0') return false;
  return q.find_first_not_of("0123456789") == std::string::npos;
}

bool IsValidAliasName(const std::string& name) {
  if (name.empty() || name.size() > 128) return false;
  bool all_digits = true;
  for (char c : name) {
    if (!isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
    all_digits &= (c >= '0' && c <= '9');
  }
  return !all_digits;
}

}  // namespace kindling
