// Frontend::Invoke over leases, against a fake worker: the payload goes to the lease's worker, an
// event that never reached the function runs once more on a new lease, the function's start
// failures and throttles become Lambda's shapes.
#include <gtest/gtest.h>
#include <unistd.h>

#include "common/files.h"
#include "frontend/frontend.h"
#include "worker/fake_worker.h"

namespace kindling {
namespace {

namespace asio = boost::asio;

class FrontendInvokeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kindling-frontend-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto store = MetadataStore::Open(dir_ + "/m.db");
    ASSERT_TRUE(store.ok());
    registry_ = std::make_unique<FunctionRegistry>(std::move(store).value());
    workers_.Add(&worker_);
    AssignmentOptions opts;
    opts.scaling_limit = 3;
    assignment_ = std::make_unique<AssignmentService>(io_, workers_, opts);
    worker_.OnSandboxGone([this](const std::string& id) { assignment_->SandboxGone("w1", id); });
    frontend_ = std::make_unique<Frontend>(*registry_, counting_, *assignment_, workers_, metrics_, ArnContext{});
    FunctionConfig fn;
    fn.name = "f";
    fn.runtime = "provided.al2023";
    fn.code_digest = "d1";
    fn.revision_id = "r1";
    ASSERT_TRUE(registry_->Insert(fn).ok());
  }
  void TearDown() override { RemoveTree(dir_); }

  std::variant<InvokeReply, ApiError> Invoke(const std::string& payload) {
    std::optional<std::variant<InvokeReply, ApiError>> out;
    InvokeCall call;
    call.function = "f";
    call.payload = payload;
    asio::co_spawn(io_, [&]() -> asio::awaitable<void> {
      out.emplace(co_await frontend_->Invoke(call, "6c0e4f3a-1b2c-4d5e-8f90-a1b2c3d4e5f6"));
    }, asio::detached);
    io_.restart();
    io_.run();
    return std::move(*out);
  }

  std::string dir_;
  asio::io_context io_;
  FakeWorker worker_{"w1", 4096};
  WorkerDirectory workers_;
  Counting counting_{1000};
  Metrics metrics_;
  std::unique_ptr<FunctionRegistry> registry_;
  std::unique_ptr<AssignmentService> assignment_;
  std::unique_ptr<Frontend> frontend_;
};

TEST_F(FrontendInvokeTest, PayloadGoesToTheLeasedSandboxAndBack) {
  auto reply = Invoke("{\"a\":1}");
  ASSERT_TRUE(std::holds_alternative<InvokeReply>(reply));
  EXPECT_EQ(std::get<InvokeReply>(reply).body, "{\"a\":1}");
  ASSERT_EQ(worker_.invoked.size(), 1u);
  EXPECT_EQ(worker_.invoked[0].invoked_arn, "arn:aws:lambda:us-east-1:000000000000:function:f");
  EXPECT_EQ(worker_.invoked[0].function_timeout, std::chrono::seconds(3));
  Invoke("{}");
  EXPECT_EQ(worker_.created, 1);  // warm the second time
}

TEST_F(FrontendInvokeTest, EventThatNeverReachedTheFunctionRunsOnANewSandbox) {
  Invoke("{}");
  // The idle sandbox ends without the assignment service hearing of it yet.
  worker_.live.clear();
  auto reply = Invoke("{\"again\":1}");
  ASSERT_TRUE(std::holds_alternative<InvokeReply>(reply));
  EXPECT_EQ(std::get<InvokeReply>(reply).body, "{\"again\":1}");
  EXPECT_TRUE(std::get<InvokeReply>(reply).function_error.empty());
  EXPECT_EQ(worker_.created, 2);
}

TEST_F(FrontendInvokeTest, FunctionThatCannotStartIsAFunctionError) {
  worker_.fail_create = Status::FunctionError("Runtime.InvalidEntrypoint", "Couldn't find valid bootstrap(s)");
  auto reply = Invoke("{}");
  ASSERT_TRUE(std::holds_alternative<InvokeReply>(reply));
  const InvokeReply& r = std::get<InvokeReply>(reply);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.function_error, "Unhandled");
  EXPECT_NE(r.body.find("\"errorType\":\"Runtime.InvalidEntrypoint\""), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("RequestId: 6c0e4f3a-1b2c-4d5e-8f90-a1b2c3d4e5f6 Error: Couldn't find"), std::string::npos);
}

TEST_F(FrontendInvokeTest, PlatformFailuresAreServiceExceptionsAndScalingIsA429) {
  worker_.fail_create = Status::Unavailable("worker w1: connect: Connection refused");
  auto reply = Invoke("{}");
  ASSERT_TRUE(std::holds_alternative<ApiError>(reply));
  EXPECT_EQ(std::get<ApiError>(reply).status, 500);
  EXPECT_EQ(std::get<ApiError>(reply).type, "ServiceException");
  worker_.fail_create = Status::Ok();
  // The scaling rate (3 per window) was spent by the tries above and below.
  for (int i = 0; i < 2; ++i) Invoke("\"die\"");  // each one ends its sandbox: the next start is cold
  reply = Invoke("{}");
  ASSERT_TRUE(std::holds_alternative<ApiError>(reply));
  EXPECT_EQ(std::get<ApiError>(reply).status, 429);
  EXPECT_EQ(std::get<ApiError>(reply).reason, "FunctionInvocationRateLimitExceeded");
}

}  // namespace
}  // namespace kindling
