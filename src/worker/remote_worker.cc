#include "worker/remote_worker.h"

#include <nlohmann/json.hpp>

#include "common/function_json.h"
#include "common/ids.h"
#include "rpc/rpc.h"
#include "worker/lease.h"

namespace kindling {

namespace asio = boost::asio;
using asio::awaitable;
using json = nlohmann::json;

namespace {
const std::string kBase = "/kindling/v1/worker/";
}

RemoteWorker::RemoteWorker(asio::io_context& io, HttpClient& http, std::string id, std::string url,
                           std::string cluster_key, RemoteWorkerOptions options)
    : io_(io), http_(http), id_(std::move(id)), url_(std::move(url)), cluster_key_(std::move(cluster_key)),
      options_(options) {}

HttpClientRequest RemoteWorker::Request(std::string method, std::string target, std::string body) const {
  HttpClientRequest r;
  r.method = std::move(method);
  r.target = kBase + target;
  r.body = std::move(body);
  r.headers.emplace_back(rpc::kClusterKeyHeader, cluster_key_);
  return r;
}

void RemoteWorker::Start() {
  if (!stopped_) return;
  stopped_ = false;
  timer_ = std::make_shared<asio::steady_timer>(io_);
  asio::co_spawn(io_, [self = shared_from_this()] { return self->PollLoop(); }, asio::detached);
}

void RemoteWorker::Stop() {
  stopped_ = true;
  if (timer_) timer_->cancel();
}

awaitable<void> RemoteWorker::PollLoop() {
  auto self = shared_from_this();
  auto timer = timer_;
  while (!stopped_) {
    co_await Poll();
    if (stopped_) break;
    timer->expires_after(options_.poll_interval);
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

awaitable<Result<RemoteWorker::State>> RemoteWorker::FetchState() {
  auto r = co_await http_.Call(url_, Request("GET", "state"), options_.control_timeout);
  if (!r.ok()) co_return r.status().WithContext("worker " + id_);
  if (r->status != 200) co_return rpc::ErrorFromResponse(*r).WithContext("worker " + id_);
  auto doc = json::parse(r->body, nullptr, false);
  if (!doc.is_object() || !doc["list"].is_array() || !doc["memoryReservedBytes"].is_number_unsigned() ||
      !doc["memoryCapacityBytes"].is_number_unsigned() || !doc["sandboxes"].is_number_unsigned())
    co_return Status::Error("worker " + id_ + ": malformed state");
  State state;
  state.stats.sandboxes = doc["sandboxes"].get<uint64_t>();
  state.stats.memory_reserved_bytes = doc["memoryReservedBytes"].get<uint64_t>();
  state.stats.memory_capacity_bytes = doc["memoryCapacityBytes"].get<uint64_t>();
  for (const auto& entry : doc["list"]) {
    if (!entry.is_object() || !entry["id"].is_string()) continue;
    SandboxState st;
    st.id = entry["id"].get<std::string>();
    st.function = entry.value("function", "");
    st.version = entry.value("version", "");
    st.busy = entry.value("busy", false);
    ParseDecimalU64(entry.value("sequence", "0"), &st.last_sequence);
    state.sandboxes.push_back(std::move(st));
  }
  co_return state;
}

awaitable<Result<std::vector<SandboxState>>> RemoteWorker::ListSandboxes() {
  auto state = co_await FetchState();
  if (!state.ok()) co_return state.status();
  co_return std::move(state->sandboxes);
}

awaitable<Status> RemoteWorker::Poll() {
  uint64_t generation = ++generation_;
  auto state = co_await FetchState();
  if (!state.ok()) {
    reachable_ = false;
    co_return state.status();
  }
  reachable_ = true;
  polled_ = state->stats;
  created_since_poll_bytes_ = 0;
  std::map<std::string, bool> listed;
  for (const auto& st : state->sandboxes) listed[st.id] = true;
  // Sandboxes this client knew of before the poll was sent (it created them, or an earlier poll
  // listed them) that the worker no longer lists have ended.
  std::vector<std::string> gone;
  for (auto it = known_.begin(); it != known_.end();) {
    if (it->second.generation < generation && !listed.count(it->first)) {
      gone.push_back(it->first);
      it = known_.erase(it);
    } else {
      created_since_poll_bytes_ += it->second.generation >= generation ? it->second.memory_bytes : 0;
      ++it;
    }
  }
  for (const auto& id : listed) known_.try_emplace(id.first, Known{0, generation - 1});
  for (const auto& id : gone)
    if (gone_listener_) gone_listener_(id);
  co_return Status::Ok();
}

awaitable<Result<NewSandbox>> RemoteWorker::CreateSandbox(FunctionConfig fn, std::string initialization_type) {
  json body{{"function", ToStored(fn)}, {"initializationType", initialization_type}};
  auto r = co_await http_.Call(url_, Request("POST", "sandboxes", body.dump()), options_.create_timeout);
  if (!r.ok() && r.status().code() == StatusCode::kUnavailable) reachable_ = false;  // until the next poll
  if (!r.ok()) co_return r.status().WithContext("worker " + id_);
  if (r->status != 201) co_return rpc::ErrorFromResponse(*r).WithContext("worker " + id_);
  auto doc = json::parse(r->body, nullptr, false);
  NewSandbox out;
  if (!doc.is_object() || !doc["id"].is_string() || !doc["token"].is_string())
    co_return Status::Error("worker " + id_ + ": malformed CreateSandbox answer");
  out.id = doc["id"].get<std::string>();
  if (!ParseDecimalU64(doc["token"].get<std::string>(), &out.token))
    co_return Status::Error("worker " + id_ + ": malformed sandbox token");
  uint64_t bytes = uint64_t(fn.memory_mb) << 20;
  known_[out.id] = Known{bytes, generation_};  // counted until a poll sent after now lists it
  created_since_poll_bytes_ += bytes;
  co_return out;
}

awaitable<bool> RemoteWorker::WaitReady(std::string sandbox) {
  auto r = co_await http_.Call(url_, Request("POST", "sandboxes/" + sandbox + "/ready"), options_.create_timeout);
  if (!r.ok() || r->status != 200) co_return false;
  auto doc = json::parse(r->body, nullptr, false);
  co_return doc.is_object() && doc["ready"].is_boolean() && doc["ready"].get<bool>();
}

awaitable<Result<InvokeResult>> RemoteWorker::Invoke(const SandboxLease& lease, const InvokeRequest& request) {
  HttpClientRequest req = Request("POST", "sandboxes/" + lease.sandbox + "/invoke", request.payload);
  req.content_type = "application/octet-stream";
  req.headers.insert(req.headers.end(), {{"x-kindling-lease", FormatLeaseHeader(lease)},
                                         {"x-kindling-request-id", request.request_id},
                                         {"x-kindling-invoked-arn", request.invoked_arn},
                                         {"x-kindling-trace-id", request.trace_id},
                                         {"x-kindling-client-context", Base64Encode(request.client_context)},
                                         {"x-kindling-cognito-identity", Base64Encode(request.cognito_identity)}});
  auto timeout = request.function_timeout + options_.invoke_slack + (lease.cold ? std::chrono::seconds(10) : std::chrono::seconds(0));
  auto r = co_await http_.Call(url_, std::move(req), std::chrono::duration_cast<std::chrono::milliseconds>(timeout));
  if (!r.ok() && r.status().code() == StatusCode::kUnavailable) reachable_ = false;  // until the next poll
  if (!r.ok()) co_return r.status().WithContext("worker " + id_);
  if (r->status != 200) co_return rpc::ErrorFromResponse(*r).WithContext("worker " + id_);
  InvokeResult out;
  out.payload = std::move(r->body);
  out.function_error = r->Header("x-kindling-function-error");
  out.executed_version = r->Header("x-kindling-executed-version");
  if (!Base64Decode(r->Header("x-kindling-log"), &out.log)) out.log.clear();
  const std::string& flags = r->Header("x-kindling-flags");
  for (size_t start = 0; start <= flags.size();) {
    size_t comma = flags.find(',', start);
    std::string_view flag = std::string_view(flags).substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (flag == "cold") out.cold_start = true;
    if (flag == "undelivered") out.undelivered = true;
    if (flag == "gone") out.sandbox_gone = true;
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  out.duration_ms = std::atof(r->Header("x-kindling-duration-ms").c_str());
  co_return out;
}

void RemoteWorker::Destroy(const std::string& sandbox) {
  asio::co_spawn(io_, DestroyWithRetries(sandbox), asio::detached);
}

awaitable<void> RemoteWorker::DestroyWithRetries(std::string sandbox) {
  auto self = shared_from_this();
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto r = co_await http_.Call(url_, Request("DELETE", "sandboxes/" + sandbox), options_.control_timeout);
    if (r.ok() && (r->status == 204 || r->status == 404 || r->status == 400)) co_return;
    asio::steady_timer wait(io_, std::chrono::milliseconds(200 << attempt));
    boost::system::error_code ec;
    co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  // Unreachable worker: its own reconciliation (it destroys sandboxes nobody knows) cleans up.
}

WorkerStats RemoteWorker::Stats() {
  WorkerStats st = polled_;
  st.memory_reserved_bytes += created_since_poll_bytes_;
  st.available = reachable_;
  return st;
}

}  // namespace kindling
