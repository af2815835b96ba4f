// Partitioned assignment against a real etcd: two assignment nodes serving RPC on loopback, a
// frontend's RemoteAssigner, fake workers. Leases come from the partition's leader and are journaled;
// when the leader dies a follower takes over with the journal (the same sandboxes, warm, their
// lease sequences continued), destroys what no journal lists, and the frontend follows it.
#include "cluster/assignment_node.h"

#include <gtest/gtest.h>

#include "common/run_until_done.h"

#include <deque>

#include "cluster/etcd_test_cluster.h"
#include "cluster/fleet.h"
#include "worker/fake_worker.h"

namespace kindling::cluster {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
const std::string kKey = "a-cluster-key-of-at-least-32-characters";

class AssignmentNodeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { etcd_ = new EtcdTestCluster(1); }
  static void TearDownTestSuite() { delete etcd_; }

  struct Node {
    std::unique_ptr<Registration> registration;
    std::unique_ptr<PartitionElections> elections;
    std::unique_ptr<JournalReplica> replica;
    std::unique_ptr<AssignmentNode> node;
    std::unique_ptr<HttpRouter> router;
    std::unique_ptr<HttpServer> server;
  };

  void SetUp() override {
    ASSERT_TRUE(etcd_->ok());
    client_ = std::make_unique<EtcdClient>(io_, http_, etcd_->endpoints());
    Run(client_->DeletePrefix("/kindling/"));
    workers_.Add(&worker_);
  }
  void TearDown() override {
    for (auto& n : nodes_) Stop(n);
    if (observer_) observer_->Stop();
    RunFor(100ms);
  }
  template <typename T>
  T Run(asio::awaitable<T> aw) {
    return RunUntilDone(io_, std::move(aw));
  }
  void RunFor(std::chrono::milliseconds d) { kindling::RunFor(io_, d); }
  Node& Start(const std::string& id) {
    nodes_.emplace_back();
    Node& n = nodes_.back();
    n.router = std::make_unique<HttpRouter>(not_found_);
    n.server = std::make_unique<HttpServer>(io_, *n.router);
    auto port = n.server->Listen("127.0.0.1", 0);
    EXPECT_TRUE(port.ok());
    n.registration = std::make_unique<Registration>(io_, *client_, NodeInfo{id, {"assignment"}, ""});
    EXPECT_TRUE(Run(n.registration->Start(5s)).ok());
    n.replica = std::make_unique<JournalReplica>(io_, *client_, kPartitions);
    EXPECT_TRUE(Run(n.replica->Start()).ok());
    PartitionElections::Options o;
    o.partitions = kPartitions;
    o.node = id;
    o.url = "http://127.0.0.1:" + std::to_string(*port);
    auto* reg = n.registration.get();
    o.lease_alive = [reg] { return reg->LeaseAlive(); };
    o.rebalance_every = 200ms;
    n.elections = std::make_unique<PartitionElections>(io_, *client_, o);
    n.node = std::make_unique<AssignmentNode>(io_, workers_, *client_, *n.elections, *n.replica, id, kKey,
                                              AssignmentOptions{});
    n.router->Route("/kindling/v1/assignment/", *n.node);
    auto* node = n.node.get();
    n.elections->OnLeadership([node](int p, bool leading) { node->OnLeadership(p, leading); });
    EXPECT_TRUE(Run(n.elections->Start(n.registration->lease())).ok());
    return n;
  }
  // A node dies: no more keepalives (its lease expires), no more answers.
  void Kill(Node& n) {
    n.elections->Stop();
    n.replica->Stop();
    n.registration->Stop();
    n.server->Stop();
    n.node->Shutdown();
  }
  void Stop(Node& n) {
    if (n.registration) Kill(n);
  }
  FunctionConfig Fn(const std::string& name) {
    FunctionConfig fn;
    fn.name = name;
    fn.runtime = "provided.al2023";
    fn.revision_id = "r1";
    return fn;
  }
  // A function name in partition p.
  std::string NameIn(int p) {
    for (int i = 0;; ++i)
      if (PartitionOf("fn-" + std::to_string(i), kPartitions) == p) return "fn-" + std::to_string(i);
  }
  // Waits until every partition's leader took it over.
  bool AllLed(std::chrono::milliseconds within) {
    auto until = std::chrono::steady_clock::now() + within;
    do {
      int led = 0;
      for (int p = 0; p < kPartitions; ++p)
        for (auto& n : nodes_) led += n.node->Leads(p);
      if (led == kPartitions) return true;
      io_.run_one_for(10ms);
    } while (std::chrono::steady_clock::now() < until);
    return false;
  }
  // A frontend's view of the elections (observer_).
  bool Observe() {
    PartitionElections::Options o;
    o.partitions = kPartitions;
    observer_ = std::make_unique<PartitionElections>(io_, *client_, o);
    return Run(observer_->Start(0)).ok();
  }
  // Waits until every partition is led and leadership has spread (one partition per node).
  bool Settled(std::chrono::milliseconds within) {
    auto until = std::chrono::steady_clock::now() + within;
    while (std::chrono::steady_clock::now() < until) {
      std::map<Node*, int> leads;
      for (int p = 0; p < kPartitions; ++p)
        if (Node* l = LeaderOf(p)) leads[l]++;
      if (leads.size() == nodes_.size() && AllLed(0ms)) {
        RunFor(300ms);  // no move in flight
        return true;
      }
      io_.run_one_for(10ms);
    }
    return false;
  }
  Node* LeaderOf(int p) {
    for (auto& n : nodes_)
      if (n.node->Leads(p)) return &n;
    return nullptr;
  }

  static constexpr int kPartitions = 2;
  static EtcdTestCluster* etcd_;
  asio::io_context io_;
  HttpClient http_{io_};
  std::unique_ptr<EtcdClient> client_;
  FakeWorker worker_{"w1", 8192};
  WorkerDirectory workers_;
  NotFoundHandler not_found_;
  std::deque<Node> nodes_;  // stable addresses
  std::unique_ptr<PartitionElections> observer_;
};
EtcdTestCluster* AssignmentNodeTest::etcd_ = nullptr;

TEST_F(AssignmentNodeTest, LeasesComeFromTheLeaderAndAreJournaled) {
  Start("a");
  Start("b");
  ASSERT_TRUE(Settled(8s));
  ASSERT_TRUE(Observe());
  RemoteAssigner assigner(io_, http_, *observer_, kKey);
  auto fn = Fn(NameIn(0));
  auto lease = Run(assigner.Acquire(fn));
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  EXPECT_TRUE(lease->cold);
  auto journal = Run(client_->GetPrefix(kJournalPrefix));
  ASSERT_EQ(journal->kvs.size(), 1u);
  EXPECT_EQ(journal->kvs[0].key, JournalKey(0, "w1", lease->sandbox));
  worker_.live[lease->sandbox].last_sequence = lease->sequence;  // its invocation ran
  assigner.Release(*lease, true);
  RunFor(200ms);
  auto again = Run(assigner.Acquire(fn));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->sandbox, lease->sandbox);
  EXPECT_FALSE(again->cold);
  EXPECT_GT(again->sequence, lease->sequence);
  // A follower refuses: it does not lead.
  auto members = observer_->Members(0);
  ASSERT_EQ(members.size(), 2u);
  HttpClientRequest req;
  req.method = "POST";
  req.target = "/kindling/v1/assignment/acquire";
  req.body = "{\"partition\": 0, \"function\": {\"FunctionName\": \"x\"}}";
  req.headers.emplace_back("x-kindling-cluster-key", kKey);
  auto r = Run(http_.Call(members[1].url, req, 2s));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 409) << r->body;
  // Nor does any node without the cluster key, leader or not.
  req.headers.back().second = "wrong-wrong-wrong-wrong-wrong-wrong";
  r = Run(http_.Call(members[0].url, req, 2s));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->status, 401);
  // Garbage gets a 400.
  req.headers.back().second = kKey;
  for (std::string body : {"{", "{\"partition\": 99}", "{\"partition\": \"0\"}", "{\"partition\": 0, \"worker\": 1}"}) {
    req.body = body;
    r = Run(http_.Call(members[0].url, req, 2s));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->status, 400) << body << " " << r->body;
  }
}

TEST_F(AssignmentNodeTest, AFollowerTakesOverWithTheJournalWhenTheLeaderDies) {
  Start("a");
  Start("b");
  ASSERT_TRUE(Settled(8s));
  ASSERT_TRUE(Observe());
  RemoteAssigner assigner(io_, http_, *observer_, kKey);
  // Partition 0's function: one sandbox idle, one running an invocation when the leader dies.
  std::string name = NameIn(0);
  Node* leader = LeaderOf(0);
  ASSERT_NE(leader, nullptr);
  auto idle = Run(assigner.Acquire(Fn(name)));
  auto busy = Run(assigner.Acquire(Fn(name)));
  ASSERT_TRUE(idle.ok() && busy.ok());
  worker_.live[idle->sandbox].last_sequence = idle->sequence;  // its invocation ran on the worker
  assigner.Release(*idle, true);
  RunFor(200ms);
  // The worker saw the busy one's lease (its invocation runs) ...
  worker_.live[busy->sandbox].last_sequence = busy->sequence;
  worker_.live[busy->sandbox].busy = true;
  // ... and holds a sandbox of the partition that no journal lists (a leader died before journaling).
  worker_.live["w1-orphan"] = {128, 77, 0, name, false};
  auto died = std::chrono::steady_clock::now();
  Kill(*leader);
  // The frontend's next acquire waits for the election and gets the same idle sandbox, warm.
  auto after = Run(assigner.Acquire(Fn(name)));
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - died);
  ASSERT_TRUE(after.ok()) << after.status().message();
  EXPECT_EQ(after->sandbox, idle->sandbox);
  EXPECT_FALSE(after->cold);
  EXPECT_GT(after->sequence, idle->sequence);
  EXPECT_LT(took.count(), 4000) << "failover took " << took.count() << " ms";
  RecordProperty("failover_ms", static_cast<int>(took.count()));
  Node* b = LeaderOf(0);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(b, leader);
  EXPECT_EQ(b->node->counters().adopted, 2u);
  EXPECT_EQ(b->node->counters().unjournaled_destroyed, 1u);
  EXPECT_FALSE(worker_.live.count("w1-orphan"));
  // The invocation that was running ends and its lease comes back to the new leader.
  worker_.live[busy->sandbox].busy = false;
  assigner.Release(*busy, true);
  RunFor(300ms);
  auto second = Run(assigner.Acquire(Fn(name)));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->sandbox, busy->sandbox);
  EXPECT_EQ(worker_.created, 2);  // nothing new was started
}

}  // namespace
}  // namespace kindling::cluster
