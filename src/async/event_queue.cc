#include "async/event_queue.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "common/ids.h"
#include "store/sqlite.h"

namespace kindling {
namespace {

using Stmt = sqlite::Statement;
using sqlite::Error;

// BEGIN IMMEDIATE ... COMMIT, rolled back unless Commit() succeeded.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {
    ok_ = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~Transaction() {
    if (ok_ && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  bool ok() const { return ok_; }
  Status Commit() {
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) return Error(db_, "commit");
    done_ = true;
    return Status::Ok();
  }

 private:
  sqlite3* db_;
  bool ok_ = false, done_ = false;
};

constexpr const char* kEventColumns =
    "id, request_id, function, qualifier, payload, client_context, invoke_count, function_errors, backoffs,"
    " first_accepted_ms, next_attempt_ms, last_result, lease_token";

QueuedEvent ReadEvent(Stmt& st) {
  QueuedEvent e;
  e.id = st.Int(0);
  e.request_id = st.Text(1);
  e.function = st.Text(2);
  e.qualifier = st.Text(3);
  e.payload = st.Text(4);
  e.client_context = st.Text(5);
  e.invoke_count = static_cast<int>(st.Int(6));
  e.function_errors = static_cast<int>(st.Int(7));
  e.backoffs = static_cast<int>(st.Int(8));
  e.first_accepted_ms = st.Int(9);
  e.next_attempt_ms = st.Int(10);
  e.last_result = st.Text(11);
  e.lease_token = st.Text(12);
  return e;
}

}  // namespace

Result<std::unique_ptr<EventQueue>> EventQueue::Open(const std::string& path) {
  // Payloads are user data: owner-only, like metadata.db.
  auto db = sqlite::OpenPrivate(path, SQLITE_OPEN_NOMUTEX);
  if (!db.ok()) return db.status();
  std::unique_ptr<EventQueue> q(new EventQueue(*db));
  for (const char* sql : {
           "PRAGMA journal_mode=WAL",
           // FULL: every commit's WAL frames are fsync'd before COMMIT returns (see the header).
           "PRAGMA synchronous=FULL",
           "CREATE TABLE IF NOT EXISTS events ("
           " id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL, function TEXT NOT NULL,"
           " qualifier TEXT NOT NULL, payload BLOB NOT NULL, client_context TEXT NOT NULL,"
           " invoke_count INTEGER NOT NULL DEFAULT 0, function_errors INTEGER NOT NULL DEFAULT 0,"
           " backoffs INTEGER NOT NULL DEFAULT 0, first_accepted_ms INTEGER NOT NULL,"
           " next_attempt_ms INTEGER NOT NULL, last_result TEXT NOT NULL DEFAULT '',"
           " lease_until_ms INTEGER NOT NULL DEFAULT 0, lease_token TEXT NOT NULL DEFAULT '')",
           "CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt_ms)",
           "CREATE TABLE IF NOT EXISTS configs ("
           " function TEXT NOT NULL, qualifier TEXT NOT NULL, doc TEXT NOT NULL,"
           " PRIMARY KEY (function, qualifier))",
           "CREATE TABLE IF NOT EXISTS messages ("
           " id INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE, queue TEXT NOT NULL,"
           " target_arn TEXT NOT NULL, body BLOB NOT NULL, attributes TEXT NOT NULL, sent_ms INTEGER NOT NULL,"
           " visible_at_ms INTEGER NOT NULL DEFAULT 0, receive_count INTEGER NOT NULL DEFAULT 0,"
           " receipt TEXT NOT NULL DEFAULT '')",
           "CREATE INDEX IF NOT EXISTS messages_queue ON messages (queue, id)"}) {
    Status s = q->Exec(sql);
    if (!s.ok()) return s;
  }
  return q;
}

EventQueue::~EventQueue() { sqlite3_close(db_); }

Status EventQueue::Exec(const char* sql) { return sqlite::Exec(db_, sql); }

Status EventQueue::InsertEvents(const std::vector<NewEvent>& events) {
  Stmt st(db_,
          "INSERT INTO events (request_id, function, qualifier, payload, client_context, first_accepted_ms,"
          " next_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, ?)");
  if (!st.ok()) return Error(db_, "prepare");
  for (const NewEvent& e : events) {
    st.Bind(1, e.request_id);
    st.Bind(2, e.function);
    st.Bind(3, e.qualifier);
    st.BindBlob(4, e.payload);
    st.Bind(5, e.client_context);
    st.Bind(6, e.accepted_ms);
    st.Bind(7, std::max(e.not_before_ms, e.accepted_ms));
    if (st.Step() != SQLITE_DONE) return Error(db_, "enqueue");
    st.Reset();
  }
  return Status::Ok();
}

Status EventQueue::InsertMessages(const std::vector<QueueMessage>& messages, int64_t now_ms) {
  Stmt st(db_,
          "INSERT INTO messages (message_id, queue, target_arn, body, attributes, sent_ms) VALUES (?, ?, ?, ?, ?, ?)");
  if (!st.ok()) return Error(db_, "prepare");
  for (const QueueMessage& m : messages) {
    st.Bind(1, NewRequestId());
    st.Bind(2, m.queue);
    st.Bind(3, m.target_arn);
    st.BindBlob(4, m.body);
    st.Bind(5, m.attributes.empty() ? std::string("{}") : m.attributes);
    st.Bind(6, now_ms);
    if (st.Step() != SQLITE_DONE) return Error(db_, "push message");
    st.Reset();
  }
  return Status::Ok();
}

Status EventQueue::Enqueue(const std::vector<NewEvent>& events) {
  Transaction tx(db_);
  if (!tx.ok()) return Error(db_, "begin");
  Status s = InsertEvents(events);
  if (!s.ok()) return s;
  return tx.Commit();
}

Result<std::vector<QueuedEvent>> EventQueue::Lease(int64_t now_ms, int limit, int64_t lease_ms) {
  std::vector<QueuedEvent> out;
  if (limit <= 0) return out;
  std::string token = NewRequestId();
  std::string sql = std::string("UPDATE events SET lease_until_ms = ?1, lease_token = ?2 WHERE id IN ("
                                " SELECT id FROM events WHERE next_attempt_ms <= ?3 AND lease_until_ms <= ?3"
                                " ORDER BY next_attempt_ms, id LIMIT ?4) RETURNING ") + kEventColumns;
  Transaction tx(db_);
  if (!tx.ok()) return Error(db_, "begin");
  {
    Stmt st(db_, sql.c_str());
    if (!st.ok()) return Error(db_, "prepare");
    st.Bind(1, now_ms + lease_ms);
    st.Bind(2, token);
    st.Bind(3, now_ms);
    st.Bind(4, limit);
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) out.push_back(ReadEvent(st));
    if (rc != SQLITE_DONE) return Error(db_, "lease");
  }
  Status s = tx.Commit();
  if (!s.ok()) return s;
  std::sort(out.begin(), out.end(), [](const QueuedEvent& a, const QueuedEvent& b) {
    return a.next_attempt_ms != b.next_attempt_ms ? a.next_attempt_ms < b.next_attempt_ms : a.id < b.id;
  });
  return out;
}

Result<std::optional<int64_t>> EventQueue::NextDue() {
  Stmt st(db_, "SELECT min(max(next_attempt_ms, lease_until_ms)) FROM events");
  if (!st.ok()) return Error(db_, "prepare");
  if (st.Step() != SQLITE_ROW) return Error(db_, "next due");
  if (st.Null(0)) return std::optional<int64_t>();
  return std::optional<int64_t>(st.Int(0));
}

Result<bool> EventQueue::Requeue(const QueuedEvent& ev, int64_t next_attempt_ms) {
  Stmt st(db_,
          "UPDATE events SET invoke_count = ?, function_errors = ?, backoffs = ?, next_attempt_ms = ?,"
          " last_result = ?, lease_until_ms = 0, lease_token = '' WHERE id = ? AND lease_token = ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, ev.invoke_count);
  st.Bind(2, ev.function_errors);
  st.Bind(3, ev.backoffs);
  st.Bind(4, next_attempt_ms);
  st.Bind(5, ev.last_result);
  st.Bind(6, ev.id);
  st.Bind(7, ev.lease_token);
  if (st.Step() != SQLITE_DONE) return Error(db_, "requeue");
  return sqlite3_changes(db_) == 1;
}

Result<bool> EventQueue::Finish(const QueuedEvent& ev, const std::vector<NewEvent>& new_events,
                                const std::vector<QueueMessage>& messages, int64_t now_ms) {
  Transaction tx(db_);
  if (!tx.ok()) return Error(db_, "begin");
  {
    Stmt st(db_, "DELETE FROM events WHERE id = ? AND lease_token = ?");
    if (!st.ok()) return Error(db_, "prepare");
    st.Bind(1, ev.id);
    st.Bind(2, ev.lease_token);
    if (st.Step() != SQLITE_DONE) return Error(db_, "finish");
    if (sqlite3_changes(db_) != 1) return false;  // lease lost: roll back, write nothing
  }
  Status s = InsertEvents(new_events);
  if (!s.ok()) return s;
  s = InsertMessages(messages, now_ms);
  if (!s.ok()) return s;
  s = tx.Commit();
  if (!s.ok()) return s;
  return true;
}

Status EventQueue::ReleaseAllLeases() {
  return Exec("UPDATE events SET lease_until_ms = 0, lease_token = '' WHERE lease_until_ms != 0");
}

Result<QueueStats> EventQueue::Stats() {
  Stmt st(db_, "SELECT count(*), min(first_accepted_ms), sum(lease_until_ms != 0) FROM events");
  if (!st.ok()) return Error(db_, "prepare");
  if (st.Step() != SQLITE_ROW) return Error(db_, "stats");
  QueueStats s;
  s.depth = st.Int(0);
  s.oldest_accepted_ms = st.Null(1) ? 0 : st.Int(1);
  s.leased = st.Null(2) ? 0 : st.Int(2);
  return s;
}

Status EventQueue::PutConfig(const std::string& function, const std::string& qualifier, const std::string& doc) {
  Stmt st(db_, "INSERT OR REPLACE INTO configs (function, qualifier, doc) VALUES (?, ?, ?)");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, function);
  st.Bind(2, qualifier);
  st.Bind(3, doc);
  if (st.Step() != SQLITE_DONE) return Error(db_, "put config");
  return Status::Ok();
}

Result<bool> EventQueue::DeleteConfig(const std::string& function, const std::string& qualifier) {
  Stmt st(db_, "DELETE FROM configs WHERE function = ? AND qualifier = ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, function);
  st.Bind(2, qualifier);
  if (st.Step() != SQLITE_DONE) return Error(db_, "delete config");
  return sqlite3_changes(db_) == 1;
}

Status EventQueue::DeleteConfigs(const std::string& function) {
  Stmt st(db_, "DELETE FROM configs WHERE function = ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, function);
  if (st.Step() != SQLITE_DONE) return Error(db_, "delete configs");
  return Status::Ok();
}

Result<std::map<std::pair<std::string, std::string>, std::string>> EventQueue::LoadConfigs() {
  Stmt st(db_, "SELECT function, qualifier, doc FROM configs");
  if (!st.ok()) return Error(db_, "prepare");
  std::map<std::pair<std::string, std::string>, std::string> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out[{st.Text(0), st.Text(1)}] = st.Text(2);
  if (rc != SQLITE_DONE) return Error(db_, "load configs");
  return out;
}

Status EventQueue::PushMessages(const std::vector<QueueMessage>& messages, int64_t now_ms) {
  Transaction tx(db_);
  if (!tx.ok()) return Error(db_, "begin");
  Status s = InsertMessages(messages, now_ms);
  if (!s.ok()) return s;
  return tx.Commit();
}

Result<std::vector<ReceivedMessage>> EventQueue::Receive(const std::string& queue, int max, int64_t visibility_ms,
                                                         int64_t now_ms) {
  std::vector<ReceivedMessage> out;
  Transaction tx(db_);
  if (!tx.ok()) return Error(db_, "begin");
  {
    Stmt st(db_,
            "SELECT id, message_id, target_arn, body, attributes, sent_ms, receive_count FROM messages"
            " WHERE queue = ? AND visible_at_ms <= ? ORDER BY id LIMIT ?");
    if (!st.ok()) return Error(db_, "prepare");
    st.Bind(1, queue);
    st.Bind(2, now_ms);
    st.Bind(3, max);
    std::vector<int64_t> ids;
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      ReceivedMessage m;
      ids.push_back(st.Int(0));
      m.message_id = st.Text(1);
      m.queue = queue;
      m.target_arn = st.Text(2);
      m.body = st.Text(3);
      m.attributes = st.Text(4);
      m.sent_ms = st.Int(5);
      m.receive_count = static_cast<int>(st.Int(6));
      out.push_back(std::move(m));
    }
    if (rc != SQLITE_DONE) return Error(db_, "receive");
    if (visibility_ms > 0) {
      Stmt up(db_, "UPDATE messages SET visible_at_ms = ?, receive_count = receive_count + 1, receipt = ? WHERE id = ?");
      if (!up.ok()) return Error(db_, "prepare");
      for (size_t i = 0; i < ids.size(); ++i) {
        out[i].receipt_handle = out[i].message_id + "." + NewRequestId();
        out[i].receive_count++;
        up.Bind(1, now_ms + visibility_ms);
        up.Bind(2, out[i].receipt_handle);
        up.Bind(3, ids[i]);
        if (up.Step() != SQLITE_DONE) return Error(db_, "receive");
        up.Reset();
      }
    }
  }
  Status s = tx.Commit();
  if (!s.ok()) return s;
  return out;
}

Result<bool> EventQueue::DeleteMessage(const std::string& queue, const std::string& id_or_receipt) {
  Stmt st(db_, "DELETE FROM messages WHERE queue = ? AND (message_id = ?2 OR (receipt != '' AND receipt = ?2))");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, queue);
  st.Bind(2, id_or_receipt);
  if (st.Step() != SQLITE_DONE) return Error(db_, "delete message");
  return sqlite3_changes(db_) == 1;
}

Result<int> EventQueue::PurgeQueue(const std::string& queue) {
  Stmt st(db_, "DELETE FROM messages WHERE queue = ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, queue);
  if (st.Step() != SQLITE_DONE) return Error(db_, "purge");
  return sqlite3_changes(db_);
}

Result<std::vector<std::pair<std::string, int64_t>>> EventQueue::ListQueues() {
  Stmt st(db_, "SELECT queue, count(*) FROM messages GROUP BY queue ORDER BY queue");
  if (!st.ok()) return Error(db_, "prepare");
  std::vector<std::pair<std::string, int64_t>> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out.emplace_back(st.Text(0), st.Int(1));
  if (rc != SQLITE_DONE) return Error(db_, "list queues");
  return out;
}

int64_t FunctionErrorRetryDelayMs(int retry) { return retry <= 1 ? 60000 : 120000; }

int64_t ThrottleBackoffMs(int n) {
  if (n < 1) n = 1;
  if (n > 20) return 300000;
  return std::min<int64_t>(int64_t{1000} << (n - 1), 300000);
}

int64_t ScaleDelay(int64_t delay_ms, double scale) {
  double d = std::ceil(static_cast<double>(delay_ms) * scale);
  return std::max<int64_t>(1, static_cast<int64_t>(d));
}

}  // namespace kindling
