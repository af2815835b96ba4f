#include "async/async_invoker.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "async/destination.h"
#include "common/clock.h"
#include "common/ids.h"

namespace kindling {

namespace asio = boost::asio;
using asio::awaitable;
using nlohmann::json;

namespace {

// Records whose function is gone, or whose target cannot be served, are kept here (never dropped).
constexpr const char* kUndeliverableQueue = "kindling-undeliverable";

std::string ConfigQualifier(const std::string& q) { return q.empty() ? "$LATEST" : q; }

// A JSON document as a value when it parses, else the text itself.
json AsJson(const std::string& text) {
  if (text.empty()) return nullptr;
  json v = json::parse(text, nullptr, /*allow_exceptions=*/false);
  return v.is_discarded() ? json(text) : v;
}

void Log(const std::string& line) { fprintf(stderr, "kindlingd: async: %s\n", line.c_str()); }

// A destination record (Lambda's shape) for an event's latest outcome.
json DestinationRecord(const QueuedEvent& ev, const std::string& function_arn, const std::string& condition) {
  json r = {{"version", "1.0"},
            {"timestamp", IsoTimestamp(NowEpochMs())},
            {"requestContext", {{"requestId", ev.request_id},
                                {"functionArn", function_arn},
                                {"condition", condition},
                                {"approximateInvokeCount", ev.invoke_count}}},
            {"requestPayload", AsJson(ev.payload)}};
  json last = json::parse(ev.last_result.empty() ? std::string("null") : ev.last_result, nullptr, false);
  if (last.is_object()) {
    json rc = {{"statusCode", last.value("statusCode", 200)}, {"executedVersion", last.value("executedVersion", "")}};
    if (last.contains("functionError")) rc["functionError"] = last["functionError"];
    r["responseContext"] = rc;
    r["responsePayload"] = AsJson(last.value("responsePayload", ""));
  }
  return r;
}

}  // namespace

template <typename F>
auto AsyncInvoker::OnDb(F f) -> awaitable<decltype(f())> {
  co_return co_await RunOn(db_.get_executor(), std::move(f));
}

Result<std::unique_ptr<AsyncInvoker>> AsyncInvoker::Open(asio::io_context& io, const std::string& path,
                                                         Frontend& frontend, Metrics& metrics, AsyncOptions options) {
  auto queue = EventQueue::Open(path);
  if (!queue.ok()) return queue.status();
  // One daemon per data directory: whatever an earlier process leased, it will never finish.
  Status s = (*queue)->ReleaseAllLeases();
  if (!s.ok()) return s;
  auto docs = (*queue)->LoadConfigs();
  if (!docs.ok()) return docs.status();
  auto stats = (*queue)->Stats();
  std::unique_ptr<AsyncInvoker> a(new AsyncInvoker(io, std::move(queue).value(), frontend, metrics, options));
  for (const auto& [key, doc] : *docs) {
    EventInvokeConfig c;
    json j = json::parse(doc, nullptr, false);
    if (!j.is_discarded() && FromStoredJson(j, &c)) a->configs_[key] = c;
  }
  if (stats.ok()) {
    a->stats_ = *stats;
    if (stats->depth > 0) Log(std::to_string(stats->depth) + " queued events recovered from " + path);
  }
  return a;
}

AsyncInvoker::AsyncInvoker(asio::io_context& io, std::unique_ptr<EventQueue> queue, Frontend& frontend,
                           Metrics& metrics, AsyncOptions options)
    : io_(io), queue_(std::move(queue)), frontend_(frontend), metrics_(metrics), options_(options), timer_(io) {
  if (options_.concurrency < 1) options_.concurrency = 1;
}

AsyncInvoker::~AsyncInvoker() { db_.join(); }

void AsyncInvoker::Start() { asio::co_spawn(io_, Dispatch(), asio::detached); }

void AsyncInvoker::Stop() {
  stopping_ = true;
  timer_.cancel();
}

void AsyncInvoker::Wake() {
  wake_ = true;
  timer_.cancel();
}

void AsyncInvoker::Count(const std::string& name_and_labels, double by) { metrics_.AddCounter(name_and_labels, by); }

awaitable<Status> AsyncInvoker::Accept(const PreparedInvoke& prepared, const std::string& function,
                                       const std::string& qualifier, const std::string& client_context_b64,
                                       const std::string& request_id) {
  auto item = std::make_shared<PendingAccept>();
  item->event.request_id = request_id;
  item->event.function = function;
  item->event.qualifier = qualifier;
  item->event.payload = prepared.payload;
  item->event.client_context = client_context_b64;
  item->event.accepted_ms = NowEpochMs();
  {
    std::lock_guard<std::mutex> lock(accept_mu_);
    pending_accepts_.push_back(item);
  }
  // Group commit: the first db job to run takes every accept queued so far into one transaction
  // (one fsync); later jobs find their item already done.
  auto job = [this, item] {
    std::vector<std::shared_ptr<PendingAccept>> batch;
    {
      std::lock_guard<std::mutex> lock(accept_mu_);
      batch.swap(pending_accepts_);
    }
    if (!batch.empty()) {
      std::vector<NewEvent> events;
      events.reserve(batch.size());
      for (auto& b : batch) events.push_back(b->event);
      Status st = queue_->Enqueue(events);
      for (auto& b : batch) {
        b->status = st;
        b->done = true;
      }
    }
    return item->status;
  };
  Status s = co_await OnDb(std::move(job));
  if (s.ok()) {
    Count("kindling_async_events_accepted_total{function=\"" + function + "\"}");
    Wake();
  } else {
    Log("could not enqueue " + request_id + ": " + s.message());
  }
  co_return s;
}

std::optional<EventInvokeConfig> AsyncInvoker::GetConfig(const std::string& function, const std::string& qualifier) const {
  auto it = configs_.find({function, ConfigQualifier(qualifier)});
  if (it == configs_.end()) return std::nullopt;
  return it->second;
}

std::vector<std::pair<std::string, EventInvokeConfig>> AsyncInvoker::ListConfigs(const std::string& function) const {
  std::vector<std::pair<std::string, EventInvokeConfig>> out;
  for (auto it = configs_.lower_bound({function, ""}); it != configs_.end() && it->first.first == function; ++it)
    out.emplace_back(it->first.second, it->second);
  return out;
}

awaitable<Status> AsyncInvoker::PutConfig(const std::string& function, const std::string& qualifier,
                                          EventInvokeConfig config) {
  std::string q = ConfigQualifier(qualifier);
  std::string doc = ToStoredJson(config).dump();
  auto job = [this, function, q, doc] { return queue_->PutConfig(function, q, doc); };
  Status s = co_await OnDb(std::move(job));
  if (s.ok()) configs_[{function, q}] = config;
  co_return s;
}

awaitable<Result<bool>> AsyncInvoker::DeleteConfig(const std::string& function, const std::string& qualifier) {
  std::string q = ConfigQualifier(qualifier);
  auto job = [this, function, q] { return queue_->DeleteConfig(function, q); };
  auto r = co_await OnDb(std::move(job));
  if (r.ok()) configs_.erase({function, q});
  co_return r;
}

void AsyncInvoker::ForgetFunction(const std::string& function) {
  for (auto it = configs_.lower_bound({function, ""}); it != configs_.end() && it->first.first == function;)
    it = configs_.erase(it);
  asio::co_spawn(io_, DeleteConfigsOf(function), asio::detached);
}

awaitable<void> AsyncInvoker::DeleteConfigsOf(std::string function) {
  auto job = [this, function] { return queue_->DeleteConfigs(function); };
  Status s = co_await OnDb(std::move(job));
  if (!s.ok()) Log("could not delete the event invoke configs of " + function + ": " + s.message());
}

awaitable<Result<std::vector<ReceivedMessage>>> AsyncInvoker::Receive(const std::string& queue, int max,
                                                                      int64_t visibility_ms) {
  int64_t now = NowEpochMs();
  auto job = [this, queue, max, visibility_ms, now] { return queue_->Receive(queue, max, visibility_ms, now); };
  co_return co_await OnDb(std::move(job));
}

awaitable<Result<bool>> AsyncInvoker::DeleteMessage(const std::string& queue, const std::string& id) {
  auto job = [this, queue, id] { return queue_->DeleteMessage(queue, id); };
  co_return co_await OnDb(std::move(job));
}

awaitable<Result<int>> AsyncInvoker::PurgeQueue(const std::string& queue) {
  auto job = [this, queue] { return queue_->PurgeQueue(queue); };
  co_return co_await OnDb(std::move(job));
}

awaitable<Result<std::vector<std::pair<std::string, int64_t>>>> AsyncInvoker::ListQueues() {
  auto job = [this] { return queue_->ListQueues(); };
  co_return co_await OnDb(std::move(job));
}

void AsyncInvoker::ExportGauges(Metrics& metrics) const {
  metrics.SetGauge("kindling_async_queue_depth", static_cast<double>(stats_.depth));
  double age = stats_.oldest_accepted_ms ? (NowEpochMs() - stats_.oldest_accepted_ms) / 1000.0 : 0;
  metrics.SetGauge("kindling_async_oldest_event_age_seconds", age < 0 ? 0 : age);
  metrics.SetGauge("kindling_async_deliveries_in_flight", in_flight_);
}

awaitable<void> AsyncInvoker::Dispatch() {
  struct Round {
    Result<std::vector<QueuedEvent>> leased = std::vector<QueuedEvent>{};
    std::optional<int64_t> next_due;
    std::optional<QueueStats> stats;
  };
  int64_t last_stats = 0;
  while (!stopping_) {
    wake_ = false;
    int free = options_.concurrency - in_flight_;
    int64_t now = NowEpochMs();
    bool want_stats = now - last_stats >= 500;
    int64_t lease_ms = options_.lease_ms;
    auto job = [this, free, now, want_stats, lease_ms] {
      Round r;
      if (free > 0) r.leased = queue_->Lease(now, free, lease_ms);
      if (auto due = queue_->NextDue(); due.ok()) r.next_due = *due;
      if (want_stats)
        if (auto st = queue_->Stats(); st.ok()) r.stats = *st;
      return r;
    };
    Round r = co_await OnDb(std::move(job));
    if (r.stats) {
      stats_ = *r.stats;
      last_stats = now;
    }
    if (stopping_) break;  // anything just leased is released by the next daemon at startup
    int64_t wait_ms = 1000;
    if (!r.leased.ok()) {
      Log("lease: " + r.leased.status().message());
    } else {
      for (QueuedEvent& ev : *r.leased) {
        ++in_flight_;
        asio::co_spawn(io_, Deliver(std::move(ev)), asio::detached);
      }
      if (in_flight_ < options_.concurrency && r.next_due)
        wait_ms = std::clamp<int64_t>(*r.next_due - NowEpochMs(), 0, 1000);
    }
    if (wake_ || wait_ms <= 0) continue;
    timer_.expires_after(std::chrono::milliseconds(wait_ms));
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

awaitable<void> AsyncInvoker::Deliver(QueuedEvent ev) {
  co_await DeliverOne(std::move(ev));
  --in_flight_;
  Wake();
}

awaitable<void> AsyncInvoker::DeliverOne(QueuedEvent ev) {
  int64_t now = NowEpochMs();
  EventInvokeConfig cfg;
  if (auto c = GetConfig(ev.function, ev.qualifier)) cfg = *c;
  int64_t deadline = ev.first_accepted_ms + int64_t{cfg.MaxEventAgeSeconds()} * 1000;
  double scale = options_.delay_scale;

  // Resolve the function again: it may have changed, or gone, since the event was accepted.
  InvokeCall call;
  call.function = ev.function;
  call.qualifier = ev.qualifier;
  call.invocation_type = "Event";
  call.client_context = ev.client_context;
  call.payload = ev.payload;
  auto prepared = frontend_.Prepare(std::move(call));
  if (auto* err = std::get_if<ApiError>(&prepared)) {
    json body = {{"requestId", ev.request_id}, {"function", ev.function}, {"qualifier", ev.qualifier},
                 {"reason", err->type + ": " + err->message}, {"timestamp", IsoTimestamp(now)},
                 {"approximateInvokeCount", ev.invoke_count}, {"requestPayload", AsJson(ev.payload)}};
    Log("event " + ev.request_id + " for " + ev.function + " is undeliverable (" + err->message + "): kept in local queue " +
        kUndeliverableQueue);
    Count("kindling_async_events_undeliverable_total");
    std::vector<QueueMessage> kept(1);
    kept[0].queue = kUndeliverableQueue;
    kept[0].body = body.dump();
    co_await Finish(std::move(ev), std::vector<NewEvent>(), std::move(kept));
    co_return;
  }
  PreparedInvoke& p = std::get<PreparedInvoke>(prepared);
  std::string dead_letter = p.fn.dead_letter_arn;
  std::string function_arn = p.invoked_arn + (ev.qualifier.empty() ? ":" + p.fn.version : "");

  if (now >= deadline) {
    co_await Fail(std::move(ev), cfg, dead_letter, function_arn, std::string("EventAgeExceeded"));
    co_return;
  }
  Count("kindling_async_event_age_seconds_sum", (now - ev.first_accepted_ms) / 1000.0);
  Count("kindling_async_event_age_seconds_count");
  auto outcome = co_await frontend_.Run(std::move(p), ev.request_id);
  if (stopping_) co_return;  // the event stays queued (leased); the next start delivers it again
  now = NowEpochMs();
  if (auto* err = std::get_if<ApiError>(&outcome)) {
    // Throttled or a service error: back off exponentially while the event is young enough.
    ev.backoffs++;
    const char* kind = err->status == 429 ? "throttled" : "service_error";
    Count(std::string("kindling_async_deliveries_total{function=\"") + ev.function + "\",result=\"" + kind + "\"}");
    int64_t next = std::min(now + ScaleDelay(ThrottleBackoffMs(ev.backoffs), scale), deadline);
    co_await Requeue(std::move(ev), next);
    co_return;
  }
  InvokeReply& reply = std::get<InvokeReply>(outcome);
  ev.invoke_count++;
  ev.backoffs = 0;
  json last = {{"statusCode", reply.status}, {"executedVersion", reply.executed_version}, {"responsePayload", reply.body}};
  if (!reply.function_error.empty()) last["functionError"] = reply.function_error;
  ev.last_result = last.dump();
  if (reply.function_error.empty()) {
    Count("kindling_async_deliveries_total{function=\"" + ev.function + "\",result=\"success\"}");
    std::vector<NewEvent> events;
    std::vector<QueueMessage> messages;
    if (!cfg.on_success.empty()) Route(cfg.on_success, DestinationRecord(ev, function_arn, "Success").dump(), &events, &messages, now);
    co_await Finish(std::move(ev), std::move(events), std::move(messages));
    co_return;
  }
  Count("kindling_async_deliveries_total{function=\"" + ev.function + "\",result=\"function_error\"}");
  ev.function_errors++;
  int retry = ev.function_errors;  // the retry this error asks for
  if (retry > cfg.RetryAttempts()) {
    co_await Fail(std::move(ev), cfg, dead_letter, function_arn, std::string("RetriesExhausted"));
    co_return;
  }
  Count("kindling_async_retries_total{function=\"" + ev.function + "\"}");
  int64_t next = std::min(now + ScaleDelay(FunctionErrorRetryDelayMs(retry), scale), deadline);
  co_await Requeue(std::move(ev), next);
}

// Failure: OnFailure destination and/or dead-letter queue; neither -> dropped, as in Lambda.
awaitable<void> AsyncInvoker::Fail(QueuedEvent ev, EventInvokeConfig cfg, std::string dead_letter,
                                   std::string function_arn, std::string condition) {
  std::vector<NewEvent> events;
  std::vector<QueueMessage> messages;
  int64_t at = NowEpochMs();
  json rec = DestinationRecord(ev, function_arn, condition);
  if (!cfg.on_failure.empty()) Route(cfg.on_failure, rec.dump(), &events, &messages, at);
  if (!dead_letter.empty()) {
    std::string message = condition == "EventAgeExceeded" ? "Event age exceeded MaximumEventAgeInSeconds"
                                                          : "Retries exhausted";
    int code = 200;
    if (rec.contains("responseContext")) code = rec["responseContext"].value("statusCode", 200);
    if (rec.contains("responsePayload") && rec["responsePayload"].is_object())
      message = rec["responsePayload"].value("errorMessage", message);
    else if (rec.contains("responsePayload") && rec["responsePayload"].is_string())
      message = rec["responsePayload"].get<std::string>();
    if (message.size() > 1024) message.resize(1024);
    json attrs = {{"RequestID", {{"DataType", "String"}, {"StringValue", ev.request_id}}},
                  {"ErrorCode", {{"DataType", "Number"}, {"StringValue", std::to_string(code)}}},
                  {"ErrorMessage", {{"DataType", "String"}, {"StringValue", message}}}};
    size_t before = messages.size();
    Route(dead_letter, ev.payload, &events, &messages, at);
    for (size_t i = before; i < messages.size(); ++i) messages[i].attributes = attrs.dump();
    Count("kindling_async_dead_letters_total{function=\"" + ev.function + "\"}");
  }
  if (cfg.on_failure.empty() && dead_letter.empty()) {
    Log("event " + ev.request_id + " for " + ev.function + " dropped: " + condition +
        " and no OnFailure destination or dead-letter queue");
    Count("kindling_async_events_dropped_total{reason=\"" + condition + "\"}");
  }
  Count("kindling_async_events_failed_total{function=\"" + ev.function + "\",condition=\"" + condition + "\"}");
  co_await Finish(std::move(ev), std::move(events), std::move(messages));
}

void AsyncInvoker::Route(const std::string& target_arn, const std::string& record, std::vector<NewEvent>* events,
                         std::vector<QueueMessage>* messages, int64_t now_ms) {
  Destination d = ParseDestination(target_arn);
  if (d.kind == Destination::kLambda) {
    NewEvent e;
    e.request_id = NewRequestId();
    e.function = d.function;
    e.qualifier = d.qualifier;
    e.payload = record;
    e.accepted_ms = now_ms;
    events->push_back(std::move(e));
    Count("kindling_async_destination_records_total{target=\"lambda\"}");
  } else if (d.kind == Destination::kLocalQueue) {
    messages->push_back(QueueMessage{d.queue, target_arn, record, ""});
    Count("kindling_async_destination_records_total{target=\"" + d.service + "\"}");
  } else {
    messages->push_back(QueueMessage{kUndeliverableQueue, target_arn, record, ""});
    Count("kindling_async_destination_records_total{target=\"undeliverable\"}");
  }
}

awaitable<void> AsyncInvoker::Finish(QueuedEvent ev, std::vector<NewEvent> events, std::vector<QueueMessage> messages) {
  int64_t now = NowEpochMs();
  auto job = [this, &ev, &events, &messages, now] { return queue_->Finish(ev, events, messages, now); };
  auto r = co_await OnDb(std::move(job));
  if (!r.ok()) Log("finishing " + ev.request_id + ": " + r.status().message() + " (it will be delivered again)");
  else if (!*r) Log("event " + ev.request_id + " was leased by someone else meanwhile: its outcome is not recorded");
}

awaitable<void> AsyncInvoker::Requeue(QueuedEvent ev, int64_t next_attempt_ms) {
  auto job = [this, &ev, next_attempt_ms] { return queue_->Requeue(ev, next_attempt_ms); };
  auto r = co_await OnDb(std::move(job));
  if (!r.ok()) Log("requeueing " + ev.request_id + ": " + r.status().message());
}

}  // namespace kindling
