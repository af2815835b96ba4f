// Reserved concurrency (Put/Get/DeleteFunctionConcurrency) and GetAccountSettings.
#include "api/lambda_api.h"
#include "common/ids.h"
#include "common/validation.h"

namespace kindling {

using nlohmann::json;

HttpResponse LambdaApi::PutFunctionConcurrency(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  auto parsed = ParseJsonBody(req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return ErrorResponse(*e, rid);
  const json& body = std::get<json>(parsed);
  const json* value = body.contains("ReservedConcurrentExecutions") ? &body["ReservedConcurrentExecutions"] : nullptr;
  if (!value || !value->is_number_integer())
    return ErrorResponse(ApiError::InvalidParameter("ReservedConcurrentExecutions must be an integer."), rid);
  int64_t reserved = value->get<int64_t>();
  if (reserved < 0)
    return ErrorResponse(ApiError::Validation(ConstraintMessage(std::to_string(reserved), "reservedConcurrentExecutions",
                                                                "Member must have value greater than or equal to 0")),
                         rid);
  auto found = Resolve(name, "");
  if (auto* e = std::get_if<ApiError>(&found)) return ErrorResponse(*e, rid);
  FunctionConfig fn = *std::get<const FunctionConfig*>(found);
  if (reserved > counting_.account_limit())
    return ErrorResponse(ApiError::InvalidParameter("Specified ReservedConcurrentExecutions for function exceeds the account's concurrency limit."), rid);
  int64_t previous = counting_.Reserved(fn.name);
  if (auto e = counting_.SetReserved(fn.name, static_cast<uint32_t>(reserved))) return ErrorResponse(*e, rid);
  fn.reserved_concurrency = static_cast<int>(reserved);
  Status s = registry_.Put(fn);
  if (!s.ok()) {  // keep memory and disk in agreement
    if (previous < 0) counting_.ClearReserved(fn.name);
    else counting_.SetReserved(fn.name, static_cast<uint32_t>(previous));
    return ErrorResponse(ApiError::Service(s.message()), rid);
  }
  return JsonResponse(200, {{"ReservedConcurrentExecutions", reserved}});
}

HttpResponse LambdaApi::GetFunctionConcurrency(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  auto found = Resolve(name, "");
  if (auto* e = std::get_if<ApiError>(&found)) return ErrorResponse(*e, rid);
  int64_t reserved = counting_.Reserved(std::get<const FunctionConfig*>(found)->name);
  if (reserved < 0) return JsonResponse(200, json::object());
  return JsonResponse(200, {{"ReservedConcurrentExecutions", reserved}});
}

HttpResponse LambdaApi::DeleteFunctionConcurrency(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  auto found = Resolve(name, "");
  if (auto* e = std::get_if<ApiError>(&found)) return ErrorResponse(*e, rid);
  FunctionConfig fn = *std::get<const FunctionConfig*>(found);
  fn.reserved_concurrency = -1;
  Status s = registry_.Put(fn);
  if (!s.ok()) return ErrorResponse(ApiError::Service(s.message()), rid);
  counting_.ClearReserved(fn.name);
  return NoContent();
}

HttpResponse LambdaApi::GetAccountSettings(HttpRequest& req) {
  int64_t count = 0, total_code = 0;
  for (std::string after;;) {
    auto page = registry_.store().List("$LATEST", after, 1000);
    if (!page.ok()) return ErrorResponse(ApiError::Service(page.status().message()), NewRequestId());
    if (page->empty()) break;
    for (const FunctionConfig& fn : *page) {
      ++count;
      total_code += fn.code_size;
    }
    after = page->back().name;
  }
  return JsonResponse(200, {{"AccountLimit", {{"TotalCodeSize", 80530636800LL},
                                              {"CodeSizeUnzipped", 262144000},
                                              {"CodeSizeZipped", 52428800},
                                              {"ConcurrentExecutions", counting_.account_limit()},
                                              {"UnreservedConcurrentExecutions", counting_.unreserved_limit()}}},
                            {"AccountUsage", {{"TotalCodeSize", total_code}, {"FunctionCount", count}}}});
}

}  // namespace kindling
