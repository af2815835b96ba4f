// AssignmentNode: the assignment role in cluster mode. Function versions hash to partitions
// (PartitionOf); for each partition this node leads it runs an AssignmentService whose lifecycle
// changes go to the partition's journal (PartitionJournal) before they are acted on.
//
// Taking over a partition (it became the leader): once the journal replica has caught up with the
// election change and every worker has been polled since, each journaled sandbox its worker still
// lists is adopted (idle, or leased by the invocation running on it), entries of sandboxes that are
// gone are removed, and sandboxes of the partition's functions that no journal lists (a dead leader
// created them but died before journaling) are destroyed. Losing a partition forgets its records.
//
// RPC (frontends call the leader of a function's partition; cluster key required):
//   POST /kindling/v1/assignment/acquire  {"partition", "function": <stored FunctionConfig>}
//        -> {"worker", "sandbox", "token", "sequence", "cold"}     (token, sequence: decimal strings)
//   POST /kindling/v1/assignment/release  {"partition", "worker", "sandbox", "token", "sequence",
//                                          "alive"} -> 204
// A partition this node does not lead: 409 with code Conflict and "leader" naming the one it knows.
//
// Thread safety: the io_context thread.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "assignment/assignment_service.h"
#include "cluster/election.h"
#include "cluster/journal.h"
#include "common/metrics.h"
#include "http/http_server.h"

namespace kindling::cluster {

class AssignmentNode : public HttpHandler {
 public:
  AssignmentNode(boost::asio::io_context& io, WorkerDirectory& workers, EtcdClient& etcd,
                 PartitionElections& elections, JournalReplica& replica, std::string node, std::string cluster_key,
                 AssignmentOptions options);
  // Wire to PartitionElections::OnLeadership.
  void OnLeadership(int partition, bool leading);
  // Worker events, passed to every partition this node leads.
  void SandboxGone(const std::string& worker, const std::string& sandbox);
  void WorkerGone(const std::string& worker);
  // Destroys nothing: the sandboxes stay with the partitions' next leaders.
  void Shutdown();

  size_t BodyLimit(const std::string& method, const std::string& path) override { return 1 << 20; }
  HttpResponse TooLarge(const std::string& method, const std::string& path) override;
  boost::asio::awaitable<HttpResponse> Handle(HttpRequest& request) override;

  // Counters for metrics and tests.
  struct Counters {
    uint64_t takeovers = 0;
    uint64_t adopted = 0;
    uint64_t journal_entries_dropped = 0;
    uint64_t unjournaled_destroyed = 0;
  };
  const Counters& counters() const { return counters_; }
  bool Leads(int partition) const;

 private:
  struct Partition {
    std::unique_ptr<PartitionJournal> journal;
    std::unique_ptr<AssignmentService> service;
    bool leading = false;
    uint64_t epoch = 0;  // bumped on every leadership change: a takeover in flight checks it
  };
  Partition& Get(int partition);
  boost::asio::awaitable<void> TakeOver(int partition, uint64_t epoch);
  HttpResponse NotLeader(int partition) const;

  boost::asio::io_context& io_;
  WorkerDirectory& workers_;
  EtcdClient& etcd_;
  PartitionElections& elections_;
  JournalReplica& replica_;
  std::string node_, cluster_key_;
  AssignmentOptions options_;
  std::map<int, Partition> partitions_;
  Counters counters_;
};

// The frontend's side: an Assigner that asks the leader of each function's partition over RPC.
// A call that finds no leader, or a node that no longer leads, waits for the election (up to
// `failover_wait`) and asks the new leader; Unavailable when none answers in that time.
class RemoteAssigner : public Assigner {
 public:
  RemoteAssigner(boost::asio::io_context& io, HttpClient& http, const PartitionElections& elections,
                 std::string cluster_key, std::chrono::milliseconds failover_wait = std::chrono::milliseconds(8000));
  boost::asio::awaitable<Result<SandboxLease>> Acquire(const FunctionConfig& fn) override;
  void Release(const SandboxLease& lease, bool sandbox_alive) override;
  uint64_t retries() const { return retries_; }

 private:
  boost::asio::awaitable<void> ReleaseWithRetries(SandboxLease lease, bool alive, int partition);

  boost::asio::io_context& io_;
  HttpClient& http_;
  const PartitionElections& elections_;
  std::string cluster_key_;
  std::chrono::milliseconds failover_wait_;
  std::map<std::string, int> partition_of_lease_;  // worker/sandbox -> partition (for Release)
  uint64_t retries_ = 0;
};

}  // namespace kindling::cluster
