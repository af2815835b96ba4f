// PartitionElections against a real etcd: one leader per partition, agreed on by every candidate
// and by observers; leadership spreads over the candidates; when a leader's lease expires its
// partitions move to the next candidates within the TTL plus a watch event.
#include "cluster/election.h"

#include <gtest/gtest.h>

#include "common/run_until_done.h"

#include <set>

#include "cluster/etcd_test_cluster.h"
#include "cluster/fleet.h"

namespace kindling::cluster {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

class ElectionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { etcd_ = new EtcdTestCluster(1); }
  static void TearDownTestSuite() { delete etcd_; }
  void SetUp() override {
    ASSERT_TRUE(etcd_->ok());
    client_ = std::make_unique<EtcdClient>(io_, http_, etcd_->endpoints());
    Run(client_->DeletePrefix(kPartitionsPrefix));
  }
  template <typename T>
  T Run(asio::awaitable<T> aw) {
    return RunUntilDone(io_, std::move(aw));
  }
  void RunFor(std::chrono::milliseconds d) { kindling::RunFor(io_, d); }
  // A candidate with its own lease, kept alive by a Registration.
  struct Candidate {
    std::unique_ptr<Registration> registration;
    std::unique_ptr<PartitionElections> elections;
  };
  Candidate Make(const std::string& node, int partitions, PartitionElections::LeadershipHandler handler = nullptr) {
    Candidate c;
    c.registration = std::make_unique<Registration>(io_, *client_, NodeInfo{node, {"assignment"}, "http://" + node});
    EXPECT_TRUE(Run(c.registration->Start(5s)).ok());
    PartitionElections::Options o;
    o.partitions = partitions;
    o.node = node;
    o.url = "http://" + node;
    o.rebalance_every = 100ms;
    auto* reg = c.registration.get();
    o.lease_alive = [reg] { return reg->LeaseAlive(); };
    c.elections = std::make_unique<PartitionElections>(io_, *client_, o);
    if (handler) c.elections->OnLeadership(std::move(handler));
    EXPECT_TRUE(Run(c.elections->Start(c.registration->lease())).ok());
    return c;
  }

  static EtcdTestCluster* etcd_;
  asio::io_context io_;
  HttpClient http_{io_};
  std::unique_ptr<EtcdClient> client_;
};
EtcdTestCluster* ElectionTest::etcd_ = nullptr;

TEST(PartitionOf, IsStableAndInRange) {
  EXPECT_EQ(PartitionOf("my-function", 16), PartitionOf("my-function", 16));
  std::set<int> seen;
  for (int i = 0; i < 200; ++i) {
    int p = PartitionOf("fn-" + std::to_string(i), 16);
    ASSERT_GE(p, 0);
    ASSERT_LT(p, 16);
    seen.insert(p);
  }
  EXPECT_EQ(seen.size(), 16u);  // 200 names reach every partition
  EXPECT_EQ(PartitionOf("x", 1), 0);
}

TEST_F(ElectionTest, EveryPartitionHasOneLeaderAndLeadershipSpreads) {
  const int P = 6;
  std::map<std::string, std::set<int>> told;  // what each node's handler heard
  std::vector<Candidate> nodes;
  for (const char* id : {"a", "b", "c"}) {
    std::string node = id;
    nodes.push_back(Make(id, P, [&told, node](int p, bool leading) {
      if (leading) told[node].insert(p);
      else told[node].erase(p);
    }));
  }
  PartitionElections::Options observe;
  observe.partitions = P;
  PartitionElections observer(io_, *client_, observe);
  ASSERT_TRUE(Run(observer.Start(0)).ok());
  RunFor(4000ms);  // rebalancing rounds
  std::map<std::string, int> leads;
  for (int p = 0; p < P; ++p) {
    auto leader = observer.Leader(p);
    ASSERT_TRUE(leader) << p;
    EXPECT_EQ(observer.Members(p).size(), 3u);
    leads[leader->node]++;
    int claiming = 0;
    for (auto& c : nodes) {
      EXPECT_EQ(c.elections->Leader(p)->node, leader->node) << p;
      claiming += c.elections->IsLeader(p);
    }
    EXPECT_EQ(claiming, 1) << p;
    EXPECT_TRUE(told[leader->node].count(p)) << p;
  }
  EXPECT_EQ(leads, (std::map<std::string, int>{{"a", 2}, {"b", 2}, {"c", 2}}));
  for (auto& c : nodes) {
    c.elections->Stop();
    Run(c.registration->Leave());
  }
  observer.Stop();
  RunFor(100ms);
}

TEST_F(ElectionTest, PartitionsOfANodeWhoseLeaseExpiresMoveWithinTheTtl) {
  const int P = 4;
  auto a = Make("a", P);
  auto b = Make("b", P);
  RunFor(1500ms);
  std::vector<int> led_by_a;
  for (int p = 0; p < P; ++p)
    if (a.elections->IsLeader(p)) led_by_a.push_back(p);
  ASSERT_FALSE(led_by_a.empty());
  // "a" dies: its keepalives stop (no revoke), so its keys go when the 2 s lease expires.
  a.elections->Stop();
  auto died = std::chrono::steady_clock::now();
  a.registration->Stop();
  std::optional<std::chrono::milliseconds> took;
  while (std::chrono::steady_clock::now() - died < 5s) {
    io_.run_one_for(10ms);
    bool all = true;
    for (int p : led_by_a) all = all && b.elections->IsLeader(p);
    if (all) {
      took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - died);
      break;
    }
  }
  ASSERT_TRUE(took) << "b did not take over a's partitions";
  EXPECT_LE(took->count(), 3200) << "failover took " << took->count() << " ms";
  EXPECT_GE(took->count(), 500);  // not before a's lease could have expired
  RecordProperty("failover_ms", static_cast<int>(took->count()));
  b.elections->Stop();
  Run(b.registration->Leave());
  RunFor(100ms);
}

}  // namespace
}  // namespace kindling::cluster
