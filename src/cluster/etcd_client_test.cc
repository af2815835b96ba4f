// EtcdClient against real etcd members: key-value, transactions, leases and their expiry, watches
// (from a revision, across a member's death), and failover between members.
#include "cluster/etcd_client.h"

#include <gtest/gtest.h>

#include "common/run_until_done.h"

#include "cluster/etcd_test_cluster.h"

namespace kindling::cluster {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

class EtcdClientTest : public ::testing::Test {
 protected:
  template <typename T>
  T Run(asio::awaitable<T> aw) {
    return RunUntilDone(io_, std::move(aw));
  }
  asio::io_context io_;
  HttpClient http_{io_};
};

class OneMember : public EtcdClientTest {
 protected:
  static void SetUpTestSuite() { etcd_ = new EtcdTestCluster(1); }
  static void TearDownTestSuite() { delete etcd_; }
  void SetUp() override {
    ASSERT_TRUE(etcd_->ok()) << "etcd did not start";
    client_ = std::make_unique<EtcdClient>(io_, http_, etcd_->endpoints());
    prefix_ = "/t/" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) + "/";
  }
  static EtcdTestCluster* etcd_;
  std::unique_ptr<EtcdClient> client_;
  std::string prefix_;
};
EtcdTestCluster* OneMember::etcd_ = nullptr;

TEST_F(OneMember, PutGetDeleteWithBinaryKeysAndValues) {
  std::string value("a\0b\xff\n", 5);
  auto rev = Run(client_->Put(prefix_ + "k\x01", value));
  ASSERT_TRUE(rev.ok()) << rev.status().message();
  auto got = Run(client_->Get(prefix_ + "k\x01"));
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].value, value);
  EXPECT_EQ(got->kvs[0].mod_revision, *rev);
  EXPECT_GE(got->revision, *rev);
  EXPECT_EQ(*Run(client_->Delete(prefix_ + "k\x01")), 1);
  EXPECT_TRUE(Run(client_->Get(prefix_ + "k\x01"))->kvs.empty());
  EXPECT_EQ(*Run(client_->Delete(prefix_ + "absent")), 0);
}

TEST_F(OneMember, PrefixRangesAreOrderedAndLimited) {
  for (const char* k : {"b", "a", "c"}) ASSERT_TRUE(Run(client_->Put(prefix_ + k, k)).ok());
  ASSERT_TRUE(Run(client_->Put(prefix_.substr(0, prefix_.size() - 1) + "0", "outside")).ok());
  auto all = Run(client_->GetPrefix(prefix_));
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->kvs.size(), 3u);
  EXPECT_EQ(all->kvs[0].value, "a");
  EXPECT_EQ(all->kvs[2].value, "c");
  auto two = Run(client_->GetPrefix(prefix_, 2));
  EXPECT_EQ(two->kvs.size(), 2u);
  EXPECT_TRUE(two->more);
  EXPECT_EQ(*Run(client_->DeletePrefix(prefix_)), 3);
}

TEST_F(OneMember, ConditionalWrites) {
  std::string k = prefix_ + "cas";
  EXPECT_TRUE(*Run(client_->PutIfAbsent(k, "1")));
  EXPECT_FALSE(*Run(client_->PutIfAbsent(k, "2")));
  auto got = Run(client_->Get(k));
  EXPECT_EQ(got->kvs[0].value, "1");
  int64_t rev = got->kvs[0].mod_revision;
  EXPECT_TRUE(*Run(client_->PutIfUnchanged(k, "3", rev)));
  EXPECT_FALSE(*Run(client_->PutIfUnchanged(k, "4", rev)));  // moved on
  EXPECT_FALSE(*Run(client_->DeleteIfUnchanged(k, rev)));
  EXPECT_TRUE(*Run(client_->DeleteIfUnchanged(k, Run(client_->Get(k))->kvs[0].mod_revision)));
}

TEST_F(OneMember, GuardedWritesHappenOnlyWhileTheGuardKeyIsTheSame) {
  std::string guard = prefix_ + "leader", k = prefix_ + "journal";
  ASSERT_TRUE(Run(client_->Put(guard, "me")).ok());
  int64_t rev = Run(client_->Get(guard))->kvs.at(0).create_revision;
  EXPECT_TRUE(*Run(client_->PutGuarded(k, "1", guard, rev)));
  ASSERT_TRUE(Run(client_->Put(guard, "still me")).ok());  // a rewrite keeps create_revision
  EXPECT_TRUE(*Run(client_->PutGuarded(k, "2", guard, rev)));
  ASSERT_TRUE(Run(client_->Delete(guard)).ok());
  ASSERT_TRUE(Run(client_->Put(guard, "someone else")).ok());  // recreated: a new leader
  EXPECT_FALSE(*Run(client_->PutGuarded(k, "3", guard, rev)));
  EXPECT_FALSE(*Run(client_->DeleteGuarded(k, guard, rev)));
  EXPECT_EQ(Run(client_->Get(k))->kvs.at(0).value, "2");
  int64_t now = Run(client_->Get(guard))->kvs.at(0).create_revision;
  EXPECT_TRUE(*Run(client_->DeleteGuarded(k, guard, now)));
  EXPECT_TRUE(Run(client_->Get(k))->kvs.empty());
}

TEST_F(OneMember, KeysOnALeaseGoWhenItExpiresOrIsRevoked) {
  auto lease = Run(client_->LeaseGrant(1s));
  ASSERT_TRUE(lease.ok()) << lease.status().message();
  ASSERT_TRUE(Run(client_->Put(prefix_ + "ephemeral", "x", *lease)).ok());
  EXPECT_EQ(Run(client_->Get(prefix_ + "ephemeral"))->kvs[0].lease, *lease);
  auto ttl = Run(client_->LeaseKeepAlive(*lease));
  ASSERT_TRUE(ttl.ok()) << ttl.status().message();
  EXPECT_EQ(*ttl, 1);
  std::this_thread::sleep_for(2500ms);
  EXPECT_TRUE(Run(client_->Get(prefix_ + "ephemeral"))->kvs.empty());
  EXPECT_TRUE(Run(client_->LeaseKeepAlive(*lease)).status().IsNotFound());

  auto second = Run(client_->LeaseGrant(30s));
  ASSERT_TRUE(Run(client_->Put(prefix_ + "revoked", "x", *second)).ok());
  EXPECT_TRUE(Run(client_->LeaseRevoke(*second)).ok());
  EXPECT_TRUE(Run(client_->Get(prefix_ + "revoked"))->kvs.empty());
  EXPECT_FALSE(Run(client_->Put(prefix_ + "on-dead-lease", "x", *second)).ok());
}

TEST_F(OneMember, WatchDeliversHistoryFromARevisionThenLiveEventsUntilCancelled) {
  auto first = Run(client_->Put(prefix_ + "1", "a"));
  ASSERT_TRUE(Run(client_->Put(prefix_ + "2", "b")).ok());
  std::vector<std::string> seen;
  int64_t at = 0;
  bool created = false;
  auto cancel = std::make_shared<WatchCancel>();
  std::optional<Status> ended;
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        ended = co_await client_->Watch(prefix_, *first, [&](const std::vector<EtcdEvent>& events, int64_t rev) {
          if (events.empty()) created = true;
          for (const auto& e : events)
            seen.push_back((e.type == EtcdEvent::Type::kPut ? "put " : "del ") + e.kv.key.substr(prefix_.size()) +
                           (e.type == EtcdEvent::Type::kPut ? "=" + e.kv.value : ""));
          at = rev;
        }, cancel);
      },
      asio::detached);
  auto until = [&](size_t n) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (seen.size() < n && std::chrono::steady_clock::now() < deadline) io_.run_one_for(50ms);
  };
  until(2);
  EXPECT_TRUE(created);
  ASSERT_TRUE(Run(client_->Put(prefix_ + "3", "c")).ok());
  ASSERT_TRUE(Run(client_->Delete(prefix_ + "1")).ok());
  ASSERT_TRUE(Run(client_->Put("/elsewhere", "x")).ok());
  until(4);
  EXPECT_EQ(seen, (std::vector<std::string>{"put 1=a", "put 2=b", "put 3=c", "del 1"}));
  EXPECT_GT(at, *first);
  cancel->Cancel();
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!ended && std::chrono::steady_clock::now() < deadline) io_.run_one_for(50ms);
  ASSERT_TRUE(ended);
  EXPECT_TRUE(ended->ok());
}

TEST_F(OneMember, NothingListeningIsUnavailable) {
  EtcdClient nowhere(io_, http_, {"http://127.0.0.1:1"}, 500ms);
  auto r = Run(nowhere.Get("/x"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().message();
}

TEST_F(EtcdClientTest, ThreeMembersServeWithOneDownAndWatchesFollowTheSurvivors) {
  EtcdTestCluster etcd(3);
  ASSERT_TRUE(etcd.ok());
  EtcdClient client(io_, http_, etcd.endpoints());
  ASSERT_TRUE(Run(client.Put("/f/a", "1")).ok());
  std::vector<std::string> seen;
  auto cancel = std::make_shared<WatchCancel>();
  asio::co_spawn(
      io_,
      [&]() -> asio::awaitable<void> {
        co_await client.Watch("/f/", 1, [&](const std::vector<EtcdEvent>& events, int64_t) {
          for (const auto& e : events) seen.push_back(e.kv.value);
        }, cancel);
      },
      asio::detached);
  auto until = [&](size_t n) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (seen.size() < n && std::chrono::steady_clock::now() < deadline) io_.run_one_for(50ms);
  };
  until(1);
  etcd.Kill(0);  // the member both the client and the watch were talking to
  auto put = Run(client.Put("/f/b", "2"));
  ASSERT_TRUE(put.ok()) << put.status().message();
  EXPECT_EQ(Run(client.Get("/f/b"))->kvs.at(0).value, "2");
  until(2);
  EXPECT_EQ(seen, (std::vector<std::string>{"1", "2"}));  // nothing lost, nothing twice
  cancel->Cancel();
  for (int i = 0; i < 20; ++i) io_.run_one_for(10ms);
}

}  // namespace
}  // namespace kindling::cluster
