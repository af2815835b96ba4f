// The assignment journal in etcd: which sandboxes each partition's leader created, so that a
// follower that takes over knows them all.
//
//   /kindling/assignment/journal/<PP>/<worker>/<sandbox> = {"function": <stored FunctionConfig>,
//                                                           "token": "<decimal>"}
//
// PartitionJournal writes one partition's entries, fenced on the writer's election key: a node that
// no longer leads the partition cannot write (Created answers Conflict). JournalReplica follows
// every partition's entries (each assignment node keeps one: a hot replica).
//
// Thread safety: the io_context thread of the EtcdClient.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "assignment/assignment_service.h"
#include "cluster/election.h"
#include "cluster/etcd_client.h"

namespace kindling::cluster {

inline constexpr char kJournalPrefix[] = "/kindling/assignment/journal/";

struct JournalEntry {
  int partition = 0;
  std::string worker;
  std::string sandbox;
  uint64_t token = 0;
  FunctionConfig fn;
};

std::string JournalKey(int partition, const std::string& worker, const std::string& sandbox);

class PartitionJournal : public SandboxJournal {
 public:
  PartitionJournal(EtcdClient& etcd, const PartitionElections& elections, int partition, std::string node)
      : etcd_(etcd), elections_(elections), partition_(partition), node_(std::move(node)) {}
  boost::asio::awaitable<Status> Created(const FunctionConfig& fn, const std::string& worker,
                                         const std::string& sandbox, uint64_t token) override;
  boost::asio::awaitable<void> Ended(const std::string& worker, const std::string& sandbox) override;

 private:
  EtcdClient& etcd_;
  const PartitionElections& elections_;
  int partition_;
  std::string node_;
};

class JournalReplica {
 public:
  JournalReplica(boost::asio::io_context& io, EtcdClient& etcd, int partitions);
  // Reads every entry, then follows changes until Stop.
  boost::asio::awaitable<Status> Start();
  void Stop() { cancel_->Cancel(); }
  std::vector<JournalEntry> Entries(int partition) const;
  // Reads one partition's entries from etcd again (linearizable), replacing what the watch brought:
  // what a new leader does before it trusts the replica.
  boost::asio::awaitable<Status> Reload(int partition);
  size_t size() const;
  int64_t revision() const { return revision_; }

 private:
  void Apply(const EtcdEvent& e);
  boost::asio::awaitable<void> WatchLoop(int64_t from);

  boost::asio::io_context& io_;
  EtcdClient& etcd_;
  std::vector<std::map<std::string, JournalEntry>> entries_;  // partition -> "<worker>/<sandbox>"
  std::shared_ptr<WatchCancel> cancel_ = std::make_shared<WatchCancel>();
  int64_t revision_ = 0;
};

}  // namespace kindling::cluster
