#include "worker/worker_server.h"

#include <nlohmann/json.hpp>

#include "common/function_json.h"
#include "common/ids.h"
#include "rpc/rpc.h"
#include "worker/lease.h"

namespace kindling {

using boost::asio::awaitable;
using json = nlohmann::json;

namespace {
constexpr std::string_view kBase = "/kindling/v1/worker/";

bool ValidSandboxId(std::string_view id) {
  return !id.empty() && id.size() <= 64 &&
         id.find_first_not_of("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_") == std::string_view::npos;
}
}  // namespace

WorkerServer::WorkerServer(WorkerClient& worker, std::string cluster_key)
    : worker_(worker), cluster_key_(std::move(cluster_key)) {}

size_t WorkerServer::BodyLimit(const std::string& method, const std::string& path) {
  return path.size() > 7 && path.compare(path.size() - 7, 7, "/invoke") == 0 ? kMaxRpcPayloadBytes : 1 << 20;
}

HttpResponse WorkerServer::TooLarge(const std::string&, const std::string&) {
  return rpc::ErrorResponse(Status::InvalidArgument("request body too large"));
}

awaitable<HttpResponse> WorkerServer::Handle(HttpRequest& req) {
  if (!rpc::Authorized(req, cluster_key_))
    co_return rpc::Unauthorized();
  std::string_view path = req.path;
  if (path.rfind(kBase, 0) != 0) co_return rpc::ErrorResponse(Status::NotFound("no such route: " + req.path));
  path.remove_prefix(kBase.size());
  if (path == "state" && req.method == "GET") {
    HttpResponse r = co_await State();
    co_return r;
  }
  if (path == "sandboxes" && req.method == "POST") {
    HttpResponse r = co_await Create(req);
    co_return r;
  }
  if (path.rfind("sandboxes/", 0) == 0) {
    path.remove_prefix(10);
    size_t slash = path.find('/');
    std::string id(path.substr(0, slash));
    std::string_view action = slash == std::string_view::npos ? "" : path.substr(slash + 1);
    if (!ValidSandboxId(id)) co_return rpc::ErrorResponse(Status::InvalidArgument("malformed sandbox id"));
    if (action.empty() && req.method == "DELETE") {
      worker_.Destroy(id);
      HttpResponse r;
      r.status = 204;
      co_return r;
    }
    if (action == "ready" && req.method == "POST") {
      bool ready = co_await worker_.WaitReady(id);
      co_return rpc::Json(json{{"ready", ready}}.dump());
    }
    if (action == "invoke" && req.method == "POST") {
      HttpResponse r = co_await Invoke(req, id);
      co_return r;
    }
  }
  co_return rpc::ErrorResponse(Status::NotFound("no such route: " + req.method + " " + req.path));
}

awaitable<HttpResponse> WorkerServer::Create(HttpRequest& req) {
  auto doc = json::parse(req.body, nullptr, false);
  FunctionConfig fn;
  if (!doc.is_object() || !doc.contains("function") || !FromStored(doc["function"], &fn) || fn.name.empty() ||
      !doc.value("initializationType", json()).is_string())
    co_return rpc::ErrorResponse(Status::InvalidArgument("malformed CreateSandbox request"));
  std::string init_type = doc["initializationType"].get<std::string>();
  if (init_type != "on-demand" && init_type != "provisioned-concurrency" && init_type != "snap-start")
    co_return rpc::ErrorResponse(Status::InvalidArgument("unknown initializationType " + init_type.substr(0, 64)));
  auto created = co_await worker_.CreateSandbox(fn, init_type);
  if (!created.ok()) co_return rpc::ErrorResponse(created.status());
  co_return rpc::Json(json{{"id", created->id}, {"token", std::to_string(created->token)}}.dump(), 201);
}

awaitable<HttpResponse> WorkerServer::Invoke(HttpRequest& req, const std::string& id) {
  SandboxLease lease;
  lease.sandbox = id;
  lease.worker = worker_.id();
  if (!ParseLeaseHeader(req.Header("x-kindling-lease"), &lease))
    co_return rpc::ErrorResponse(Status::InvalidArgument("malformed x-kindling-lease"));
  InvokeRequest ir;
  ir.request_id = req.Header("x-kindling-request-id");
  ir.invoked_arn = req.Header("x-kindling-invoked-arn");
  ir.trace_id = req.Header("x-kindling-trace-id");
  bool ok = !ir.request_id.empty() && Base64Decode(req.Header("x-kindling-client-context"), &ir.client_context) &&
            Base64Decode(req.Header("x-kindling-cognito-identity"), &ir.cognito_identity);
  if (!ok) co_return rpc::ErrorResponse(Status::InvalidArgument("malformed invocation headers"));
  ir.payload = std::move(req.body);
  auto result = co_await worker_.Invoke(lease, ir);
  if (!result.ok()) co_return rpc::ErrorResponse(result.status());
  HttpResponse r;
  r.content_type = "application/octet-stream";
  r.body = std::move(result->payload);
  std::string flags;
  for (auto [set, name] : {std::pair{result->cold_start, "cold"}, {result->undelivered, "undelivered"},
                           {result->sandbox_gone, "gone"}})
    if (set) flags += std::string(flags.empty() ? "" : ",") + name;
  r.headers = {{"x-kindling-function-error", result->function_error},
               {"x-kindling-executed-version", result->executed_version},
               {"x-kindling-log", Base64Encode(result->log)},
               {"x-kindling-flags", flags},
               {"x-kindling-duration-ms", std::to_string(result->duration_ms)}};
  co_return r;
}

awaitable<HttpResponse> WorkerServer::State() {
  WorkerStats st = worker_.Stats();
  auto sandboxes = co_await worker_.ListSandboxes();
  if (!sandboxes.ok()) co_return rpc::ErrorResponse(sandboxes.status());
  json list = json::array();
  for (const auto& s : *sandboxes)
    list.push_back({{"id", s.id}, {"function", s.function}, {"version", s.version}, {"busy", s.busy},
                    {"sequence", std::to_string(s.last_sequence)}});
  co_return rpc::Json(json{{"worker", worker_.id()},
                        {"sandboxes", st.sandboxes},
                        {"memoryReservedBytes", st.memory_reserved_bytes},
                        {"memoryCapacityBytes", st.memory_capacity_bytes},
                        {"list", list}}
                       .dump());
}

}  // namespace kindling
