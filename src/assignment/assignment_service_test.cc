// AssignmentService against fake workers and a fake clock: warm reuse, leases and their sequence,
// idle reaping, the scaling rate, eviction, placement across workers, provisioned concurrency,
// sandboxes that end on their own, retirement. No root, no sandboxes.
#include "assignment/assignment_service.h"

#include <gtest/gtest.h>

#include <set>

#include "worker/fake_worker.h"

namespace kindling {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

class AssignmentTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(); }
  void Make(AssignmentOptions opts = {}) {
    opts.now = [this] { return now_; };
    assignment_ = std::make_unique<AssignmentService>(io_, workers_, opts);
  }
  FunctionConfig Fn(const std::string& name, int memory_mb = 128, std::string version = "$LATEST") {
    FunctionConfig fn;
    fn.name = name;
    fn.memory_mb = memory_mb;
    fn.version = std::move(version);
    fn.revision_id = "r1";
    return fn;
  }
  Result<SandboxLease> Acquire(const FunctionConfig& fn) {
    std::optional<Result<SandboxLease>> out;
    asio::co_spawn(io_, [&]() -> asio::awaitable<void> { out.emplace(co_await assignment_->Acquire(fn)); },
                   asio::detached);
    io_.restart();
    io_.run();
    return std::move(*out);
  }
  void RunPending() {
    io_.restart();
    io_.run();
  }

  asio::io_context io_;
  std::chrono::steady_clock::time_point now_ = std::chrono::steady_clock::time_point{} + 1h;
  WorkerDirectory workers_;
  std::unique_ptr<AssignmentService> assignment_;
};

TEST_F(AssignmentTest, ReleasedSandboxIsLeasedAgainWarmWithAHigherSequence) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto fn = Fn("f");
  auto first = Acquire(fn);
  ASSERT_TRUE(first.ok()) << first.status().message();
  EXPECT_TRUE(first->cold);
  EXPECT_EQ(first->worker, "w1");
  EXPECT_EQ(first->token, 1001u);
  assignment_->Release(*first, true);
  auto second = Acquire(fn);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->cold);
  EXPECT_EQ(second->sandbox, first->sandbox);
  EXPECT_EQ(second->token, first->token);
  EXPECT_GT(second->sequence, first->sequence);
  EXPECT_EQ(w.created, 1);
  EXPECT_EQ(w.init_types, std::vector<std::string>{"on-demand"});
}

TEST_F(AssignmentTest, ConcurrentLeasesGetSeparateSandboxes) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto fn = Fn("f");
  auto a = Acquire(fn), b = Acquire(fn);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->sandbox, b->sandbox);
  EXPECT_EQ(assignment_->CountsFor("f").leased, 2);
}

TEST_F(AssignmentTest, StaleOrUnknownReleaseIsIgnored) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto fn = Fn("f");
  auto first = Acquire(fn);
  assignment_->Release(*first, true);
  auto second = Acquire(fn);
  assignment_->Release(*first, false);  // a replay of the old lease must not end the new one
  EXPECT_EQ(assignment_->CountsFor("f").leased, 1);
  EXPECT_TRUE(w.destroyed.empty());
  SandboxLease forged = *second;
  forged.sandbox = "nope";
  assignment_->Release(forged, true);
  EXPECT_EQ(assignment_->CountsFor("f").leased, 1);
  assignment_->Release(*second, true);
  EXPECT_EQ(assignment_->CountsFor("f").idle, 1);
}

TEST_F(AssignmentTest, DeadSandboxIsDestroyedOnRelease) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto lease = Acquire(Fn("f"));
  assignment_->Release(*lease, false);
  EXPECT_EQ(w.destroyed, std::vector<std::string>{lease->sandbox});
  EXPECT_TRUE(Acquire(Fn("f"))->cold);
}

TEST_F(AssignmentTest, IdleSandboxesAreReapedAfterTheIdleTimeout) {
  AssignmentOptions opts;
  opts.idle_timeout = 60s;
  Make(opts);
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto lease = Acquire(Fn("f"));
  assignment_->Release(*lease, true);
  now_ += 59s;
  assignment_->Tick();
  EXPECT_TRUE(w.destroyed.empty());
  now_ += 2s;
  assignment_->Tick();
  EXPECT_EQ(w.destroyed, std::vector<std::string>{lease->sandbox});
  EXPECT_EQ(assignment_->CountsFor("f").idle, 0);
}

TEST_F(AssignmentTest, ScalingRateThrottlesColdStartsAndRefillsOverTime) {
  AssignmentOptions opts;
  opts.scaling_limit = 2;
  opts.scaling_window = 10s;
  Make(opts);
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto fn = Fn("f");
  EXPECT_TRUE(Acquire(fn).ok());
  auto second = Acquire(fn);
  EXPECT_TRUE(second.ok());
  auto third = Acquire(fn);
  ASSERT_FALSE(third.ok());
  EXPECT_TRUE(third.status().IsThrottled()) << third.status().message();
  // Warm leases cost no token.
  assignment_->Release(*second, true);
  EXPECT_TRUE(Acquire(fn).ok());
  now_ += 5s;  // half a window refills one token
  EXPECT_TRUE(Acquire(fn).ok());
  EXPECT_TRUE(Acquire(fn).status().IsThrottled());
  EXPECT_TRUE(Acquire(Fn("other")).ok());  // per function
}

TEST_F(AssignmentTest, IdleSandboxesOfOtherFunctionsAreEvictedLeastRecentlyUsedFirst) {
  FakeWorker w("w1", 256);
  workers_.Add(&w);
  auto a1 = Acquire(Fn("a")), a2 = Acquire(Fn("a"));
  ASSERT_TRUE(a1.ok() && a2.ok());
  assignment_->Release(*a1, true);
  now_ += 1s;
  assignment_->Release(*a2, true);
  auto b = Acquire(Fn("b"));
  ASSERT_TRUE(b.ok()) << b.status().message();
  EXPECT_EQ(w.destroyed, std::vector<std::string>{a1->sandbox});
  EXPECT_EQ(assignment_->CountsFor("a").idle, 1);
}

TEST_F(AssignmentTest, NoRoomAndNothingIdleIsUnavailable) {
  FakeWorker w("w1", 256);
  workers_.Add(&w);
  auto a = Acquire(Fn("a", 256));
  ASSERT_TRUE(a.ok());
  auto b = Acquire(Fn("b", 128));
  ASSERT_FALSE(b.ok());
  EXPECT_TRUE(b.status().IsRetryable()) << b.status().message();
  EXPECT_NE(b.status().message().find("128 MB"), std::string::npos);
}

TEST_F(AssignmentTest, PlacementSpreadsAFunctionAndPacksOthersOntoBusyWorkers) {
  FakeWorker w1("w1", 4096), w2("w2", 4096);
  workers_.Add(&w1);
  workers_.Add(&w2);
  auto a1 = Acquire(Fn("a")), a2 = Acquire(Fn("a"));
  ASSERT_TRUE(a1.ok() && a2.ok());
  EXPECT_NE(a1->worker, a2->worker);  // spread
  auto a3 = Acquire(Fn("a", 512));      // one each already: pack onto the fuller worker
  ASSERT_TRUE(a3.ok());
  auto b = Acquire(Fn("b"));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->worker, a3->worker);  // the busier worker takes a new function's sandbox
}

TEST_F(AssignmentTest, ConcurrentColdStartsOfAFunctionSpreadOverWorkers) {
  FakeWorker w1("w1", 4096), w2("w2", 4096);
  w1.create_delay = w2.create_delay = std::chrono::milliseconds(20);
  workers_.Add(&w1);
  workers_.Add(&w2);
  std::vector<Result<SandboxLease>> leases;
  for (int i = 0; i < 4; ++i)
    asio::co_spawn(io_, [&]() -> asio::awaitable<void> { leases.push_back(co_await assignment_->Acquire(Fn("f"))); },
                   asio::detached);
  RunPending();
  ASSERT_EQ(leases.size(), 4u);
  EXPECT_EQ(w1.live.size(), 2u);
  EXPECT_EQ(w2.live.size(), 2u);
}

TEST_F(AssignmentTest, WorkerThatDoesNotFitIsSkipped) {
  FakeWorker small("a-small", 128), big("b-big", 4096);
  workers_.Add(&small);
  workers_.Add(&big);
  auto lease = Acquire(Fn("f", 1024));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->worker, "b-big");
}

TEST_F(AssignmentTest, SandboxThatEndsWhileIdleLeavesItsPool) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto lease = Acquire(Fn("f"));
  assignment_->Release(*lease, true);
  assignment_->SandboxGone("w1", lease->sandbox);
  EXPECT_EQ(assignment_->CountsFor("f").idle, 0);
  EXPECT_TRUE(Acquire(Fn("f"))->cold);
}

TEST_F(AssignmentTest, SandboxThatEndsWhileLeasedIsNotReused) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto lease = Acquire(Fn("f"));
  assignment_->SandboxGone("w1", lease->sandbox);
  assignment_->Release(*lease, true);
  EXPECT_EQ(assignment_->CountsFor("f").idle, 0);
}

TEST_F(AssignmentTest, SandboxesOfAWorkerThatLeftAreForgotten) {
  FakeWorker w1("w1", 4096), w2("w2", 4096);
  workers_.Add(&w1);
  workers_.Add(&w2);
  auto a = Acquire(Fn("f")), b = Acquire(Fn("f"));
  ASSERT_NE(a->worker, b->worker);
  assignment_->Release(*a, true);
  std::string dead = a->worker;
  workers_.Remove(dead);
  assignment_->WorkerGone(dead);
  assignment_->WorkerGone(b->worker == "w1" ? "w1" : "w2");  // b's worker too, while b is leased
  assignment_->Release(*b, true);
  EXPECT_EQ(assignment_->CountsFor("f").idle, 0);
  auto c = Acquire(Fn("f"));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->cold);
  EXPECT_NE(c->worker, dead);
}

TEST_F(AssignmentTest, CreationFailuresPassThroughWithTheirCode) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  w.fail_create = Status::FunctionError("Runtime.InvalidEntrypoint", "Couldn't find valid bootstrap(s)");
  auto lease = Acquire(Fn("f"));
  ASSERT_FALSE(lease.ok());
  EXPECT_TRUE(lease.status().IsFunctionError());
  EXPECT_EQ(lease.status().lambda_error_type(), "Runtime.InvalidEntrypoint");
  EXPECT_EQ(assignment_->CountsFor("f").starting, 0);
}

TEST_F(AssignmentTest, RetiredRevisionsAreDrainedAndNewOnesStartFresh) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto old_fn = Fn("f");
  auto idle = Acquire(old_fn), busy = Acquire(old_fn);
  assignment_->Release(*idle, true);
  auto new_fn = old_fn;
  new_fn.revision_id = "r2";
  assignment_->Retire("f", "r2");
  EXPECT_EQ(w.destroyed, std::vector<std::string>{idle->sandbox});
  assignment_->Release(*busy, true);  // drained when its invocation ends
  EXPECT_EQ(w.destroyed.size(), 2u);
  EXPECT_TRUE(Acquire(new_fn)->cold);
}

TEST_F(AssignmentTest, ProvisionedSandboxesAreStartedAheadAndKeptHoweverIdle) {
  AssignmentOptions opts;
  opts.idle_timeout = 60s;
  Make(opts);
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto v1 = Fn("f", 128, "1");
  assignment_->SetProvisionResolver([&](const std::string&, const std::string& q) -> std::optional<FunctionConfig> {
    if (q == "1") return v1;
    return std::nullopt;
  });
  assignment_->SetProvisioned("f", "1", 2);
  RunPending();
  assignment_->Tick();
  auto st = assignment_->GetProvisioned("f", "1");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->available, 2);
  EXPECT_EQ(st->status, "READY");
  EXPECT_EQ(w.init_types, (std::vector<std::string>{"provisioned-concurrency", "provisioned-concurrency"}));
  now_ += 1h;
  assignment_->Tick();
  EXPECT_TRUE(w.destroyed.empty());
  auto lease = Acquire(v1);
  ASSERT_TRUE(lease.ok());
  EXPECT_FALSE(lease->cold);
  // A provisioned sandbox that dies is replaced on the next tick.
  assignment_->Release(*lease, false);
  assignment_->Tick();
  RunPending();
  assignment_->Tick();
  EXPECT_EQ(assignment_->GetProvisioned("f", "1")->available, 2);
  EXPECT_EQ(w.created, 3);
  assignment_->ClearProvisioned("f", "");
  now_ += 2min;
  assignment_->Tick();
  EXPECT_EQ(w.live.size(), 0u);  // no longer provisioned: reaped like any idle sandbox
}

TEST_F(AssignmentTest, ProvisionedSandboxThatFailsInitIsReportedFailed) {
  FakeWorker w("w1", 4096);
  w.ready = false;
  workers_.Add(&w);
  auto v1 = Fn("f", 128, "1");
  assignment_->SetProvisionResolver([&](const std::string&, const std::string&) { return std::optional(v1); });
  assignment_->SetProvisioned("f", "1", 1);
  RunPending();
  auto st = assignment_->GetProvisioned("f", "1");
  EXPECT_EQ(st->status, "FAILED");
  EXPECT_EQ(st->reason, "The runtime failed to initialize.");
  EXPECT_EQ(w.live.size(), 0u);
}

// A journal that records what it is told and can be made to refuse (a lost partition).
class FakeJournal : public SandboxJournal {
 public:
  asio::awaitable<Status> Created(const FunctionConfig& fn, const std::string& worker, const std::string& sandbox,
                                  uint64_t token) override {
    if (!refuse.ok()) co_return refuse;
    log.push_back("created " + worker + "/" + sandbox + " " + fn.name);
    co_return Status::Ok();
  }
  asio::awaitable<void> Ended(const std::string& worker, const std::string& sandbox) override {
    log.push_back("ended " + worker + "/" + sandbox);
    co_return;
  }
  Status refuse;
  std::vector<std::string> log;
};

TEST_F(AssignmentTest, LifecycleIsJournaledBeforeItIsActedOn) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  FakeJournal journal;
  assignment_->SetJournal(&journal);
  auto lease = Acquire(Fn("f"));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(journal.log, std::vector<std::string>{"created w1/" + lease->sandbox + " f"});
  assignment_->Release(*lease, false);
  RunPending();
  EXPECT_EQ(journal.log.back(), "ended w1/" + lease->sandbox);
  EXPECT_EQ(w.destroyed, std::vector<std::string>{lease->sandbox});
  // Not journaled (the partition was lost): destroyed, never leased.
  journal.refuse = Status::Conflict("not the leader of partition 3");
  auto refused = Acquire(Fn("f"));
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(refused.status().IsConflict());
  EXPECT_EQ(w.live.size(), 0u);
  EXPECT_EQ(assignment_->CountsFor("f").leased, 0);
}

TEST_F(AssignmentTest, AdoptedSandboxesServeOnAndTheirRunningLeasesComeBack) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  // What a previous leader left: two sandboxes, one idle, one running an invocation (lease 7).
  w.live["sb-idle"] = {128, 11, 4, "f", false};
  w.live["sb-busy"] = {128, 12, 7, "f", true};
  assignment_->Adopt(Fn("f"), "w1", "sb-idle", 11, 4, false);
  assignment_->Adopt(Fn("f"), "w1", "sb-busy", 12, 7, true);
  auto lease = Acquire(Fn("f"));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->sandbox, "sb-idle");
  EXPECT_EQ(lease->sequence, 5u);  // after what the worker last served
  EXPECT_FALSE(lease->cold);
  assignment_->Release({"w1", "sb-busy", 12, 7, false}, true);  // the old leader's lease comes back
  EXPECT_EQ(assignment_->CountsFor("f").idle, 1);
  EXPECT_EQ(w.created, 0);
  assignment_->Forget();
  EXPECT_EQ(assignment_->CountsFor("f").idle, 0);
  EXPECT_EQ(assignment_->CountsFor("f").leased, 0);
  EXPECT_EQ(w.live.size(), 2u);  // forgotten, not destroyed
}

TEST_F(AssignmentTest, ShutdownDestroysEverythingAndRefusesLeases) {
  FakeWorker w("w1", 4096);
  workers_.Add(&w);
  auto idle = Acquire(Fn("f")), busy = Acquire(Fn("f"));
  assignment_->Release(*idle, true);
  assignment_->Shutdown();
  EXPECT_EQ(w.live.size(), 0u);
  EXPECT_TRUE(Acquire(Fn("f")).status().IsRetryable());
}

}  // namespace
}  // namespace kindling
