// PartitionElections: who leads each assignment partition, decided in etcd by its election recipe
// (campaign/observe), for all partitions at once.
//
// Each candidate node puts <prefix><PP>/<node id> = {"node", "url"} on its node lease, if absent;
// the leader of partition PP is the candidate whose key has the lowest create_revision, the next
// ones in that order are its followers (and successors). When a leader's lease expires (it died, or
// lost etcd for the lease TTL) its keys go and the next candidate leads: failover costs the lease
// TTL plus a watch event. Observers (frontends) watch the same keys without campaigning.
//
// Spread: while some candidate leads less than its share (ceil(P / candidates)), a candidate leading
// more resigns a partition (delete, then campaign again at the back of the queue); the next
// candidate takes it and, if that puts it over its share, passes one on in turn. Leadership spreads
// over the nodes once they have all joined (about a second per move), and not before.
//
// A leader acts as one only while its lease is surely alive: IsLeader() also asks lease_alive()
// (Registration::LeaseAlive), so a node cut off from etcd stops leading before its key expires.
//
// Thread safety: the io_context thread of the EtcdClient.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cluster/etcd_client.h"

namespace kindling::cluster {

inline constexpr char kPartitionsPrefix[] = "/kindling/assignment/partitions/";

struct PartitionMember {
  std::string node;
  std::string url;
  int64_t create_revision = 0;
};

class PartitionElections {
 public:
  struct Options {
    int partitions = 16;
    std::string node;  // this node's id; "" = observe only
    std::string url;   // where this node serves assignment RPC
    std::function<bool()> lease_alive = [] { return true; };
    std::chrono::milliseconds rebalance_every{1000};
  };
  // Called on the io thread when this node starts or stops leading a partition.
  using LeadershipHandler = std::function<void(int partition, bool leading)>;

  PartitionElections(boost::asio::io_context& io, EtcdClient& etcd, Options options);
  void OnLeadership(LeadershipHandler handler) { on_leadership_ = std::move(handler); }

  // Campaigns in every partition on `lease` (candidates), reads every partition's members, then
  // follows changes until Stop.
  boost::asio::awaitable<Status> Start(int64_t lease);
  // Campaigns again with a new lease (after the old one expired and the node registered again).
  boost::asio::awaitable<void> Recampaign(int64_t lease);
  void Stop();

  int partitions() const { return options_.partitions; }
  // Members of a partition in queue order: leader first.
  std::vector<PartitionMember> Members(int partition) const;
  std::optional<PartitionMember> Leader(int partition) const;
  bool IsLeader(int partition) const;
  // The create_revision of this node's key in a partition (0: not a candidate there): what its
  // journal writes are fenced on.
  int64_t MyRevision(int partition) const;
  // Revision of the last change seen (for tests and metrics).
  int64_t revision() const { return revision_; }
  uint64_t leader_changes() const { return leader_changes_; }

  static std::string Key(int partition, const std::string& node);

 private:
  void Apply(const EtcdEvent& e);
  void Notify();
  boost::asio::awaitable<Status> Campaign(int partition);
  boost::asio::awaitable<void> WatchLoop(int64_t from);
  boost::asio::awaitable<void> RebalanceLoop();

  boost::asio::io_context& io_;
  EtcdClient& etcd_;
  Options options_;
  int64_t lease_ = 0;
  // partition -> node -> member
  std::vector<std::map<std::string, PartitionMember>> members_;
  std::vector<bool> leading_;  // as last told to the handler
  std::vector<std::string> leaders_;  // as last seen, for counting changes
  LeadershipHandler on_leadership_;
  std::shared_ptr<WatchCancel> cancel_ = std::make_shared<WatchCancel>();
  std::shared_ptr<boost::asio::steady_timer> timer_;
  bool stopped_ = false;
  int64_t revision_ = 0;
  uint64_t leader_changes_ = 0;
};

// The partition of a function: a stable hash of its name, modulo the partition count.
int PartitionOf(const std::string& function, int partitions);

}  // namespace kindling::cluster
