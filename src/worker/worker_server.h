// WorkerServer: a worker's RPC surface (the worker role of kindlingd in cluster mode). Serves a
// WorkerClient (the local Worker) to assignment nodes and frontends, under /kindling/v1/worker/:
//
//   POST   sandboxes                {"function": <stored FunctionConfig>, "initializationType"}
//                                   -> 201 {"id", "token"}            (token: decimal string)
//   POST   sandboxes/{id}/ready     -> {"ready": bool}
//   POST   sandboxes/{id}/invoke    body: the payload; headers x-kindling-lease ("TOKEN:SEQUENCE"),
//                                   x-kindling-request-id, -invoked-arn, -trace-id,
//                                   -client-context and -cognito-identity (base64)
//                                   -> 200, body: the function's response or error document;
//                                   headers x-kindling-function-error, -executed-version,
//                                   -log (base64 tail), -flags ("cold", "undelivered", "gone",
//                                   comma-separated), -duration-ms
//   DELETE sandboxes/{id}           -> 204 (also for unknown ids)
//   GET    state                    -> {"worker", "sandboxes", "memoryReservedBytes",
//                                   "memoryCapacityBytes", "list": [{"id", "function", "version",
//                                   "busy", "sequence"}]}  (list: the worker's live sandboxes;
//                                   sequence: of the last lease served, decimal string)
//
// Every request must carry the cluster key (rpc.h); others get 401. Errors are rpc.h's Status
// documents. Malformed requests get 400 and change nothing.
//
// Thread safety: runs on the worker's io_context thread.
#pragma once

#include <string>

#include "http/http_server.h"
#include "worker/worker_client.h"

namespace kindling {

inline constexpr size_t kMaxRpcPayloadBytes = 6291556 + 65536;  // a sync payload and its envelope

class WorkerServer : public HttpHandler {
 public:
  WorkerServer(WorkerClient& worker, std::string cluster_key);

  size_t BodyLimit(const std::string& method, const std::string& path) override;
  HttpResponse TooLarge(const std::string& method, const std::string& path) override;
  boost::asio::awaitable<HttpResponse> Handle(HttpRequest& request) override;

 private:
  boost::asio::awaitable<HttpResponse> Create(HttpRequest& request);
  boost::asio::awaitable<HttpResponse> Invoke(HttpRequest& request, const std::string& id);
  boost::asio::awaitable<HttpResponse> State();

  WorkerClient& worker_;
  std::string cluster_key_;
};

}  // namespace kindling
