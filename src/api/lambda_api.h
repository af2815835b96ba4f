// LambdaApi: the Lambda REST API (2015-03-31 paths) plus /metrics, as an HttpHandler.
// Control-plane operations validate their input and write through the FunctionRegistry;
// invocations go to the Frontend.
//
// Thread safety: runs on the io_context thread.
#pragma once

#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "http/http_server.h"
#include "assignment/assignment_service.h"
#include "auth/sigv4.h"
#include "code/code_package.h"
#include "common/api_error.h"
#include "common/metrics.h"
#include "frontend/counting.h"
#include "frontend/frontend.h"
#include "store/function_registry.h"
#include "worker/worker.h"

namespace kindling {

class AsyncInvoker;

struct LambdaApiOptions {
  ArnContext arn;
  std::string code_root;  // where packages are extracted
  // SigV4 verification of every request (null: authentication off). Not owned.
  const SigV4Verifier* auth = nullptr;
  // With auth on, GET /metrics stays unauthenticated (kindlingd: only when listening on loopback).
  bool metrics_unauthenticated = true;
  // GET /kindling/cluster: the cluster's state as JSON (function: the ?function= parameter, or "");
  // null outside cluster mode (404).
  std::function<nlohmann::json(const std::string& function)> cluster_view;
  // Provisioned concurrency configurations are accepted (cluster mode does not run them yet).
  bool provisioned_concurrency = true;
  // Turns an extracted package into the image workers mount at /var/task (blocking; optional).
  std::function<Status(const CodePackage&)> publish_code;
};

class LambdaApi : public HttpHandler {
 public:
  LambdaApi(boost::asio::io_context& io, FunctionRegistry& registry, Frontend& frontend,
            Counting& counting, AssignmentService& assignment, Worker* worker, Metrics& metrics,
            LambdaApiOptions options);
  ~LambdaApi() override;

  size_t BodyLimit(const std::string& method, const std::string& path) override;
  HttpResponse TooLarge(const std::string& method, const std::string& path) override;
  boost::asio::awaitable<HttpResponse> Handle(HttpRequest& request) override;
  // Enables InvocationType Event, event-invoke-config and local queues (event_config_api.cc).
  void SetAsync(AsyncInvoker* async) { async_ = async; }

 private:
  using Reply = boost::asio::awaitable<HttpResponse>;
  Reply CreateFunction(HttpRequest& req);
  HttpResponse GetFunction(HttpRequest& req, const std::string& name, bool configuration_only);
  HttpResponse ListFunctions(HttpRequest& req);
  HttpResponse DeleteFunction(HttpRequest& req, const std::string& name);
  Reply UpdateFunctionCode(HttpRequest& req, const std::string& name);
  HttpResponse UpdateFunctionConfiguration(HttpRequest& req, const std::string& name);
  Reply Invoke(HttpRequest& req, const std::string& name);
  HttpResponse GetCode(const std::string& file);
  // Reserved concurrency and account settings (concurrency_api.cc).
  HttpResponse PutFunctionConcurrency(HttpRequest& req, const std::string& name);
  HttpResponse GetFunctionConcurrency(HttpRequest& req, const std::string& name);
  HttpResponse DeleteFunctionConcurrency(HttpRequest& req, const std::string& name);
  HttpResponse GetAccountSettings(HttpRequest& req);
  // Provisioned concurrency (provisioned_api.cc).
  HttpResponse PutProvisionedConcurrency(HttpRequest& req, const std::string& name);
  HttpResponse GetProvisionedConcurrency(HttpRequest& req, const std::string& name);
  HttpResponse DeleteProvisionedConcurrency(HttpRequest& req, const std::string& name);
  HttpResponse ListProvisionedConcurrency(HttpRequest& req, const std::string& name);
  HttpResponse RenderMetrics();
  // Asynchronous invocation (event_config_api.cc): Event invokes, /2019-09-25 event-invoke-config
  // routes, /kindling/queues local queues.
  Reply InvokeEvent(HttpRequest& req, const std::string& name);
  Reply EventInvokeConfigRoute(HttpRequest& req, std::string_view rest);
  Reply LocalQueueRoute(HttpRequest& req, std::string_view rest);
  // Versions and aliases (versions_api.cc): PublishVersion, ListVersionsByFunction and the alias
  // operations, dispatched on the path after the function name ("/versions", "/aliases[/NAME]").
  HttpResponse VersionsAndAliases(HttpRequest& req, const std::string& name, const std::string& sub);
  HttpResponse PublishVersion(HttpRequest& req, const FunctionRef& ref);
  HttpResponse ListVersionsByFunction(HttpRequest& req, const FunctionRef& ref);
  HttpResponse CreateAlias(HttpRequest& req, const FunctionRef& ref);
  HttpResponse GetAlias(const FunctionRef& ref, const std::string& alias);
  HttpResponse UpdateAlias(HttpRequest& req, const FunctionRef& ref, const std::string& alias);
  HttpResponse DeleteAlias(const FunctionRef& ref, const std::string& alias);
  HttpResponse ListAliases(HttpRequest& req, const FunctionRef& ref);
  // Publishes the function's $LATEST as its next version (or returns the latest version when
  // nothing changed since it was published); description overrides $LATEST's.
  std::variant<FunctionConfig, ApiError> PublishLatest(const FunctionConfig& latest,
                                                       const std::optional<std::string>& description);
  // DeleteFunction with a qualifier: deletes one published version; nullopt when the call names
  // no qualifier (the whole function goes).
  std::optional<HttpResponse> DeleteQualified(const std::string& name, const std::string& qualifier,
                                              const std::string& request_id);
  // The error for a write to a published version.
  static ApiError OnlyLatest();

  // Extracts a base64 zip on the blocking pool and fills the code fields of fn.
  boost::asio::awaitable<std::optional<ApiError>> StoreCode(const std::string& zip_base64, FunctionConfig* fn);
  // Looks up the $LATEST record for a FunctionName path parameter.
  std::variant<const FunctionConfig*, ApiError> Resolve(const std::string& text, const std::string& qualifier);

  boost::asio::io_context& io_;
  FunctionRegistry& registry_;
  Frontend& frontend_;
  Counting& counting_;
  AssignmentService& assignment_;
  Worker* worker_;  // this node's worker, for its metrics; null on nodes without one
  Metrics& metrics_;
  LambdaApiOptions options_;
  AsyncInvoker* async_ = nullptr;  // not owned; null: asynchronous invocation is off
  boost::asio::thread_pool blocking_{1};  // zip extraction: keeps the invoke path responsive
};

// The HTTP form of an ApiError (status, x-amzn-ErrorType, {"Type","message"} body).
HttpResponse ErrorResponse(const ApiError& error, const std::string& request_id);
// A JSON document with a status.
HttpResponse JsonResponse(int status, const nlohmann::json& body);
// An empty 204.
HttpResponse NoContent();
// Parses a request body as a JSON object (an empty body is {}).
std::variant<nlohmann::json, ApiError> ParseJsonBody(const std::string& body);

}  // namespace kindling
