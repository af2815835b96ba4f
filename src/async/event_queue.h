// EventQueue: the durable store of asynchronous invocation, an SQLite database of its own
// (<data-dir>/events.db) holding
//   events    accepted Event invocations until they succeed or fail for good,
//   configs   EventInvokeConfig documents per (function, qualifier),
//   messages  local queues: destination records and dead letters for SQS/SNS/EventBridge targets.
//
// Durability: WAL with synchronous=FULL. A commit returns only after the WAL frames are written
// and fsync'd, so an event Enqueue reported is on disk before kindlingd answers 202: it survives
// kill -9 (which NORMAL would already guarantee: the frames are in the page cache before commit
// returns) and also power loss or a kernel crash (which NORMAL would not). Group commit (one
// transaction per batch of concurrent accepts) keeps the fsync off the per-event cost.
//
// Leases: Lease() marks due events as owned until now + lease_ms under a fresh token. The owner
// finishes an event with Finish/Requeue under that token; if the owner dies the lease expires and
// the event is leased again (at-least-once delivery). Finish deletes the event and writes the
// records it produces (new events for Lambda destinations, local queue messages) in the same
// transaction, so a record is written exactly when its event leaves the queue.
//
// Thread safety: not thread-safe (one connection). kindlingd uses it from one dedicated thread.
// Times are epoch milliseconds passed in by the caller (testable).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

struct sqlite3;

namespace kindling {

// An event as it is accepted.
struct NewEvent {
  std::string request_id;
  std::string function;        // function name (resolved again at every delivery)
  std::string qualifier;       // version or alias as invoked; "" = unqualified
  std::string payload;         // JSON text
  std::string client_context;  // X-Amz-Client-Context as received (base64), "" = none
  int64_t accepted_ms = 0;     // first-accepted time (event age counts from here)
  int64_t not_before_ms = 0;   // first delivery time (0 = at once)
};

// An event in the queue.
struct QueuedEvent {
  int64_t id = 0;
  std::string request_id, function, qualifier, payload, client_context;
  int invoke_count = 0;     // invocations that reached the function
  int function_errors = 0;  // of them, ended in a function error (retries used = this - 1)
  int backoffs = 0;         // consecutive throttle / service-error requeues (backoff exponent)
  int64_t first_accepted_ms = 0;
  int64_t next_attempt_ms = 0;
  std::string last_result;  // JSON: the latest response context + payload, "" = none
  std::string lease_token;
};

// A message for a local queue.
struct QueueMessage {
  std::string queue;       // local queue name
  std::string target_arn;  // the ARN the user configured
  std::string body;
  std::string attributes;  // JSON object of SQS-style MessageAttributes, "" = none
};

struct ReceivedMessage {
  std::string message_id, queue, target_arn, body, attributes, receipt_handle;
  int64_t sent_ms = 0;
  int receive_count = 0;
};

struct QueueStats {
  int64_t depth = 0;                // events waiting (leased ones included)
  int64_t oldest_accepted_ms = 0;   // 0 when empty
  int64_t leased = 0;
};

class EventQueue {
 public:
  static Result<std::unique_ptr<EventQueue>> Open(const std::string& path);
  ~EventQueue();

  // Writes every event in one transaction; assigns nothing visible to the caller.
  Status Enqueue(const std::vector<NewEvent>& events);
  // Leases up to `limit` events due at now_ms whose lease (if any) has expired.
  Result<std::vector<QueuedEvent>> Lease(int64_t now_ms, int limit, int64_t lease_ms);
  // Earliest time an unleased or lease-expired event becomes due; nullopt when none.
  Result<std::optional<int64_t>> NextDue();
  // Puts a leased event back with new counters and its next attempt time; false if the lease was
  // lost (another owner has it now).
  Result<bool> Requeue(const QueuedEvent& ev, int64_t next_attempt_ms);
  // Deletes a leased event and writes what its outcome produces, in one transaction; false (and
  // nothing written) if the lease was lost.
  Result<bool> Finish(const QueuedEvent& ev, const std::vector<NewEvent>& new_events,
                      const std::vector<QueueMessage>& messages, int64_t now_ms);
  // Clears every lease (startup of the only daemon on this data directory).
  Status ReleaseAllLeases();
  Result<QueueStats> Stats();

  // EventInvokeConfig documents.
  Status PutConfig(const std::string& function, const std::string& qualifier, const std::string& doc);
  Result<bool> DeleteConfig(const std::string& function, const std::string& qualifier);
  Status DeleteConfigs(const std::string& function);  // every qualifier
  // (function, qualifier) -> doc, all of them.
  Result<std::map<std::pair<std::string, std::string>, std::string>> LoadConfigs();

  // Local queues.
  Status PushMessages(const std::vector<QueueMessage>& messages, int64_t now_ms);
  // Up to `max` visible messages of a queue, oldest first; each becomes invisible for
  // visibility_ms (0: a peek that changes nothing).
  Result<std::vector<ReceivedMessage>> Receive(const std::string& queue, int max, int64_t visibility_ms,
                                               int64_t now_ms);
  // Deletes a message by its MessageId or by a receipt handle from Receive; false if absent.
  Result<bool> DeleteMessage(const std::string& queue, const std::string& id_or_receipt);
  Result<int> PurgeQueue(const std::string& queue);
  // name -> (target ARN, messages) for every queue holding messages.
  Result<std::vector<std::pair<std::string, int64_t>>> ListQueues();

 private:
  explicit EventQueue(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  Status InsertEvents(const std::vector<NewEvent>& events);
  Status InsertMessages(const std::vector<QueueMessage>& messages, int64_t now_ms);
  sqlite3* db_;
};

// Lambda's retry schedule, before scaling: the delay before retry `n` (1-based) of an event
// whose invocation ended in a function error: ~1 min, then ~2 min.
int64_t FunctionErrorRetryDelayMs(int retry);
// Backoff after the n-th (1-based) consecutive throttle or service error: 1 s doubling, at most 5 min.
int64_t ThrottleBackoffMs(int n);
// delay * scale, at least 1 ms.
int64_t ScaleDelay(int64_t delay_ms, double scale);

}  // namespace kindling
