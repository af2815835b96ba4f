// EtcdClient: etcd v3 through its JSON gateway (etcd 3.4: /v3/kv/*, /v3/lease/*, /v3/watch), the
// consensus under cluster mode: leases with TTLs, compare-and-set transactions, elections and
// watches from a revision. Keys and values are bytes (base64 on the wire); revisions and lease ids
// are int64 (decimal strings on the wire).
//
// Endpoints: the members' client URLs. A call goes to the member that answered last; when a member
// cannot be reached or has no raft leader (Unavailable) the next is tried, in rounds with backoff,
// for up to three times the timeout (each try gets at most the timeout), so a cluster that lost one
// of three members, its raft leader included, keeps serving after its election. Writes are retried
// only when nothing was sent, except idempotent ones (Range, Put of a fixed value, Delete, lease
// KeepAlive/Revoke), which are retried after any transport failure. Errors: Unavailable when no
// member answered in time; the gateway's errors (a lease that expired: NotFound) otherwise.
//
// Thread safety: the io_context thread of the HttpClient.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/asio.h"
#include "common/status.h"
#include "http/http_client.h"

namespace kindling::cluster {

struct EtcdKv {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct EtcdRange {
  std::vector<EtcdKv> kvs;
  int64_t revision = 0;  // the store's revision the range was read at
  bool more = false;     // a limit cut it short
};

struct EtcdEvent {
  enum class Type { kPut, kDelete } type = Type::kPut;
  EtcdKv kv;  // a delete carries key and mod_revision only
};

// The end of the range of keys that start with prefix (etcd's range_end for a prefix).
std::string PrefixEnd(const std::string& prefix);

// Ends a Watch: Cancel() from the watcher's io thread closes its stream; Watch then returns OK.
class WatchCancel {
 public:
  void Cancel() {
    cancelled_ = true;
    if (on_cancel_) on_cancel_();
  }
  bool cancelled() const { return cancelled_; }

 private:
  friend class EtcdClient;
  bool cancelled_ = false;
  std::function<void()> on_cancel_;
};

class EtcdClient {
 public:
  EtcdClient(boost::asio::io_context& io, HttpClient& http, std::vector<std::string> endpoints,
             std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));

  const std::vector<std::string>& endpoints() const { return endpoints_; }

  // Returns the store revision after the write.
  boost::asio::awaitable<Result<int64_t>> Put(const std::string& key, const std::string& value, int64_t lease = 0);
  // Writes only if the key does not exist: true when written.
  boost::asio::awaitable<Result<bool>> PutIfAbsent(const std::string& key, const std::string& value, int64_t lease = 0);
  // Writes only if the key's mod_revision is still `mod_revision` (0: the key must not exist).
  boost::asio::awaitable<Result<bool>> PutIfUnchanged(const std::string& key, const std::string& value,
                                                      int64_t mod_revision, int64_t lease = 0);
  boost::asio::awaitable<Result<EtcdRange>> Get(const std::string& key);
  // Keys with the prefix in key order, at most limit (0: all).
  boost::asio::awaitable<Result<EtcdRange>> GetPrefix(const std::string& prefix, int64_t limit = 0);
  // Returns how many keys were deleted.
  boost::asio::awaitable<Result<int64_t>> Delete(const std::string& key);
  boost::asio::awaitable<Result<int64_t>> DeletePrefix(const std::string& prefix);
  // Deletes the key only if its mod_revision is still `mod_revision`.
  boost::asio::awaitable<Result<bool>> DeleteIfUnchanged(const std::string& key, int64_t mod_revision);
  // Fenced writes: done only while guard_key still exists with create_revision guard_revision (a
  // leader's election key), so a deposed leader cannot write. False when the guard failed.
  boost::asio::awaitable<Result<bool>> PutGuarded(const std::string& key, const std::string& value,
                                                  const std::string& guard_key, int64_t guard_revision);
  boost::asio::awaitable<Result<bool>> DeleteGuarded(const std::string& key, const std::string& guard_key,
                                                     int64_t guard_revision);

  // Leases: Grant returns the id; KeepAlive the TTL left (NotFound once it expired).
  boost::asio::awaitable<Result<int64_t>> LeaseGrant(std::chrono::seconds ttl);
  boost::asio::awaitable<Result<int64_t>> LeaseKeepAlive(int64_t lease);
  boost::asio::awaitable<Status> LeaseRevoke(int64_t lease);

  // Watches every key with the prefix from start_revision on, calling on_events for each batch
  // with the revision it brings the watcher to. Reconnects (to the next member) after a failure,
  // from the revision after the last one seen. Returns OK once cancelled, Conflict when the
  // revision was compacted away (the caller re-reads and watches again).
  using WatchHandler = std::function<void(const std::vector<EtcdEvent>& events, int64_t revision)>;
  boost::asio::awaitable<Status> Watch(std::string prefix, int64_t start_revision, WatchHandler on_events,
                                       std::shared_ptr<WatchCancel> cancel);

 private:
  // POSTs a JSON body to /v3/<path>. idempotent: may be retried after the request was sent.
  boost::asio::awaitable<Result<std::string>> Call(const std::string& path, std::string body, bool idempotent);
  boost::asio::awaitable<Result<bool>> Txn(std::string body);

  boost::asio::io_context& io_;
  HttpClient& http_;
  std::vector<std::string> endpoints_;
  std::chrono::milliseconds timeout_;
  size_t current_ = 0;  // the member that answered last
};

}  // namespace kindling::cluster
