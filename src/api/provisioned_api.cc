// Provisioned concurrency: Put/Get/Delete/ListProvisionedConcurrencyConfig(s). The configuration
// is stored in metadata.db; the AssignmentService keeps the sandboxes ready.
#include "api/lambda_api.h"
#include "common/clock.h"
#include "common/ids.h"
#include "common/validation.h"

namespace kindling {

using nlohmann::json;

namespace {

ApiError ConfigNotFound() {
  return {404, "ProvisionedConcurrencyConfigNotFoundException", "No Provisioned Concurrency Config found for this function", ""};
}

}  // namespace

// The function and qualifier a provisioned-concurrency call names; the qualifier must be a
// published version or an alias.
static std::variant<FunctionRef, ApiError> ProvisionedTarget(Frontend& frontend, const ArnContext& arn,
                                                             const std::string& name, const std::string& qualifier) {
  FunctionRef ref;
  if (auto e = ParseFunctionRef(name, qualifier, &ref)) return *e;
  if (auto e = CheckArnScope(ref, arn.region, arn.account_id)) return *e;
  if (ref.qualifier.empty())
    return ApiError::InvalidParameter("Qualifier is required: a published version or an alias.");
  if (ref.qualifier == "$LATEST")
    return ApiError::InvalidParameter("Provisioned Concurrency Configs cannot be applied to unpublished function versions.");
  auto resolved = frontend.Resolve(ref, Frontend::AliasRouting::kPrimary);
  if (auto* e = std::get_if<ApiError>(&resolved)) return *e;
  if (std::get<FunctionConfig>(resolved).version == "$LATEST")
    return ApiError::InvalidParameter("Provisioned Concurrency Configs cannot be applied to unpublished function versions.");
  return ref;
}

static json StatusDocument(const AssignmentService::ProvisionedStatus& st, const std::string& last_modified) {
  json doc = {{"RequestedProvisionedConcurrentExecutions", st.requested},
              {"AvailableProvisionedConcurrentExecutions", st.available},
              {"AllocatedProvisionedConcurrentExecutions", st.allocated},
              {"Status", st.status},
              {"LastModified", last_modified}};
  if (!st.reason.empty()) doc["StatusReason"] = st.reason;
  return doc;
}

HttpResponse LambdaApi::PutProvisionedConcurrency(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  auto parsed = ParseJsonBody(req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return ErrorResponse(*e, rid);
  const json& body = std::get<json>(parsed);
  const json* v = body.contains("ProvisionedConcurrentExecutions") ? &body["ProvisionedConcurrentExecutions"] : nullptr;
  if (!v || !v->is_number_integer())
    return ErrorResponse(ApiError::InvalidParameter("ProvisionedConcurrentExecutions must be an integer."), rid);
  int64_t requested = v->get<int64_t>();
  if (requested < 1)
    return ErrorResponse(ApiError::Validation(ConstraintMessage(std::to_string(requested), "provisionedConcurrentExecutions",
                                                                "Member must have value greater than or equal to 1")),
                         rid);
  auto target = ProvisionedTarget(frontend_, options_.arn, name, req.Query("Qualifier"));
  if (auto* e = std::get_if<ApiError>(&target)) return ErrorResponse(*e, rid);
  const FunctionRef& ref = std::get<FunctionRef>(target);
  // Provisioned sandboxes run within the function's concurrency: its reservation, or the
  // unreserved pool less the 100 that must stay free for everyone else.
  int64_t reserved = counting_.Reserved(ref.name);
  int64_t ceiling = reserved >= 0 ? reserved : int64_t{counting_.unreserved_limit()} - Counting::kMinUnreserved;
  if (requested > ceiling)
    return ErrorResponse(ApiError::InvalidParameter(
                             reserved >= 0 ? "Requested Provisioned Concurrency should not be greater than the reservedConcurrentExecution for function"
                                           : "Requested Provisioned Concurrency exceeds the account's unreserved concurrency less its minimum of 100"),
                         rid);
  MetadataStore::Provisioned p{ref.name, ref.qualifier, LambdaTimestamp(), static_cast<int>(requested)};
  Status s = registry_.store().PutProvisioned(p);
  if (!s.ok()) return ErrorResponse(ApiError::Service(s.message()), rid);
  assignment_.SetProvisioned(ref.name, ref.qualifier, p.requested);
  auto st = assignment_.GetProvisioned(ref.name, ref.qualifier);
  HttpResponse r = JsonResponse(202, StatusDocument(*st, p.last_modified));
  return r;
}

HttpResponse LambdaApi::GetProvisionedConcurrency(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  auto target = ProvisionedTarget(frontend_, options_.arn, name, req.Query("Qualifier"));
  if (auto* e = std::get_if<ApiError>(&target)) return ErrorResponse(*e, rid);
  const FunctionRef& ref = std::get<FunctionRef>(target);
  auto st = assignment_.GetProvisioned(ref.name, ref.qualifier);
  if (!st) return ErrorResponse(ConfigNotFound(), rid);
  auto stored = registry_.store().ListProvisioned(ref.name);
  std::string last_modified;
  if (stored.ok())
    for (const auto& p : *stored)
      if (p.qualifier == ref.qualifier) last_modified = p.last_modified;
  return JsonResponse(200, StatusDocument(*st, last_modified));
}

HttpResponse LambdaApi::DeleteProvisionedConcurrency(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  auto target = ProvisionedTarget(frontend_, options_.arn, name, req.Query("Qualifier"));
  if (auto* e = std::get_if<ApiError>(&target)) return ErrorResponse(*e, rid);
  const FunctionRef& ref = std::get<FunctionRef>(target);
  auto deleted = registry_.store().DeleteProvisioned(ref.name, ref.qualifier);
  if (!deleted.ok()) return ErrorResponse(ApiError::Service(deleted.status().message()), rid);
  if (!*deleted) return ErrorResponse(ConfigNotFound(), rid);
  assignment_.ClearProvisioned(ref.name, ref.qualifier);
  return NoContent();
}

HttpResponse LambdaApi::ListProvisionedConcurrency(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  FunctionRef ref;
  if (auto e = ParseFunctionRef(name, "", &ref)) return ErrorResponse(*e, rid);
  if (!registry_.Find(ref.name, "$LATEST"))
    return ErrorResponse(ApiError::NotFound("Function not found: " + options_.arn.FunctionArn(ref.name)), rid);
  auto stored = registry_.store().ListProvisioned(ref.name);
  if (!stored.ok()) return ErrorResponse(ApiError::Service(stored.status().message()), rid);
  json configs = json::array();
  for (const auto& p : *stored) {
    auto st = assignment_.GetProvisioned(p.function, p.qualifier);
    if (!st) continue;
    json doc = StatusDocument(*st, p.last_modified);
    doc["FunctionArn"] = options_.arn.FunctionArn(p.function) + ":" + p.qualifier;
    configs.push_back(doc);
  }
  return JsonResponse(200, {{"ProvisionedConcurrencyConfigs", configs}});
}

}  // namespace kindling
