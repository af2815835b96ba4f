// Versions and aliases of the Lambda API: PublishVersion, ListVersionsByFunction, DeleteFunction
// of one version, and CreateAlias / GetAlias / UpdateAlias / DeleteAlias / ListAliases, with
// Lambda's shapes, status codes and error types.
//
// A published version is an immutable copy of $LATEST (configuration and code digest) stored
// under the next number of a per-function counter that never hands a number out twice. An alias
// names a version, optionally with a second version that receives a share of the invocations
// (RoutingConfig.AdditionalVersionWeights); Frontend::Resolve makes the per-invocation choice.
#include <nlohmann/json.hpp>

#include "api/lambda_api.h"
#include "common/validation.h"
#include "common/clock.h"
#include "common/function_json.h"
#include "common/ids.h"
#include "frontend/function_name.h"
#include "store/alias.h"

namespace kindling {

using nlohmann::json;

namespace {

constexpr int kMaxPageItems = 50;  // Lambda returns at most 50 versions or aliases per call

ApiError InvalidAliasName(const std::string& name, const std::string& field) {
  return ApiError::Validation(ConstraintMessage(name, field,
                                         "Member must satisfy regular expression pattern: "
                                         "(?!^[0-9]+$)([a-zA-Z0-9-_]+)"));
}

ApiError RevisionMismatch() {
  return {412, "PreconditionFailedException",
          "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API "
          "to retrieve the latest Revision Id",
          ""};
}

bool IsVersionText(const std::string& v) {
  return v == "$LATEST" ||
         (!v.empty() && v.size() <= 1024 && v.find_first_not_of("0123456789") == std::string::npos);
}

// MaxItems (1-10000; at most kMaxPageItems are returned) and Marker (base64 of the last key).
std::optional<ApiError> PageParams(HttpRequest& req, int* max_items, std::string* after) {
  *max_items = kMaxPageItems;
  const std::string& max_text = req.Query("MaxItems");
  if (!max_text.empty()) {
    char* end = nullptr;
    long n = strtol(max_text.c_str(), &end, 10);
    if (*end != '\0' || n < 1 || n > 10000)
      return ApiError::Validation(ConstraintMessage(max_text, "maxItems", "Member must have value between 1 and 10000"));
    *max_items = std::min<int>(static_cast<int>(n), kMaxPageItems);
  }
  const std::string& marker = req.Query("Marker");
  if (!marker.empty() && !Base64Decode(marker, after))
    return ApiError::InvalidParameter("Invalid Marker: " + marker.substr(0, 64));
  return std::nullopt;
}

// Optional string field; error when present with another type or longer than max_len.
std::optional<ApiError> OptionalString(const json& body, const char* key, const char* field, size_t max_len,
                                       std::optional<std::string>* out) {
  if (!body.contains(key) || body[key].is_null()) return std::nullopt;
  if (!body[key].is_string()) return ApiError::InvalidParameter(std::string(key) + " must be a string.");
  std::string v = body[key].get<std::string>();
  if (v.size() > max_len)
    return ApiError::Validation(ConstraintMessage(v, field, "Member must have length less than or equal to " +
                                                         std::to_string(max_len)));
  *out = std::move(v);
  return std::nullopt;
}

// Same code and configuration: publishing again would make an identical version.
bool SameCodeAndConfiguration(const FunctionConfig& a, const FunctionConfig& b) {
  return a.code_sha256 == b.code_sha256 && a.code_digest == b.code_digest && a.runtime == b.runtime &&
         a.handler == b.handler && a.role == b.role && a.memory_mb == b.memory_mb && a.timeout_s == b.timeout_s &&
         a.ephemeral_mb == b.ephemeral_mb && a.environment == b.environment && a.architectures == b.architectures;
}

struct Routing {
  std::string version;  // "" = no second version
  double weight = 0;
};

// RoutingConfig -> Routing. Model constraints first (ValidationException), then Lambda's own
// limit of one additional version (InvalidParameterValueException).
std::optional<ApiError> ParseRouting(const json& body, Routing* out) {
  *out = Routing{};
  if (!body.contains("RoutingConfig") || body["RoutingConfig"].is_null()) return std::nullopt;
  const json& rc = body["RoutingConfig"];
  if (!rc.is_object()) return ApiError::InvalidParameter("RoutingConfig must be an object.");
  if (!rc.contains("AdditionalVersionWeights") || rc["AdditionalVersionWeights"].is_null()) return std::nullopt;
  const json& weights = rc["AdditionalVersionWeights"];
  if (!weights.is_object())
    return ApiError::InvalidParameter("RoutingConfig.AdditionalVersionWeights must be a map of version to weight.");
  std::string shown;
  for (const auto& [version, weight] : weights.items()) {
    shown += (shown.empty() ? "" : ", ") + version + "=" + (weight.is_number() ? weight.dump() : "?");
  }
  shown = "{" + shown + "}";
  for (const auto& [version, weight] : weights.items()) {
    if (version.empty() || version.size() > 1024 || version.find_first_not_of("0123456789") != std::string::npos)
      return ApiError::Validation(ConstraintMessage(shown, "routingConfig.additionalVersionWeights",
                                             "Map keys must satisfy constraint: [Member must satisfy regular "
                                             "expression pattern: [0-9]+]"));
    if (!weight.is_number())
      return ApiError::InvalidParameter("RoutingConfig.AdditionalVersionWeights values must be numbers.");
    double w = weight.get<double>();
    if (!(w >= 0.0 && w <= 1.0))
      return ApiError::Validation(ConstraintMessage(shown, "routingConfig.additionalVersionWeights",
                                             "Map value must satisfy constraint: [Member must have value less "
                                             "than or equal to 1.0, Member must have value greater than or equal "
                                             "to 0.0]"));
  }
  if (weights.size() > 1)
    return ApiError::InvalidParameter("Number of items in AdditionalVersionWeights cannot be greater than 1");
  for (const auto& [version, weight] : weights.items()) {
    out->version = version;
    out->weight = weight.get<double>();
  }
  return std::nullopt;
}

}  // namespace

ApiError LambdaApi::OnlyLatest() {
  return ApiError::InvalidParameter(
      "Current operation does not support versions other than $LATEST. Please set version to $LATEST or do "
      "not set a version in your request.");
}

HttpResponse LambdaApi::VersionsAndAliases(HttpRequest& req, const std::string& name, const std::string& sub) {
  std::string rid = NewRequestId();
  FunctionRef ref;
  if (auto e = ParseFunctionRef(name, "", &ref)) return ErrorResponse(*e, rid);
  if (auto e = CheckArnScope(ref, options_.arn.region, options_.arn.account_id)) return ErrorResponse(*e, rid);
  if (!ref.qualifier.empty())
    return ErrorResponse(ApiError::InvalidParameter("FunctionName must not carry a qualifier for this operation."), rid);
  if (!registry_.Find(ref.name, "$LATEST"))
    return ErrorResponse(ApiError::NotFound("Function not found: " + options_.arn.FunctionArn(ref.name)), rid);
  const std::string& m = req.method;
  auto not_allowed = [&] { return ErrorResponse({405, "MethodNotAllowedException", "Method not allowed", ""}, rid); };
  if (sub == "/versions") {
    if (m == "POST") return PublishVersion(req, ref);
    if (m == "GET") return ListVersionsByFunction(req, ref);
    return not_allowed();
  }
  if (sub == "/aliases" || sub == "/aliases/") {
    if (m == "POST") return CreateAlias(req, ref);
    if (m == "GET") return ListAliases(req, ref);
    return not_allowed();
  }
  std::string alias = sub.substr(strlen("/aliases/"));
  if (!IsValidAliasName(alias)) return ErrorResponse(InvalidAliasName(alias, "name"), rid);
  if (m == "GET") return GetAlias(ref, alias);
  if (m == "PUT") return UpdateAlias(req, ref, alias);
  if (m == "DELETE") return DeleteAlias(ref, alias);
  return not_allowed();
}

// ---- versions -----------------------------------------------------------------------------------

std::variant<FunctionConfig, ApiError> LambdaApi::PublishLatest(const FunctionConfig& latest,
                                                                const std::optional<std::string>& description) {
  auto last = registry_.store().LatestPublished(latest.name);
  if (!last.ok()) return ApiError::Service(last.status().message());
  // Lambda does not publish a version when code and configuration are those of the last one.
  if (last->has_value() && SameCodeAndConfiguration(**last, latest)) return **last;
  FunctionConfig version = latest;
  if (description) version.description = *description;
  version.revision_id = NewRequestId();
  version.last_modified = LambdaTimestamp();
  auto published = registry_.PublishVersion(version);
  if (!published.ok()) return ApiError::Service(published.status().message());
  return std::move(published).value();
}

HttpResponse LambdaApi::PublishVersion(HttpRequest& req, const FunctionRef& ref) {
  std::string rid = NewRequestId();
  auto parsed = ParseJsonBody(req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return ErrorResponse(*e, rid);
  json& body = std::get<json>(parsed);
  std::optional<std::string> revision, sha, description;
  if (auto e = OptionalString(body, "RevisionId", "revisionId", 1024, &revision)) return ErrorResponse(*e, rid);
  if (auto e = OptionalString(body, "CodeSha256", "codeSha256", 1024, &sha)) return ErrorResponse(*e, rid);
  if (auto e = OptionalString(body, "Description", "description", 256, &description)) return ErrorResponse(*e, rid);
  const FunctionConfig* latest = registry_.Find(ref.name, "$LATEST");
  if (!latest) return ErrorResponse(ApiError::NotFound("Function not found: " + options_.arn.FunctionArn(ref.name)), rid);
  if (revision && *revision != latest->revision_id) return ErrorResponse(RevisionMismatch(), rid);
  if (sha && *sha != latest->code_sha256)
    return ErrorResponse(ApiError::InvalidParameter("CodeSha256 (" + sha->substr(0, 64) +
                                                    ") is different from current CodeSha256 in $LATEST (" +
                                                    latest->code_sha256 + "). Please try again with current CodeSha256."),
                         rid);
  auto published = PublishLatest(*latest, description);
  if (auto* e = std::get_if<ApiError>(&published)) return ErrorResponse(*e, rid);
  return JsonResponse(201, ToFunctionConfiguration(std::get<FunctionConfig>(published), options_.arn));
}

HttpResponse LambdaApi::ListVersionsByFunction(HttpRequest& req, const FunctionRef& ref) {
  std::string rid = NewRequestId();
  int max_items;
  std::string after;
  if (auto e = PageParams(req, &max_items, &after)) return ErrorResponse(*e, rid);
  if (!after.empty() && !IsVersionText(after))
    return ErrorResponse(ApiError::InvalidParameter("Invalid Marker: " + req.Query("Marker").substr(0, 64)), rid);
  auto page = registry_.store().ListVersions(ref.name, after, max_items + 1);
  if (!page.ok()) return ErrorResponse(ApiError::Service(page.status().message()), rid);
  json versions = json::array();
  for (int i = 0; i < static_cast<int>(page->size()) && i < max_items; ++i)
    versions.push_back(ToFunctionConfiguration((*page)[i], options_.arn));
  json body = {{"Versions", versions}};
  if (static_cast<int>(page->size()) > max_items) body["NextMarker"] = Base64Encode((*page)[max_items - 1].version);
  return JsonResponse(200, body);
}

std::optional<HttpResponse> LambdaApi::DeleteQualified(const std::string& name, const std::string& qualifier,
                                                       const std::string& rid) {
  FunctionRef ref;
  if (auto e = ParseFunctionRef(name, qualifier, &ref)) return ErrorResponse(*e, rid);
  if (ref.qualifier.empty()) return std::nullopt;
  if (ref.qualifier == "$LATEST")
    return ErrorResponse(ApiError::InvalidParameter("$LATEST version cannot be deleted without deleting the function."), rid);
  if (!IsPublishedVersion(ref.qualifier))
    return ErrorResponse(ApiError::InvalidParameter("Deletion of aliases is not supported by DeleteFunction: use "
                                                    "DeleteAlias to delete alias " + ref.qualifier + "."),
                         rid);
  // Refused while an alias routes any traffic to the version.
  std::vector<std::string> users;
  for (std::string after;;) {
    auto page = registry_.store().ListAliases(ref.name, after, 1000);
    if (!page.ok()) return ErrorResponse(ApiError::Service(page.status().message()), rid);
    for (const AliasConfig& a : *page)
      if (a.function_version == ref.qualifier || a.additional_version == ref.qualifier) users.push_back(a.name);
    if (page->size() < 1000) break;
    after = page->back().name;
  }
  if (!users.empty()) {
    std::string list;
    for (const auto& u : users) list += (list.empty() ? "" : ", ") + u;
    return ErrorResponse(ApiError::Conflict("Unable to delete version because the following aliases reference it: [" +
                                            list + "]"),
                         rid);
  }
  auto deleted = registry_.DeleteVersion(ref.name, ref.qualifier);
  if (!deleted.ok()) return ErrorResponse(ApiError::Service(deleted.status().message()), rid);
  if (!*deleted)
    return ErrorResponse(ApiError::NotFound("Function not found: " + options_.arn.FunctionArn(ref.name) + ":" + ref.qualifier),
                         rid);
  assignment_.RetireVersion(ref.name, ref.qualifier);
  return NoContent();
}

// ---- aliases ------------------------------------------------------------------------------------

namespace {

// The versions an alias names must exist, $LATEST cannot share traffic, and the second version
// must be another one.
std::optional<ApiError> CheckAliasTargets(FunctionRegistry& registry, const ArnContext& arn, const std::string& function,
                                          const std::string& version, const Routing& routing) {
  if (!routing.version.empty()) {
    if (version == "$LATEST")
      return ApiError::InvalidParameter("$LATEST is not supported for an alias pointing to more than 1 version");
    if (routing.version == version)
      return ApiError::InvalidParameter("Invalid function version " + version + ". Function version " + version +
                                        " is already included in routing configuration.");
  }
  for (const std::string& v : {version, routing.version}) {
    if (v.empty()) continue;
    if (!registry.Find(function, v)) return ApiError::NotFound("Function not found: " + arn.FunctionArn(function) + ":" + v);
  }
  return std::nullopt;
}

std::optional<ApiError> CheckFunctionVersion(const std::string& v) {
  if (!IsVersionText(v))
    return ApiError::Validation(ConstraintMessage(v, "functionVersion",
                                           "Member must satisfy regular expression pattern: (\\$LATEST|[0-9]+)"));
  return std::nullopt;
}

}  // namespace

HttpResponse LambdaApi::CreateAlias(HttpRequest& req, const FunctionRef& ref) {
  std::string rid = NewRequestId();
  auto parsed = ParseJsonBody(req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return ErrorResponse(*e, rid);
  json& body = std::get<json>(parsed);
  std::optional<std::string> name, version, description;
  if (auto e = OptionalString(body, "Name", "name", 128, &name)) return ErrorResponse(*e, rid);
  if (auto e = OptionalString(body, "FunctionVersion", "functionVersion", 1024, &version)) return ErrorResponse(*e, rid);
  if (auto e = OptionalString(body, "Description", "description", 256, &description)) return ErrorResponse(*e, rid);
  if (!name) return ErrorResponse(ApiError::InvalidParameter("Name is required."), rid);
  if (!version) return ErrorResponse(ApiError::InvalidParameter("FunctionVersion is required."), rid);
  if (!IsValidAliasName(*name)) return ErrorResponse(InvalidAliasName(*name, "name"), rid);
  if (auto e = CheckFunctionVersion(*version)) return ErrorResponse(*e, rid);
  Routing routing;
  if (auto e = ParseRouting(body, &routing)) return ErrorResponse(*e, rid);
  if (auto e = CheckAliasTargets(registry_, options_.arn, ref.name, *version, routing)) return ErrorResponse(*e, rid);
  AliasConfig alias{ref.name, *name, *version, description.value_or(""), routing.version, routing.weight, NewRequestId()};
  auto inserted = registry_.InsertAlias(alias);
  if (!inserted.ok()) return ErrorResponse(ApiError::Service(inserted.status().message()), rid);
  if (!*inserted)
    return ErrorResponse(ApiError::Conflict("Alias already exists: " + options_.arn.FunctionArn(ref.name) + ":" + *name), rid);
  return JsonResponse(201, ToAliasConfiguration(alias, options_.arn));
}

HttpResponse LambdaApi::GetAlias(const FunctionRef& ref, const std::string& name) {
  const AliasConfig* alias = registry_.FindAlias(ref.name, name);
  if (!alias)
    return ErrorResponse(ApiError::NotFound("Cannot find alias arn: " + options_.arn.FunctionArn(ref.name) + ":" + name),
                         NewRequestId());
  return JsonResponse(200, ToAliasConfiguration(*alias, options_.arn));
}

HttpResponse LambdaApi::UpdateAlias(HttpRequest& req, const FunctionRef& ref, const std::string& name) {
  std::string rid = NewRequestId();
  auto parsed = ParseJsonBody(req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return ErrorResponse(*e, rid);
  json& body = std::get<json>(parsed);
  std::optional<std::string> version, description, revision;
  if (auto e = OptionalString(body, "FunctionVersion", "functionVersion", 1024, &version)) return ErrorResponse(*e, rid);
  if (auto e = OptionalString(body, "Description", "description", 256, &description)) return ErrorResponse(*e, rid);
  if (auto e = OptionalString(body, "RevisionId", "revisionId", 1024, &revision)) return ErrorResponse(*e, rid);
  if (version)
    if (auto e = CheckFunctionVersion(*version)) return ErrorResponse(*e, rid);
  const AliasConfig* found = registry_.FindAlias(ref.name, name);
  if (!found)
    return ErrorResponse(ApiError::NotFound("Cannot find alias arn: " + options_.arn.FunctionArn(ref.name) + ":" + name), rid);
  AliasConfig alias = *found;
  if (revision && *revision != alias.revision_id) return ErrorResponse(RevisionMismatch(), rid);
  Routing routing{alias.additional_version, alias.additional_weight};
  if (body.contains("RoutingConfig"))  // present (even empty or null): replaces the routing
    if (auto e = ParseRouting(body, &routing)) return ErrorResponse(*e, rid);
  if (version) alias.function_version = *version;
  if (description) alias.description = *description;
  if (auto e = CheckAliasTargets(registry_, options_.arn, ref.name, alias.function_version, routing))
    return ErrorResponse(*e, rid);
  alias.additional_version = routing.version;
  alias.additional_weight = routing.weight;
  alias.revision_id = NewRequestId();
  Status s = registry_.PutAlias(alias);
  if (!s.ok()) return ErrorResponse(ApiError::Service(s.message()), rid);
  return JsonResponse(200, ToAliasConfiguration(alias, options_.arn));
}

HttpResponse LambdaApi::DeleteAlias(const FunctionRef& ref, const std::string& name) {
  std::string rid = NewRequestId();
  auto deleted = registry_.DeleteAlias(ref.name, name);
  if (!deleted.ok()) return ErrorResponse(ApiError::Service(deleted.status().message()), rid);
  if (!*deleted)
    return ErrorResponse(ApiError::NotFound("Cannot find alias arn: " + options_.arn.FunctionArn(ref.name) + ":" + name), rid);
  return NoContent();
}

HttpResponse LambdaApi::ListAliases(HttpRequest& req, const FunctionRef& ref) {
  std::string rid = NewRequestId();
  int max_items;
  std::string after;
  if (auto e = PageParams(req, &max_items, &after)) return ErrorResponse(*e, rid);
  const std::string& version = req.Query("FunctionVersion");
  if (!version.empty())
    if (auto e = CheckFunctionVersion(version)) return ErrorResponse(*e, rid);
  // With a FunctionVersion filter: aliases that send any traffic to that version.
  std::vector<AliasConfig> picked;
  bool more = false;
  for (std::string cursor = after;;) {
    auto page = registry_.store().ListAliases(ref.name, cursor, 1000);
    if (!page.ok()) return ErrorResponse(ApiError::Service(page.status().message()), rid);
    for (AliasConfig& a : *page) {
      if (!version.empty() && a.function_version != version && a.additional_version != version) continue;
      if (static_cast<int>(picked.size()) == max_items) {
        more = true;
        break;
      }
      picked.push_back(std::move(a));
    }
    if (more || page->size() < 1000) break;
    cursor = page->back().name;
  }
  json aliases = json::array();
  for (const AliasConfig& a : picked) aliases.push_back(ToAliasConfiguration(a, options_.arn));
  json body = {{"Aliases", aliases}};
  if (more) body["NextMarker"] = Base64Encode(picked.back().name);
  return JsonResponse(200, body);
}

}  // namespace kindling
