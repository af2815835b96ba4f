// The fleet in etcd: which nodes and workers are alive, and what each worker has room for.
//
// Keys (values are JSON):
//   /kindling/fleet/nodes/<id>    {"id", "roles": [...], "url"}                       on the node's lease
//   /kindling/fleet/workers/<id>  {"id", "url", "sandboxes", "memoryReservedMb",
//                            "memoryCapacityMb", "load", "state"}              on the worker's lease
// A node holds one lease (TTL kLeaseTtl) and keeps it alive every kKeepAliveEvery; a worker
// rewrites its key with fresh figures every kHeartbeatEvery. A node whose lease expires (it died,
// or lost etcd for longer than the TTL) disappears with its keys: it is dead. A node that finds its
// lease expired takes a new one and registers again (its old sandboxes are then unknown to the
// assignment service and its worker destroys them: see WorkerServer).
//
// Thread safety: the io_context thread of the EtcdClient.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cluster/etcd_client.h"
#include "worker/worker_client.h"

namespace kindling::cluster {

inline constexpr char kFleetPrefix[] = "/kindling/fleet/";
inline constexpr char kNodesPrefix[] = "/kindling/fleet/nodes/";
inline constexpr char kWorkersPrefix[] = "/kindling/fleet/workers/";
inline constexpr std::chrono::seconds kLeaseTtl{2};
inline constexpr std::chrono::milliseconds kKeepAliveEvery{500};
inline constexpr std::chrono::milliseconds kHeartbeatEvery{1000};
// How long after a keepalive was sent the lease is surely still alive: the TTL less a margin for
// clock rate differences and the time etcd took to answer.
inline constexpr std::chrono::milliseconds kLeaseSafe{1500};

struct NodeInfo {
  std::string id;
  std::vector<std::string> roles;
  std::string url;
};

struct WorkerInfo {
  std::string id;
  std::string url;
  std::string state = "active";  // active | draining
  uint64_t sandboxes = 0;
  uint64_t memory_reserved_mb = 0;
  uint64_t memory_capacity_mb = 0;
  double load = 0;  // 1-minute load average of the host
};

std::string EncodeNode(const NodeInfo& node);
bool DecodeNode(const std::string& text, NodeInfo* node);
std::string EncodeWorker(const WorkerInfo& worker);
bool DecodeWorker(const std::string& text, WorkerInfo* worker);

// Keeps this node registered (and, for a worker, its figures fresh) for as long as it runs.
class Registration {
 public:
  // worker_stats: set on nodes with the worker role; asked for each heartbeat.
  Registration(boost::asio::io_context& io, EtcdClient& etcd, NodeInfo node,
               std::function<WorkerInfo()> worker_stats = nullptr);
  // Registers (retrying until etcd answers or `within` passes) and starts the keepalive loop.
  boost::asio::awaitable<Status> Start(std::chrono::milliseconds within);
  // Revokes the lease: the node leaves the fleet at once (clean shutdown).
  boost::asio::awaitable<void> Leave();
  // Stops keeping the lease alive without revoking it: the fleet sees the node die when it expires.
  void Stop();
  int64_t lease() const { return lease_; }
  // True while the lease is surely alive: the last keepalive etcd answered was sent less than
  // kLeaseSafe ago. A node acts on what it holds through the lease (partition leadership) only then.
  bool LeaseAlive() const;
  // Called with the new lease when the node had to register again (its old lease expired).
  void OnNewLease(std::function<void(int64_t lease)> handler) { on_new_lease_ = std::move(handler); }

 private:
  boost::asio::awaitable<Status> Register();
  boost::asio::awaitable<void> Loop();

  boost::asio::io_context& io_;
  EtcdClient& etcd_;
  NodeInfo node_;
  std::function<WorkerInfo()> worker_stats_;
  int64_t lease_ = 0;
  std::chrono::steady_clock::time_point last_kept_{};  // when the last answered keepalive was sent
  std::function<void(int64_t)> on_new_lease_;
  bool stopped_ = false;
  std::shared_ptr<boost::asio::steady_timer> timer_;
};

// Follows the registry: the live nodes and workers, kept current through a watch. Callbacks run
// on the io thread as workers join (or change) and leave.
class FleetView {
 public:
  struct Callbacks {
    std::function<void(const WorkerInfo&)> worker_up;    // new, or its figures changed
    std::function<void(const std::string& id)> worker_down;
  };
  FleetView(boost::asio::io_context& io, EtcdClient& etcd, Callbacks callbacks);
  // Reads the registry, then watches it until Stop.
  boost::asio::awaitable<Status> Start();
  void Stop();
  const std::map<std::string, NodeInfo>& nodes() const { return nodes_; }
  const std::map<std::string, WorkerInfo>& workers() const { return workers_; }

 private:
  void Apply(const EtcdEvent& event);
  boost::asio::awaitable<void> WatchLoop(int64_t from);

  boost::asio::io_context& io_;
  EtcdClient& etcd_;
  Callbacks callbacks_;
  std::map<std::string, NodeInfo> nodes_;
  std::map<std::string, WorkerInfo> workers_;
  std::shared_ptr<WatchCancel> cancel_ = std::make_shared<WatchCancel>();
};

}  // namespace kindling::cluster
