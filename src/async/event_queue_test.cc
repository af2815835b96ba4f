#include "async/event_queue.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>

#include "async/destination.h"
#include "async/event_invoke_config.h"

namespace kindling {
namespace {

class EventQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kindling-async-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    path_ = dir_ + "/events.db";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<EventQueue> Open() {
    auto q = EventQueue::Open(path_);
    EXPECT_TRUE(q.ok()) << q.status().message();
    return std::move(q).value();
  }
  static NewEvent Event(const std::string& id, int64_t at) {
    NewEvent e;
    e.request_id = id;
    e.function = "fn";
    e.payload = "{\"n\":\"" + id + "\"}";
    e.accepted_ms = at;
    return e;
  }
  std::string dir_, path_;
};

TEST_F(EventQueueTest, EventsSurviveReopen) {
  {
    auto q = Open();
    ASSERT_TRUE(q->Enqueue({Event("a", 1000), Event("b", 1001)}).ok());
  }
  auto q = Open();
  auto stats = q->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->depth, 2);
  EXPECT_EQ(stats->oldest_accepted_ms, 1000);
  auto leased = q->Lease(2000, 10, 60000);
  ASSERT_TRUE(leased.ok());
  ASSERT_EQ(leased->size(), 2u);
  EXPECT_EQ((*leased)[0].request_id, "a");
  EXPECT_EQ((*leased)[0].payload, "{\"n\":\"a\"}");
  EXPECT_EQ((*leased)[1].request_id, "b");
}

TEST_F(EventQueueTest, DurabilitySettings) {
  auto q = Open();
  // WAL + synchronous=FULL are what the 202 relies on; checked through a second connection.
  EXPECT_TRUE(std::filesystem::exists(path_));
  EXPECT_TRUE(q->Enqueue({Event("a", 1)}).ok());
  EXPECT_TRUE(std::filesystem::exists(path_ + "-wal"));
  auto perms = std::filesystem::status(path_).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::others_read, std::filesystem::perms::none);
}

TEST_F(EventQueueTest, LeaseHidesEventsUntilItExpires) {
  auto q = Open();
  ASSERT_TRUE(q->Enqueue({Event("a", 1000)}).ok());
  auto first = q->Lease(1000, 10, 5000);
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->size(), 1u);
  EXPECT_TRUE(q->Lease(3000, 10, 5000)->empty()) << "leased events are not leased twice";
  EXPECT_EQ(*(q->NextDue().value()), 6000) << "due again when the lease expires";
  // The owner died: after expiry the event is deliverable again, under a new token.
  auto second = q->Lease(6000, 10, 5000);
  ASSERT_EQ(second->size(), 1u);
  EXPECT_NE((*second)[0].lease_token, (*first)[0].lease_token);
  // The old owner cannot finish or requeue it any more.
  EXPECT_FALSE((q->Finish((*first)[0], {}, {}, 6000).value()));
  EXPECT_FALSE((q->Requeue((*first)[0], 7000).value()));
  EXPECT_TRUE((q->Finish((*second)[0], {}, {}, 6000).value()));
  EXPECT_EQ(q->Stats()->depth, 0);
}

TEST_F(EventQueueTest, ReleaseAllLeasesAfterRestart) {
  {
    auto q = Open();
    ASSERT_TRUE(q->Enqueue({Event("a", 1000)}).ok());
    ASSERT_EQ(q->Lease(1000, 10, 1000000)->size(), 1u);
  }
  auto q = Open();
  EXPECT_TRUE(q->Lease(2000, 10, 1000)->empty());
  ASSERT_TRUE(q->ReleaseAllLeases().ok());
  EXPECT_EQ(q->Lease(2000, 10, 1000)->size(), 1u);
}

TEST_F(EventQueueTest, LeaseLimitAndDueOrder) {
  auto q = Open();
  NewEvent later = Event("later", 1000);
  later.not_before_ms = 5000;
  ASSERT_TRUE(q->Enqueue({Event("a", 1000), later, Event("b", 1002), Event("c", 1003)}).ok());
  auto leased = q->Lease(2000, 2, 60000);
  ASSERT_EQ(leased->size(), 2u);
  EXPECT_EQ((*leased)[0].request_id, "a");
  EXPECT_EQ((*leased)[1].request_id, "b");
  leased = q->Lease(2000, 10, 60000);
  ASSERT_EQ(leased->size(), 1u);
  EXPECT_EQ((*leased)[0].request_id, "c");
  EXPECT_EQ(*(q->NextDue().value()), 5000);
  EXPECT_EQ(q->Lease(5000, 10, 60000)->size(), 1u);
}

TEST_F(EventQueueTest, RequeueKeepsCountersAndSchedule) {
  auto q = Open();
  ASSERT_TRUE(q->Enqueue({Event("a", 1000)}).ok());
  QueuedEvent ev = ((q->Lease(1000, 1, 60000).value()))[0];
  ev.invoke_count = 1;
  ev.function_errors = 1;
  ev.last_result = "{\"statusCode\":200}";
  ASSERT_TRUE((q->Requeue(ev, 61000).value()));
  EXPECT_TRUE(q->Lease(60999, 1, 60000)->empty());
  auto again = q->Lease(61000, 1, 60000);
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].invoke_count, 1);
  EXPECT_EQ((*again)[0].function_errors, 1);
  EXPECT_EQ((*again)[0].first_accepted_ms, 1000);
  EXPECT_EQ((*again)[0].last_result, "{\"statusCode\":200}");
}

TEST_F(EventQueueTest, FinishWritesRecordsAtomically) {
  auto q = Open();
  ASSERT_TRUE(q->Enqueue({Event("a", 1000)}).ok());
  QueuedEvent ev = ((q->Lease(1000, 1, 60000).value()))[0];
  NewEvent dest = Event("dest", 1500);
  dest.function = "destination-fn";
  ASSERT_TRUE((q->Finish(ev, {dest}, {QueueMessage{"failures", "arn:aws:sqs:us-east-1:000000000000:failures", "{}", ""}}, 1500).value()));
  auto leased = q->Lease(2000, 10, 60000);
  ASSERT_EQ(leased->size(), 1u);
  EXPECT_EQ((*leased)[0].function, "destination-fn");
  auto msgs = q->Receive("failures", 10, 0, 2000);
  ASSERT_EQ(msgs->size(), 1u);
  EXPECT_EQ((*msgs)[0].target_arn, "arn:aws:sqs:us-east-1:000000000000:failures");
}

TEST_F(EventQueueTest, LocalQueueReceiveVisibilityAndDelete) {
  auto q = Open();
  ASSERT_TRUE(q->PushMessages({{"q1", "", "one", ""}, {"q1", "", "two", "{\"A\":1}"}, {"q2", "", "x", ""}}, 100).ok());
  auto peek = q->Receive("q1", 10, 0, 200);
  ASSERT_EQ(peek->size(), 2u);
  EXPECT_TRUE((*peek)[0].receipt_handle.empty());
  auto got = q->Receive("q1", 1, 30000, 200);
  ASSERT_EQ(got->size(), 1u);
  EXPECT_EQ((*got)[0].body, "one");
  EXPECT_EQ((*got)[0].receive_count, 1);
  auto next = q->Receive("q1", 10, 30000, 300);
  ASSERT_EQ(next->size(), 1u) << "a received message is invisible until its timeout";
  EXPECT_EQ((*next)[0].body, "two");
  EXPECT_TRUE((q->DeleteMessage("q1", (*got)[0].receipt_handle).value()));
  EXPECT_FALSE((q->DeleteMessage("q1", (*got)[0].receipt_handle).value()));
  EXPECT_TRUE((q->DeleteMessage("q1", (*next)[0].message_id).value()));
  EXPECT_TRUE(q->Receive("q1", 10, 0, 100000)->empty());
  auto queues = q->ListQueues();
  ASSERT_EQ(queues->size(), 1u);
  EXPECT_EQ((*queues)[0].first, "q2");
  EXPECT_EQ((q->PurgeQueue("q2").value()), 1);
}

TEST_F(EventQueueTest, ConfigsPersist) {
  {
    auto q = Open();
    ASSERT_TRUE(q->PutConfig("fn", "$LATEST", "{\"x\":1}").ok());
    ASSERT_TRUE(q->PutConfig("fn", "prod", "{\"x\":2}").ok());
    ASSERT_TRUE(q->PutConfig("other", "$LATEST", "{}").ok());
  }
  auto q = Open();
  auto all = q->LoadConfigs();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((all->at({"fn", "prod"})), "{\"x\":2}");
  EXPECT_TRUE((q->DeleteConfig("fn", "prod").value()));
  EXPECT_FALSE((q->DeleteConfig("fn", "prod").value()));
  ASSERT_TRUE(q->DeleteConfigs("fn").ok());
  EXPECT_EQ(q->LoadConfigs()->size(), 1u);
}

TEST(RetrySchedule, FunctionErrorsWaitOneThenTwoMinutes) {
  EXPECT_EQ(FunctionErrorRetryDelayMs(1), 60000);
  EXPECT_EQ(FunctionErrorRetryDelayMs(2), 120000);
}

TEST(RetrySchedule, ThrottleBackoffDoublesFromOneSecondToFiveMinutes) {
  EXPECT_EQ(ThrottleBackoffMs(1), 1000);
  EXPECT_EQ(ThrottleBackoffMs(2), 2000);
  EXPECT_EQ(ThrottleBackoffMs(3), 4000);
  EXPECT_EQ(ThrottleBackoffMs(9), 256000);
  EXPECT_EQ(ThrottleBackoffMs(10), 300000);
  EXPECT_EQ(ThrottleBackoffMs(1000), 300000);
}

TEST(RetrySchedule, Scaling) {
  EXPECT_EQ(ScaleDelay(60000, 0.01), 600);
  EXPECT_EQ(ScaleDelay(1000, 1.0), 1000);
  EXPECT_EQ(ScaleDelay(10, 0.0), 1);
}

TEST(Destinations, Parse) {
  Destination d = ParseDestination("arn:aws:lambda:us-east-1:000000000000:function:dest:prod");
  EXPECT_EQ(d.kind, Destination::kLambda);
  EXPECT_EQ(d.function, "dest");
  EXPECT_EQ(d.qualifier, "prod");
  d = ParseDestination("arn:aws:sqs:us-east-1:000000000000:my-queue");
  EXPECT_EQ(d.kind, Destination::kLocalQueue);
  EXPECT_EQ(d.queue, "my-queue");
  EXPECT_EQ(ParseDestination("arn:aws:sns:eu-west-1:123456789012:topic").queue, "topic");
  EXPECT_EQ(ParseDestination("arn:aws:events:us-east-1:000000000000:event-bus/bus").queue, "bus");
  EXPECT_EQ(ParseDestination("arn:aws:s3:::bucket").kind, Destination::kUnsupported);
  EXPECT_EQ(ParseDestination("not-an-arn").kind, Destination::kInvalid);
  EXPECT_EQ(ParseDestination("arn:aws:sqs:us-east-1:0000:q").kind, Destination::kInvalid);
  EXPECT_EQ(ParseDestination("arn:aws:sqs:us-east-1:000000000000:bad/name").kind, Destination::kInvalid);
}

TEST(EventInvokeConfigs, ValidationAndMerge) {
  ArnContext arn;
  EventInvokeConfig c;
  using nlohmann::json;
  EXPECT_FALSE(ApplyEventInvokeConfig(json{{"MaximumRetryAttempts", 1}}, true, arn, &c));
  EXPECT_EQ(c.RetryAttempts(), 1);
  EXPECT_EQ(c.MaxEventAgeSeconds(), 21600);
  auto e = ApplyEventInvokeConfig(json{{"MaximumRetryAttempts", 3}}, true, arn, &c);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "ValidationException");
  EXPECT_EQ(c.RetryAttempts(), 1) << "a refused request changes nothing";
  EXPECT_TRUE(ApplyEventInvokeConfig(json{{"MaximumEventAgeInSeconds", 59}}, true, arn, &c));
  EXPECT_TRUE(ApplyEventInvokeConfig(json{{"MaximumEventAgeInSeconds", 21601}}, true, arn, &c));
  EXPECT_FALSE(ApplyEventInvokeConfig(
      json{{"DestinationConfig", {{"OnFailure", {{"Destination", "arn:aws:sqs:us-east-1:000000000000:f"}}}}}}, false,
      arn, &c));
  EXPECT_EQ(c.RetryAttempts(), 1) << "update merges";
  EXPECT_EQ(c.on_failure, "arn:aws:sqs:us-east-1:000000000000:f");
  EXPECT_FALSE(ApplyEventInvokeConfig(json{{"MaximumEventAgeInSeconds", 60}}, true, arn, &c));
  EXPECT_EQ(c.on_failure, "") << "put replaces";
  e = ApplyEventInvokeConfig(json{{"DestinationConfig", {{"OnSuccess", {{"Destination", "nope"}}}}}}, true, arn, &c);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "ValidationException");
  e = ApplyEventInvokeConfig(
      json{{"DestinationConfig", {{"OnSuccess", {{"Destination", "arn:aws:dynamodb:us-east-1:000000000000:table/t"}}}}}},
      true, arn, &c);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->type, "InvalidParameterValueException");
  e = ApplyEventInvokeConfig(
      json{{"DestinationConfig", {{"OnSuccess", {{"Destination", "arn:aws:lambda:eu-west-1:000000000000:function:f"}}}}}},
      true, arn, &c);
  ASSERT_TRUE(e) << "a function of another region is not a destination here";
  EventInvokeConfig stored;
  c.maximum_retry_attempts = 0;
  c.on_success = "arn:aws:lambda:us-east-1:000000000000:function:f";
  ASSERT_TRUE(FromStoredJson(ToStoredJson(c), &stored));
  EXPECT_EQ(stored.RetryAttempts(), 0);
  EXPECT_EQ(stored.on_success, c.on_success);
  EXPECT_FALSE(ValidateDeadLetterTarget("arn:aws:sqs:us-east-1:000000000000:dlq"));
  EXPECT_TRUE(ValidateDeadLetterTarget("arn:aws:lambda:us-east-1:000000000000:function:f"));
  EXPECT_TRUE(ValidateDeadLetterTarget("bogus"));
}

}  // namespace
}  // namespace kindling
