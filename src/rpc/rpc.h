// RPC between Kindling's roles (frontend, assignment, worker): HTTP/1.1 on the same Beast server
// and pooled client as the Lambda API (docs/cluster.md says why). Control messages are JSON;
// invocation payloads travel as raw bodies with their metadata in headers, so a payload is never
// re-encoded. Every request carries the cluster key (a shared secret every node reads from its
// --cluster-key-file), compared in constant time; errors are a Status as JSON:
//   {"code": "NotFound", "message": "...", "lambdaErrorType": "..."}
// with an HTTP status that matches the code.
#pragma once

#include <string>

#include "common/status.h"
#include "http/http_client.h"
#include "http/http_server.h"

namespace kindling::rpc {

inline constexpr char kClusterKeyHeader[] = "x-kindling-cluster-key";
inline constexpr char kPrefix[] = "/kindling/v1/";

// The HTTP form of an error Status, and back. A response that is not one (a peer that is not a
// Kindling node, a truncated body) becomes an Unknown error naming the HTTP status.
HttpResponse ErrorResponse(const Status& status);
Status ErrorFromResponse(const HttpClientResponse& response);
// A JSON 200 (or `status`) response.
HttpResponse Json(const std::string& body, int status = 200);

// The 401 for a request without the right cluster key.
HttpResponse Unauthorized();
// True when the request carries `key` (constant-time compare). An empty key accepts nothing.
bool Authorized(const HttpRequest& request, const std::string& key);
// Reads a cluster key file (one line, at least 32 characters) or creates it (0600, 48 random
// base64 characters) when absent and create is true.
Result<std::string> LoadClusterKey(const std::string& path, bool create);

}  // namespace kindling::rpc
