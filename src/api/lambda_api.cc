#include "api/lambda_api.h"

#include "common/asio.h"
#include <nlohmann/json.hpp>

#include "api/function_validation.h"
#include "async/async_invoker.h"
#include "code/code_package.h"
#include "common/clock.h"
#include "common/files.h"
#include "common/function_json.h"
#include "common/ids.h"
#include "common/validation.h"
#include "frontend/function_name.h"

namespace kindling {

namespace asio = boost::asio;
using asio::awaitable;
using nlohmann::json;

namespace {

constexpr const char* kFunctionsPrefix = "/2015-03-31/functions";
constexpr size_t kMaxControlBodyBytes = 69905067;  // Lambda's CreateFunction request limit
constexpr size_t kMaxSmallBodyBytes = 1 << 20;

std::string ListMarker(const std::string& name) { return Base64Encode(name); }

// "{prefix}{name}{suffix}" -> name ("" when path has another shape).
std::string FunctionSubresource(std::string_view path, std::string_view prefix, std::string_view suffix) {
  if (path.size() <= prefix.size() + suffix.size() || path.substr(0, prefix.size()) != prefix ||
      path.substr(path.size() - suffix.size()) != suffix)
    return "";
  std::string_view name = path.substr(prefix.size(), path.size() - prefix.size() - suffix.size());
  return name.find('/') == std::string_view::npos ? std::string(name) : "";
}

}  // namespace

HttpResponse JsonResponse(int status, const json& body) {
  HttpResponse r;
  r.status = status;
  r.body = body.dump();
  return r;
}

HttpResponse NoContent() {
  HttpResponse r;
  r.status = 204;
  r.content_type.clear();
  return r;
}

std::variant<json, ApiError> ParseJsonBody(const std::string& body) {
  json doc = json::parse(body.empty() ? std::string("{}") : body, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return ApiError::InvalidContent("Could not parse request body into json: the body is not a JSON object.");
  return doc;
}

HttpResponse ErrorResponse(const ApiError& error, const std::string& request_id) {
  HttpResponse r;
  r.status = error.status;
  json body = {{"Type", error.status >= 500 ? "Service" : "User"}, {"message", error.message}};
  if (!error.reason.empty()) body["Reason"] = error.reason;
  r.body = body.dump();
  r.headers = {{"x-amzn-ErrorType", error.type}, {"x-amzn-RequestId", request_id}};
  return r;
}

LambdaApi::LambdaApi(asio::io_context& io, FunctionRegistry& registry, Frontend& frontend,
                     Counting& counting, AssignmentService& assignment, Worker* worker,
                     Metrics& metrics, LambdaApiOptions options)
    : io_(io),
      registry_(registry),
      frontend_(frontend),
      counting_(counting),
      assignment_(assignment),
      worker_(worker),
      metrics_(metrics),
      options_(std::move(options)) {}

LambdaApi::~LambdaApi() { blocking_.join(); }

size_t LambdaApi::BodyLimit(const std::string& method, const std::string& path) {
  if (path.size() > 12 && path.compare(path.size() - 12, 12, "/invocations") == 0)
    return kMaxSyncPayloadBytes;
  if (method == "POST" || method == "PUT") return kMaxControlBodyBytes;
  return kMaxSmallBodyBytes;
}

HttpResponse LambdaApi::TooLarge(const std::string& method, const std::string& path) {
  bool invoke = path.size() > 12 && path.compare(path.size() - 12, 12, "/invocations") == 0;
  std::string limit = std::to_string(BodyLimit(method, path));
  return ErrorResponse(ApiError::TooLarge("Request must be smaller than " + limit + " bytes for the " +
                                          (invoke ? "InvokeFunction" : "requested") + " operation"),
                       NewRequestId());
}

awaitable<HttpResponse> LambdaApi::Handle(HttpRequest& req) {
  std::string request_id = NewRequestId();
  const std::string& m = req.method;
  std::string_view path = req.path;
  HttpResponse resp;
  // Authentication (src/auth/sigv4.h): every route, /kindling/code downloads included.
  if (options_.auth && !(path == "/metrics" && m == "GET" && options_.metrics_unauthenticated)) {
    if (auto denied = options_.auth->Verify(req, std::chrono::system_clock::now()))
      co_return ErrorResponse(*denied, request_id);
  }
  if (path == "/metrics" && m == "GET") {
    resp = RenderMetrics();
  } else if (path == "/2016-08-19/account-settings" || path == "/2016-08-19/account-settings/") {
    resp = m == "GET" ? GetAccountSettings(req)
                      : ErrorResponse({405, "MethodNotAllowedException", "Method not allowed", ""}, request_id);
  } else if (auto name = FunctionSubresource(path, "/2017-10-31/functions/", "/concurrency"); !name.empty()) {
    if (m == "PUT") resp = PutFunctionConcurrency(req, name);
    else if (m == "DELETE") resp = DeleteFunctionConcurrency(req, name);
    else resp = ErrorResponse({405, "MethodNotAllowedException", "Method not allowed", ""}, request_id);
  } else if (auto name = FunctionSubresource(path, "/2019-09-30/functions/", "/concurrency"); !name.empty()) {
    if (m == "GET") resp = GetFunctionConcurrency(req, name);
    else resp = ErrorResponse({405, "MethodNotAllowedException", "Method not allowed", ""}, request_id);
  } else if (auto name = FunctionSubresource(path, "/2019-09-30/functions/", "/provisioned-concurrency"); !name.empty()) {
    if (!options_.provisioned_concurrency)
      resp = ErrorResponse(ApiError::InvalidParameter("Provisioned concurrency is not available in Kindling's cluster "
                                                      "mode yet (docs/cluster.md)."), request_id);
    else if (m == "PUT") resp = PutProvisionedConcurrency(req, name);
    else if (m == "GET" && req.Query("List") == "ALL") resp = ListProvisionedConcurrency(req, name);
    else if (m == "GET") resp = GetProvisionedConcurrency(req, name);
    else if (m == "DELETE") resp = DeleteProvisionedConcurrency(req, name);
    else resp = ErrorResponse({405, "MethodNotAllowedException", "Method not allowed", ""}, request_id);
  } else if (path == "/kindling/cluster" && m == "GET" && options_.cluster_view) {
    resp = JsonResponse(200, options_.cluster_view(req.Query("function")));
  } else if (path.rfind("/kindling/code/", 0) == 0 && m == "GET") {
    resp = GetCode(std::string(path.substr(15)));
  } else if (path == "/kindling/queues" || path.rfind("/kindling/queues/", 0) == 0) {
    resp = co_await LocalQueueRoute(req, path.substr(16));  // event_config_api.cc
  } else if (path.rfind("/2019-09-25/functions/", 0) == 0) {
    resp = co_await EventInvokeConfigRoute(req, path.substr(22));  // event_config_api.cc
  } else if (path.rfind(kFunctionsPrefix, 0) == 0) {
    std::string_view rest = path.substr(strlen(kFunctionsPrefix));
    if (rest.empty() || rest == "/") {
      if (m == "POST") resp = co_await CreateFunction(req);
      else if (m == "GET") resp = ListFunctions(req);
      else resp = ErrorResponse({405, "MethodNotAllowedException", "Method not allowed", ""}, request_id);
    } else {
      rest.remove_prefix(1);
      size_t slash = rest.find('/');
      std::string name(rest.substr(0, slash));
      std::string sub = slash == std::string_view::npos ? "" : std::string(rest.substr(slash));
      if (sub.empty() && m == "GET") resp = GetFunction(req, name, false);
      else if (sub.empty() && m == "DELETE") resp = DeleteFunction(req, name);
      else if (sub == "/configuration" && m == "GET") resp = GetFunction(req, name, true);
      else if (sub == "/configuration" && m == "PUT") resp = UpdateFunctionConfiguration(req, name);
      else if (sub == "/code" && m == "PUT") resp = co_await UpdateFunctionCode(req, name);
      else if (sub == "/invocations" && m == "POST") resp = co_await Invoke(req, name);
      else if (sub == "/versions" || sub == "/aliases" || sub.rfind("/aliases/", 0) == 0)
        resp = VersionsAndAliases(req, name, sub);  // versions_api.cc
      else resp = ErrorResponse({404, "UnknownOperationException", "Unknown operation " + m + " " + std::string(path), ""}, request_id);
    }
  } else {
    resp = ErrorResponse({404, "UnknownOperationException", "Unknown operation " + m + " " + std::string(path), ""}, request_id);
  }
  bool has_id = false;
  for (auto& [k, v] : resp.headers) has_id |= (k == "x-amzn-RequestId");
  if (!has_id) resp.headers.emplace_back("x-amzn-RequestId", request_id);
  co_return resp;
}

std::variant<const FunctionConfig*, ApiError> LambdaApi::Resolve(const std::string& text,
                                                                  const std::string& qualifier) {
  FunctionRef ref;
  if (auto err = ParseFunctionRef(text, qualifier, &ref)) return *err;
  if (auto err = CheckArnScope(ref, options_.arn.region, options_.arn.account_id)) return *err;
  // An alias reads as the version it points to (never the weighted second one).
  auto resolved = frontend_.Resolve(ref, Frontend::AliasRouting::kPrimary);
  if (auto* err = std::get_if<ApiError>(&resolved)) return *err;
  if (const FunctionConfig* fn = registry_.Find(ref.name, std::get<FunctionConfig>(resolved).version)) return fn;
  return ApiError::NotFound("Function not found: " + options_.arn.FunctionArn(ref.name));
}

awaitable<std::optional<ApiError>> LambdaApi::StoreCode(const std::string& zip_base64, FunctionConfig* fn) {
  std::string zip;
  if (!Base64Decode(zip_base64, &zip) || zip.empty())
    co_return ApiError::InvalidParameter("Code.ZipFile must be a base64-encoded zip file.");
  // Extraction is disk-bound: it runs on the blocking pool while the io thread serves invocations.
  auto extract = [&zip, root = options_.code_root] { return ExtractCodePackage(zip, root); };
  auto pkg = co_await RunOn(blocking_.get_executor(), std::move(extract));
  if (!pkg.ok()) {
    if (pkg.status().err() != 0) co_return ApiError::Service("Could not store the code package: " + pkg.status().message());
    co_return ApiError{400, "InvalidParameterValueException", pkg.status().message(), ""};
  }
  if (options_.publish_code) {
    auto publish = [&pkg, &f = options_.publish_code] { return f(*pkg); };
    Status s = co_await RunOn(blocking_.get_executor(), std::move(publish));
    if (!s.ok()) co_return ApiError::Service("Could not store the code package: " + s.message());
  }
  fn->code_sha256 = pkg->sha256_base64;
  fn->code_size = pkg->zip_size;
  fn->code_digest = pkg->digest_hex;
  co_return std::nullopt;
}

awaitable<HttpResponse> LambdaApi::CreateFunction(HttpRequest& req) {
  std::string rid = NewRequestId();
  auto parsed = ParseJsonBody(req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) co_return ErrorResponse(*e, rid);
  json& body = std::get<json>(parsed);
  if (!body.contains("FunctionName") || !body["FunctionName"].is_string())
    co_return ErrorResponse(ApiError::InvalidParameter("FunctionName is required."), rid);
  FunctionRef ref;
  if (auto e = ParseFunctionRef(body["FunctionName"].get<std::string>(), "", &ref)) co_return ErrorResponse(*e, rid);
  if (auto e = CheckArnScope(ref, options_.arn.region, options_.arn.account_id)) co_return ErrorResponse(*e, rid);
  if (!ref.qualifier.empty())
    co_return ErrorResponse(ApiError::InvalidParameter("FunctionName must not carry a qualifier."), rid);
  FunctionConfig fn;
  fn.name = ref.name;
  if (auto e = ApplyFunctionConfiguration(body, true, &fn)) co_return ErrorResponse(*e, rid);
  if (registry_.Find(fn.name, "$LATEST"))
    co_return ErrorResponse(ApiError::Conflict("Function already exist: " + fn.name), rid);
  const json* code = body.contains("Code") && body["Code"].is_object() ? &body["Code"] : nullptr;
  if (!code || !code->contains("ZipFile") || !(*code)["ZipFile"].is_string()) {
    std::string why = code && code->contains("S3Bucket")
                          ? "Kindling does not read code from S3: upload the zip as Code.ZipFile."
                          : "Code.ZipFile is required.";
    co_return ErrorResponse(ApiError::InvalidParameter(why), rid);
  }
  if (auto e = co_await StoreCode((*code)["ZipFile"].get<std::string>(), &fn)) co_return ErrorResponse(*e, rid);
  fn.last_modified = LambdaTimestamp();
  fn.revision_id = NewRequestId();
  auto inserted = registry_.Insert(fn);  // re-checks: another create may have won meanwhile
  if (!inserted.ok()) co_return ErrorResponse(ApiError::Service(inserted.status().message()), rid);
  if (!*inserted) co_return ErrorResponse(ApiError::Conflict("Function already exist: " + fn.name), rid);
  if (body.value("Publish", false)) {  // answered with version 1's configuration, as Lambda does
    auto published = PublishLatest(fn, std::nullopt);
    if (auto* e = std::get_if<ApiError>(&published)) co_return ErrorResponse(*e, rid);
    fn = std::get<FunctionConfig>(published);
  }
  co_return JsonResponse(201, ToFunctionConfiguration(fn, options_.arn));
}

HttpResponse LambdaApi::GetFunction(HttpRequest& req, const std::string& name, bool configuration_only) {
  auto found = Resolve(name, req.Query("Qualifier"));
  if (auto* e = std::get_if<ApiError>(&found)) return ErrorResponse(*e, NewRequestId());
  const FunctionConfig& fn = *std::get<const FunctionConfig*>(found);
  json config = ToFunctionConfiguration(fn, options_.arn);
  if (configuration_only) return JsonResponse(200, config);
  std::string host = req.Header("host").empty() ? "127.0.0.1:9000" : req.Header("host");
  std::string location = "/kindling/code/" + fn.code_digest + ".zip";
  // With authentication on, a URL presigned with the caller's key for 10 minutes (as AWS's S3 link).
  const Credential* caller = options_.auth ? options_.auth->Caller(req) : nullptr;
  if (caller)
    location += "?" + options_.auth->PresignQuery(*caller, host, location, std::chrono::system_clock::now(),
                                                  std::chrono::seconds(600));
  json body = {{"Configuration", config},
               {"Code", {{"RepositoryType", "S3"}, {"Location", "http://" + host + location}}},
               {"Tags", json::object()}};
  int64_t reserved = counting_.Reserved(fn.name);
  if (reserved >= 0) body["Concurrency"] = {{"ReservedConcurrentExecutions", reserved}};
  return JsonResponse(200, body);
}

HttpResponse LambdaApi::ListFunctions(HttpRequest& req) {
  std::string rid = NewRequestId();
  int max_items = 50;
  const std::string& max_text = req.Query("MaxItems");
  if (!max_text.empty()) {
    char* end = nullptr;
    long n = strtol(max_text.c_str(), &end, 10);
    if (*end != '\0' || n < 1 || n > 10000)
      return ErrorResponse(ApiError::Validation(ConstraintMessage(max_text.substr(0, 32), "maxItems",
                                                                  "Member must have value between 1 and 10000")),
                           rid);
    max_items = static_cast<int>(n);
  }
  std::string after;
  const std::string& marker = req.Query("Marker");
  if (!marker.empty() && !Base64Decode(marker, &after))
    return ErrorResponse(ApiError::InvalidParameter("Invalid Marker: " + marker.substr(0, 64)), rid);
  const std::string& version = req.Query("FunctionVersion");
  if (!version.empty() && version != "ALL")
    return ErrorResponse(ApiError::InvalidParameter("FunctionVersion must be ALL."), rid);
  // FunctionVersion=ALL lists published versions too; its marker is "name\nversion".
  bool all = version == "ALL";
  std::string after_version;
  if (all && after.find('\n') != std::string::npos) {
    after_version = after.substr(after.find('\n') + 1);
    after.resize(after.find('\n'));
  }
  auto page = all ? registry_.store().ListAllVersions(after, after_version, max_items + 1)
                  : registry_.store().List("$LATEST", after, max_items + 1);
  if (!page.ok()) return ErrorResponse(ApiError::Service(page.status().message()), rid);
  json functions = json::array();
  for (int i = 0; i < static_cast<int>(page->size()) && i < max_items; ++i)
    functions.push_back(ToFunctionConfiguration((*page)[i], options_.arn));
  json body = {{"Functions", functions}};
  if (static_cast<int>(page->size()) > max_items) {
    const FunctionConfig& last = (*page)[max_items - 1];
    body["NextMarker"] = ListMarker(all ? last.name + "\n" + last.version : last.name);
  }
  return JsonResponse(200, body);
}

HttpResponse LambdaApi::DeleteFunction(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  auto found = Resolve(name, req.Query("Qualifier"));
  if (auto* e = std::get_if<ApiError>(&found)) return ErrorResponse(*e, rid);
  const FunctionConfig& fn = *std::get<const FunctionConfig*>(found);
  if (auto qualified = DeleteQualified(name, req.Query("Qualifier"), rid)) return *qualified;  // versions_api.cc
  std::string fn_name = fn.name;
  Status s = registry_.Delete(fn_name);
  if (!s.ok()) return ErrorResponse(ApiError::Service(s.message()), rid);
  assignment_.Retire(fn_name, "");
  assignment_.ClearProvisioned(fn_name, "");
  counting_.ClearReserved(fn_name);
  if (async_) async_->ForgetFunction(fn_name);  // its event-invoke-configs go with it
  return NoContent();
}

awaitable<HttpResponse> LambdaApi::UpdateFunctionCode(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  auto parsed = ParseJsonBody(req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) co_return ErrorResponse(*e, rid);
  json& body = std::get<json>(parsed);
  auto found = Resolve(name, "");
  if (auto* e = std::get_if<ApiError>(&found)) co_return ErrorResponse(*e, rid);
  FunctionConfig fn = *std::get<const FunctionConfig*>(found);
  if (fn.version != "$LATEST") co_return ErrorResponse(OnlyLatest(), rid);
  if (body.contains("RevisionId") && body["RevisionId"] != fn.revision_id)
    co_return ErrorResponse({412, "PreconditionFailedException",
                             "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id", ""}, rid);
  if (!body.contains("ZipFile") || !body["ZipFile"].is_string())
    co_return ErrorResponse(ApiError::InvalidParameter("ZipFile is required: Kindling does not read code from S3."), rid);
  std::string expected_revision = fn.revision_id;
  if (auto e = co_await StoreCode(body["ZipFile"].get<std::string>(), &fn)) co_return ErrorResponse(*e, rid);
  // The function may have changed or gone while the zip was extracted.
  const FunctionConfig* now = registry_.Find(fn.name, "$LATEST");
  if (!now) co_return ErrorResponse(ApiError::NotFound("Function not found: " + options_.arn.FunctionArn(fn.name)), rid);
  if (now->revision_id != expected_revision)
    co_return ErrorResponse(ApiError::Conflict("The operation cannot be performed at this time. An update is in progress for resource: " +
                                               options_.arn.FunctionArn(fn.name)), rid);
  if (body.value("DryRun", false)) co_return JsonResponse(200, ToFunctionConfiguration(fn, options_.arn));
  fn.last_modified = LambdaTimestamp();
  fn.revision_id = NewRequestId();
  Status s = registry_.Put(fn);
  if (!s.ok()) co_return ErrorResponse(ApiError::Service(s.message()), rid);
  assignment_.Retire(fn.name, fn.revision_id);
  if (body.value("Publish", false)) {  // answered with the new version's configuration
    auto published = PublishLatest(fn, std::nullopt);
    if (auto* e = std::get_if<ApiError>(&published)) co_return ErrorResponse(*e, rid);
    fn = std::get<FunctionConfig>(published);
  }
  co_return JsonResponse(200, ToFunctionConfiguration(fn, options_.arn));
}

HttpResponse LambdaApi::UpdateFunctionConfiguration(HttpRequest& req, const std::string& name) {
  std::string rid = NewRequestId();
  auto parsed = ParseJsonBody(req.body);
  if (auto* e = std::get_if<ApiError>(&parsed)) return ErrorResponse(*e, rid);
  json& body = std::get<json>(parsed);
  auto found = Resolve(name, "");
  if (auto* e = std::get_if<ApiError>(&found)) return ErrorResponse(*e, rid);
  FunctionConfig fn = *std::get<const FunctionConfig*>(found);
  if (fn.version != "$LATEST") return ErrorResponse(OnlyLatest(), rid);
  if (body.contains("RevisionId") && body["RevisionId"] != fn.revision_id)
    return ErrorResponse({412, "PreconditionFailedException",
                          "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id", ""}, rid);
  if (auto e = ApplyFunctionConfiguration(body, false, &fn)) return ErrorResponse(*e, rid);
  fn.last_modified = LambdaTimestamp();
  fn.revision_id = NewRequestId();
  Status s = registry_.Put(fn);
  if (!s.ok()) return ErrorResponse(ApiError::Service(s.message()), rid);
  assignment_.Retire(fn.name, fn.revision_id);
  return JsonResponse(200, ToFunctionConfiguration(fn, options_.arn));
}

awaitable<HttpResponse> LambdaApi::Invoke(HttpRequest& req, const std::string& name) {
  if (req.Header("x-amz-invocation-type") == "Event") co_return co_await InvokeEvent(req, name);
  std::string rid = NewRequestId();
  InvokeCall call;
  call.function = name;
  call.qualifier = req.Query("Qualifier");
  call.invocation_type = req.Header("x-amz-invocation-type");
  call.log_type = req.Header("x-amz-log-type");
  call.client_context = req.Header("x-amz-client-context");
  call.payload = std::move(req.body);
  auto outcome = co_await frontend_.Invoke(std::move(call), rid);
  if (auto* e = std::get_if<ApiError>(&outcome)) co_return ErrorResponse(*e, rid);
  InvokeReply& reply = std::get<InvokeReply>(outcome);
  HttpResponse r;
  r.status = reply.status;
  r.body = std::move(reply.body);
  r.headers.emplace_back("x-amzn-RequestId", rid);
  r.headers.emplace_back("X-Amz-Executed-Version", reply.executed_version);
  if (!reply.function_error.empty()) r.headers.emplace_back("X-Amz-Function-Error", reply.function_error);
  if (!reply.log_result.empty()) r.headers.emplace_back("X-Amz-Log-Result", reply.log_result);
  if (r.status == 204) r.content_type.clear();
  co_return r;
}

HttpResponse LambdaApi::GetCode(const std::string& file) {
  // <64 hex>.zip only: nothing else under the code root is served.
  bool ok = file.size() == 68 && file.compare(64, 4, ".zip") == 0 &&
            file.find_first_not_of("0123456789abcdef") == 64;
  std::string data;
  if (!ok || !ReadFile(options_.code_root + "/" + file, &data).ok())
    return ErrorResponse(ApiError::NotFound("No such code package."), NewRequestId());
  HttpResponse r;
  r.content_type = "application/zip";
  r.body = std::move(data);
  return r;
}

HttpResponse LambdaApi::RenderMetrics() {
  if (async_) async_->ExportGauges(metrics_);
  if (worker_) {
    worker_->ExportGauges(metrics_);
    WorkerStats stats = worker_->Stats();
    metrics_.SetGauge("kindling_worker_sandboxes", static_cast<double>(stats.sandboxes));
    metrics_.SetGauge("kindling_worker_memory_reserved_bytes", static_cast<double>(stats.memory_reserved_bytes));
  }
  HttpResponse r;
  r.content_type = "text/plain; version=0.0.4";
  r.body = metrics_.RenderPrometheus();
  if (worker_ && worker_->options().images) r.body += worker_->options().images->MetricsText();
  return r;
}

}  // namespace kindling
