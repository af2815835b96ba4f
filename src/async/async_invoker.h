// AsyncInvoker: asynchronous invocation (InvocationType Event) in kindlingd.
//
//   Accept   an event the Frontend has prepared is written to the EventQueue (group commit) and
//            only then acknowledged: the caller sends 202 after Accept returns OK.
//   Dispatch one coroutine on the io_context leases due events, at most `concurrency` in flight,
//            and sleeps until the next one is due or a new event arrives.
//   Deliver  per event: Frontend::Prepare (the function is resolved again) + Frontend::Run (the
//            sync path: Counting, Assignment, sandboxes). Success -> OnSuccess; function error ->
//            retry after ~1 min, ~2 min up to MaximumRetryAttempts; 429 / service error ->
//            exponential backoff from 1 s to 5 min while the event is younger than
//            MaximumEventAgeInSeconds; exhausted -> OnFailure and/or the function's DLQ.
//
// Every SQLite call runs on one dedicated thread (`db_`), never on the io thread; the io thread
// owns everything else (configs cache, counters). Delays are multiplied by `delay_scale` (tests).
//
// Thread safety: public methods are called on the io_context thread.
#pragma once

#include <atomic>
#include <boost/asio/thread_pool.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "async/event_invoke_config.h"
#include "async/event_queue.h"
#include "common/asio.h"
#include "common/metrics.h"
#include "frontend/frontend.h"

namespace kindling {

struct AsyncOptions {
  double delay_scale = 1.0;       // retry delays and backoffs are multiplied by this
  int concurrency = 8;            // deliveries in flight at most (sync invokes keep the rest)
  int64_t lease_ms = 1020000;     // > the longest function timeout (900 s) + a cold start
  ArnContext arn;
};

class AsyncInvoker {
 public:
  // Opens <path> (events.db) and releases leases an earlier, dead daemon held.
  static Result<std::unique_ptr<AsyncInvoker>> Open(boost::asio::io_context& io, const std::string& path,
                                                    Frontend& frontend, Metrics& metrics, AsyncOptions options);
  ~AsyncInvoker();

  void Start();  // spawns the dispatcher
  void Stop();   // no new leases; deliveries in flight leave their events queued

  // Durably enqueues a prepared Event invocation; OK means it is on disk.
  boost::asio::awaitable<Status> Accept(const PreparedInvoke& prepared, const std::string& function,
                                        const std::string& qualifier, const std::string& client_context_b64,
                                        const std::string& request_id);

  // EventInvokeConfig (qualifier "" is stored as "$LATEST").
  std::optional<EventInvokeConfig> GetConfig(const std::string& function, const std::string& qualifier) const;
  std::vector<std::pair<std::string, EventInvokeConfig>> ListConfigs(const std::string& function) const;
  boost::asio::awaitable<Status> PutConfig(const std::string& function, const std::string& qualifier,
                                           EventInvokeConfig config);
  boost::asio::awaitable<Result<bool>> DeleteConfig(const std::string& function, const std::string& qualifier);
  // The function is gone: its configs go too (queued events are then undeliverable).
  void ForgetFunction(const std::string& function);

  // Local queues.
  boost::asio::awaitable<Result<std::vector<ReceivedMessage>>> Receive(const std::string& queue, int max,
                                                                       int64_t visibility_ms);
  boost::asio::awaitable<Result<bool>> DeleteMessage(const std::string& queue, const std::string& id);
  boost::asio::awaitable<Result<int>> PurgeQueue(const std::string& queue);
  boost::asio::awaitable<Result<std::vector<std::pair<std::string, int64_t>>>> ListQueues();

  // Queue depth, oldest event age, deliveries in flight.
  void ExportGauges(Metrics& metrics) const;

 private:
  AsyncInvoker(boost::asio::io_context& io, std::unique_ptr<EventQueue> queue, Frontend& frontend,
               Metrics& metrics, AsyncOptions options);

  // Runs f() on the database thread and resumes on the io thread with its result.
  template <typename F>
  auto OnDb(F f) -> boost::asio::awaitable<decltype(f())>;

  boost::asio::awaitable<void> Dispatch();
  boost::asio::awaitable<void> DeleteConfigsOf(std::string function);
  boost::asio::awaitable<void> Deliver(QueuedEvent ev);  // DeliverOne, then frees its slot
  boost::asio::awaitable<void> DeliverOne(QueuedEvent ev);
  // Deletes the event and writes the records its outcome produces.
  boost::asio::awaitable<void> Finish(QueuedEvent ev, std::vector<NewEvent> events,
                                      std::vector<QueueMessage> messages);
  boost::asio::awaitable<void> Requeue(QueuedEvent ev, int64_t next_attempt_ms);
  // Failure (condition RetriesExhausted / EventAgeExceeded): OnFailure and/or dead letter.
  boost::asio::awaitable<void> Fail(QueuedEvent ev, EventInvokeConfig cfg, std::string dead_letter,
                                    std::string function_arn, std::string condition);
  // Adds the record (or dead letter) for `target_arn` to events / messages.
  void Route(const std::string& target_arn, const std::string& record, std::vector<NewEvent>* events,
             std::vector<QueueMessage>* messages, int64_t now_ms);
  void Wake();
  void Count(const std::string& name_and_labels, double by = 1);

  struct PendingAccept {
    NewEvent event;
    Status status;
    bool done = false;
  };

  boost::asio::io_context& io_;
  std::unique_ptr<EventQueue> queue_;  // touched on db_ only
  Frontend& frontend_;
  Metrics& metrics_;
  AsyncOptions options_;
  boost::asio::thread_pool db_{1};
  boost::asio::steady_timer timer_;
  bool stopping_ = false;
  bool wake_ = false;
  int in_flight_ = 0;
  std::map<std::pair<std::string, std::string>, EventInvokeConfig> configs_;
  std::mutex accept_mu_;
  std::vector<std::shared_ptr<PendingAccept>> pending_accepts_;  // guarded by accept_mu_
  QueueStats stats_;  // refreshed by the dispatcher
};

}  // namespace kindling
