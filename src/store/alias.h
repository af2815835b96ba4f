// AliasConfig: a named pointer to a published function version, with an optional second version
// that gets a share of the traffic (Lambda's RoutingConfig.AdditionalVersionWeights), as the
// control plane stores it. Plus the routing choice an invocation through the alias makes.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/function.h"

namespace kindling {

struct AliasConfig {
  std::string function;          // function name
  std::string name;              // alias name: [a-zA-Z0-9-_]+, not all digits
  std::string function_version;  // "$LATEST" or a published version number
  std::string description;
  std::string additional_version;  // "" when the alias routes to one version only
  double additional_weight = 0;    // 0.0-1.0: share of invocations that run additional_version
  std::string revision_id;         // changes on every update of the alias
};

// The AliasConfiguration document the Lambda API returns (AliasArn, Name, FunctionVersion,
// Description, RoutingConfig when a second version is set, RevisionId).
nlohmann::json ToAliasConfiguration(const AliasConfig& alias, const ArnContext& arn);
// The stored form, and back; FromStoredAlias returns false when fields are missing or mistyped.
nlohmann::json ToStoredAlias(const AliasConfig& alias);
bool FromStoredAlias(const nlohmann::json& doc, AliasConfig* alias);

// The version one invocation through the alias runs. `uniform` is a draw from [0, 1): the
// additional version runs when uniform < additional_weight, so a weight of 0.3 sends 30% of the
// invocations to it, 0.0 none and 1.0 all.
const std::string& ChooseAliasVersion(const AliasConfig& alias, double uniform);

// True for a published version number ("1", "42"): digits only, no leading zero.
bool IsPublishedVersion(const std::string& qualifier);
// True for a valid alias name: 1-128 of [a-zA-Z0-9-_], not all digits.
bool IsValidAliasName(const std::string& name);

}  // namespace kindling
