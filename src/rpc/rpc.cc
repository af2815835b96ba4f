#include "rpc/rpc.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/files.h"
#include "common/ids.h"

namespace kindling::rpc {

namespace {
int HttpStatusOf(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kConflict: return 409;
    case StatusCode::kThrottled: return 429;
    case StatusCode::kFunctionError: return 422;
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}
}  // namespace

HttpResponse ErrorResponse(const Status& status) {
  nlohmann::json doc{{"code", CodeName(status.code())}, {"message", status.message()}};
  if (!status.lambda_error_type().empty()) doc["lambdaErrorType"] = status.lambda_error_type();
  return Json(doc.dump(), HttpStatusOf(status.code()));
}

Status ErrorFromResponse(const HttpClientResponse& response) {
  auto doc = nlohmann::json::parse(response.body, nullptr, false);
  if (!doc.is_object() || !doc["code"].is_string() || !doc["message"].is_string())
    return Status::Error("peer answered HTTP " + std::to_string(response.status) + " without an error document");
  StatusCode code = ParseCode(doc["code"].get<std::string>());
  std::string message = doc["message"].get<std::string>();
  if (code == StatusCode::kOk) return Status::Error("peer answered HTTP " + std::to_string(response.status) + " with code Ok");
  if (code == StatusCode::kFunctionError) {
    std::string type = doc.value("lambdaErrorType", "");
    return Status::FunctionError(type.empty() ? "Runtime.Unknown" : type, message);
  }
  return Status::Make(code, message);
}

HttpResponse Json(const std::string& body, int status) {
  HttpResponse r;
  r.status = status;
  r.body = body;
  return r;
}

HttpResponse Unauthorized() {
  return Json(nlohmann::json{{"code", "InvalidArgument"}, {"message", "missing or wrong cluster key"}}.dump(), 401);
}

bool Authorized(const HttpRequest& request, const std::string& key) {
  const std::string& got = request.Header(kClusterKeyHeader);
  return !key.empty() && got.size() == key.size() && CRYPTO_memcmp(got.data(), key.data(), key.size()) == 0;
}

Result<std::string> LoadClusterKey(const std::string& path, bool create) {
  std::string key;
  Status read = ReadFile(path, &key);
  if (read.ok()) {
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r' || key.back() == ' ')) key.pop_back();
    if (key.size() < 32 || key.find_first_of(" \t\r\n") != std::string::npos)
      return Status::InvalidArgument(path + ": a cluster key is one line of at least 32 characters");
    return key;
  }
  if (!create || !read.IsNotFound()) return read.WithContext("cluster key " + path);
  unsigned char raw[36];
  RAND_bytes(raw, sizeof raw);
  key = Base64Encode(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Status::Errno("create " + path);
  std::string line = key + "\n";
  bool ok = write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  close(fd);
  if (!ok) return Status::Errno("write " + path);
  return key;
}

}  // namespace kindling::rpc
