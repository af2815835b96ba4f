// The worker RPC end to end on loopback: RemoteWorker -> HttpClient -> HttpServer -> WorkerServer
// -> a FakeWorker. Round trips of every call, lease checks across the wire, the cluster key,
// garbled and truncated requests, a worker that is down.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>

#include "common/run_until_done.h"
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http_client.h"
#include "http/http_server.h"
#include "rpc/rpc.h"
#include "worker/fake_worker.h"
#include "worker/remote_worker.h"
#include "worker/worker_server.h"

namespace kindling {
namespace {

namespace asio = boost::asio;
const std::string kKey = "0123456789abcdef0123456789abcdef-key";

class WorkerRpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<WorkerServer>(fake_, kKey);
    http_server_ = std::make_unique<HttpServer>(io_, *server_);
    auto port = http_server_->Listen("127.0.0.1", 0);
    ASSERT_TRUE(port.ok());
    port_ = *port;
    url_ = "http://127.0.0.1:" + std::to_string(port_);
    remote_ = std::make_shared<RemoteWorker>(io_, client_, "w1", url_, kKey);
    remote_->OnSandboxGone([this](const std::string& id) { gone_.push_back(id); });
  }
  void TearDown() override {
    remote_->Stop();
    http_server_->Stop();
  }
  template <typename T>
  T Run(asio::awaitable<T> aw) {
    return RunUntilDone(io_, std::move(aw));
  }
  FunctionConfig Fn() {
    FunctionConfig fn;
    fn.name = "f";
    fn.runtime = "python3.11";
    fn.memory_mb = 256;
    return fn;
  }
  // Sends raw bytes to the server and returns what it answers until it closes (or 2 s pass).
  std::string Raw(const std::string& bytes) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
    shutdown(fd, SHUT_WR);
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (std::chrono::steady_clock::now() < deadline) {
      io_.poll();
      char buf[4096];
      ssize_t n = read(fd, buf, sizeof buf);
      if (n == 0) break;
      if (n > 0) out.append(buf, n);
      else usleep(1000);
    }
    close(fd);
    return out;
  }

  asio::io_context io_;
  FakeWorker fake_{"w1", 1024};
  std::unique_ptr<WorkerServer> server_;
  std::unique_ptr<HttpServer> http_server_;
  int port_ = 0;
  std::string url_;
  HttpClient client_{io_};
  std::shared_ptr<RemoteWorker> remote_;
  std::vector<std::string> gone_;
};

TEST_F(WorkerRpcTest, CreateInvokeAndStatsRoundTrip) {
  auto created = Run(remote_->CreateSandbox(Fn(), "on-demand"));
  ASSERT_TRUE(created.ok()) << created.status().message();
  EXPECT_EQ(created->id, "w1-sb1");
  EXPECT_EQ(created->token, 1001u);
  EXPECT_EQ(fake_.init_types, std::vector<std::string>{"on-demand"});
  EXPECT_TRUE(Run(remote_->WaitReady(created->id)));

  InvokeRequest req;
  req.request_id = "11111111-2222-3333-4444-555555555555";
  req.invoked_arn = "arn:aws:lambda:us-east-1:000000000000:function:f";
  req.client_context = "{\"custom\":{\"a\":\"line\\nbreak\"}}";
  req.trace_id = "Root=1-abc";
  req.function_timeout = std::chrono::seconds(3);
  for (int i = 0; i < 256; ++i) req.payload.push_back(static_cast<char>(i));  // any bytes
  req.payload += std::string(1 << 20, 'x');
  SandboxLease lease{"w1", created->id, created->token, 1, true};
  auto result = Run(remote_->Invoke(lease, req));
  ASSERT_TRUE(result.ok()) << result.status().message();
  EXPECT_EQ(result->payload, req.payload);
  EXPECT_TRUE(result->cold_start);
  EXPECT_FALSE(result->sandbox_gone);
  EXPECT_EQ(result->log, "log of " + req.request_id + "\n");
  ASSERT_EQ(fake_.invoked.size(), 1u);
  EXPECT_EQ(fake_.invoked[0].client_context, req.client_context);
  EXPECT_EQ(fake_.invoked[0].invoked_arn, req.invoked_arn);
  EXPECT_EQ(fake_.invoked[0].trace_id, req.trace_id);

  EXPECT_FALSE(remote_->Stats().available);  // not polled yet: takes nothing new
  ASSERT_TRUE(Run(remote_->Poll()).ok());
  WorkerStats st = remote_->Stats();
  EXPECT_TRUE(st.available);
  EXPECT_EQ(st.sandboxes, 1u);
  EXPECT_EQ(st.memory_reserved_bytes, 256u << 20);
  EXPECT_EQ(st.memory_capacity_bytes, 1024u << 20);
}

TEST_F(WorkerRpcTest, LeasesAreCheckedAcrossTheWire) {
  auto created = Run(remote_->CreateSandbox(Fn(), "on-demand"));
  ASSERT_TRUE(created.ok());
  InvokeRequest req;
  req.request_id = "r1";
  req.payload = "{}";
  SandboxLease lease{"w1", created->id, created->token, 5, false};
  ASSERT_TRUE(Run(remote_->Invoke(lease, req)).ok());
  auto replay = Run(remote_->Invoke(lease, req));
  ASSERT_FALSE(replay.ok());
  EXPECT_TRUE(replay.status().IsConflict()) << replay.status().message();
  SandboxLease forged = lease;
  forged.sequence = 6;
  forged.token = 42;
  EXPECT_TRUE(Run(remote_->Invoke(forged, req)).status().IsConflict());
  SandboxLease unknown = lease;
  unknown.sandbox = "w1-sb99";
  unknown.sequence = 7;
  EXPECT_TRUE(Run(remote_->Invoke(unknown, req)).status().IsNotFound());
}

TEST_F(WorkerRpcTest, FunctionErrorsKeepTheirLambdaType) {
  fake_.fail_create = Status::FunctionError("Runtime.InvalidEntrypoint", "Couldn't find valid bootstrap(s)");
  auto created = Run(remote_->CreateSandbox(Fn(), "on-demand"));
  ASSERT_FALSE(created.ok());
  EXPECT_TRUE(created.status().IsFunctionError());
  EXPECT_EQ(created.status().lambda_error_type(), "Runtime.InvalidEntrypoint");
  EXPECT_NE(created.status().message().find("Couldn't find valid bootstrap(s)"), std::string::npos);
}

TEST_F(WorkerRpcTest, SandboxesThatEndAreReportedByThePoll) {
  auto a = Run(remote_->CreateSandbox(Fn(), "on-demand"));
  auto b = Run(remote_->CreateSandbox(Fn(), "on-demand"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(Run(remote_->Poll()).ok());
  ASSERT_TRUE(Run(remote_->Poll()).ok());
  EXPECT_TRUE(gone_.empty());
  InvokeRequest req;
  req.request_id = "r";
  req.payload = "die";
  auto r = Run(remote_->Invoke({"w1", a->id, a->token, 1, false}, req));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->sandbox_gone);
  ASSERT_TRUE(Run(remote_->Poll()).ok());
  EXPECT_EQ(gone_, std::vector<std::string>{a->id});
  remote_->Destroy(b->id);
  for (int i = 0; i < 100 && fake_.live.count(b->id); ++i) io_.run_one_for(std::chrono::milliseconds(10));
  EXPECT_EQ(fake_.live.size(), 0u);
  ASSERT_TRUE(Run(remote_->Poll()).ok());
  EXPECT_EQ(gone_, (std::vector<std::string>{a->id, b->id}));
}

TEST_F(WorkerRpcTest, WrongClusterKeyIsRefused) {
  auto intruder = std::make_shared<RemoteWorker>(io_, client_, "w1", url_, "not-the-key-not-the-key-not-the-key");
  auto created = Run(intruder->CreateSandbox(Fn(), "on-demand"));
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(fake_.created, 0);
  EXPECT_FALSE(Run(intruder->Poll()).ok());
  EXPECT_FALSE(intruder->reachable());
  std::string answer = Raw("GET /kindling/v1/worker/state HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_NE(answer.find("401"), std::string::npos) << answer;
}

TEST_F(WorkerRpcTest, GarbledRequestsGetErrorsAndChangeNothing) {
  auto post = [&](const std::string& target, const std::string& body, const std::string& extra = "") {
    return Raw("POST " + target + " HTTP/1.1\r\nHost: x\r\n" + rpc::kClusterKeyHeader + ": " + kKey + "\r\n" + extra +
               "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
  };
  EXPECT_NE(post("/kindling/v1/worker/sandboxes", "{not json").find(" 400 "), std::string::npos);
  EXPECT_NE(post("/kindling/v1/worker/sandboxes", "{\"function\": 7}").find(" 400 "), std::string::npos);
  EXPECT_NE(post("/kindling/v1/worker/sandboxes", "{\"function\": {}, \"initializationType\": \"on-demand\"}").find(" 400 "),
            std::string::npos);
  auto created = Run(remote_->CreateSandbox(Fn(), "on-demand"));
  ASSERT_TRUE(created.ok());
  std::string invoke = "/kindling/v1/worker/sandboxes/" + created->id + "/invoke";
  for (const std::string& lease : {"", "1001", "1001:", ":1", "1001:x", "99999999999999999999999:1", "1001:1:2"})
    EXPECT_NE(post(invoke, "{}", "x-kindling-lease: " + lease + "\r\nx-kindling-request-id: r\r\n").find(" 400 "),
              std::string::npos)
        << lease;
  EXPECT_NE(post(invoke, "{}", "x-kindling-lease: 1001:1\r\nx-kindling-request-id: r\r\nx-kindling-client-context: %%%\r\n")
                .find(" 400 "),
            std::string::npos);
  EXPECT_NE(post("/kindling/v1/worker/sandboxes/..%2Fetc/invoke", "{}").find(" 400 "), std::string::npos);
  EXPECT_NE(post("/kindling/v1/worker/nothing", "{}").find(" 404 "), std::string::npos);
  // Truncated: the body never arrives in full.
  Raw("POST " + invoke + " HTTP/1.1\r\nHost: x\r\n" + rpc::kClusterKeyHeader + ": " + kKey +
      "\r\nx-kindling-lease: 1001:1\r\nx-kindling-request-id: r\r\nContent-Length: 100\r\n\r\n{\"a\"");
  EXPECT_TRUE(fake_.invoked.empty());
  EXPECT_EQ(fake_.live.size(), 1u);
  // The server still serves.
  InvokeRequest req;
  req.request_id = "r";
  req.payload = "ok";
  auto r = Run(remote_->Invoke({"w1", created->id, created->token, 1, false}, req));
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->payload, "ok");
}

TEST_F(WorkerRpcTest, WorkerThatIsDownIsUnavailableAndNothingWasSent) {
  http_server_->Stop();
  int port;
  {  // a port nobody listens on
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    close(fd);
  }
  auto down = std::make_shared<RemoteWorker>(io_, client_, "w2", "http://127.0.0.1:" + std::to_string(port), kKey);
  auto created = Run(down->CreateSandbox(Fn(), "on-demand"));
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kUnavailable) << created.status().message();
  InvokeRequest req;
  req.request_id = "r";
  auto r = Run(down->Invoke({"w2", "sb", 1, 1, false}, req));
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(Run(down->Poll()).ok());
  EXPECT_FALSE(down->Stats().available);
}

TEST(HttpBase, ParsesOnlyHostAndPort) {
  EXPECT_TRUE(ParseHttpBase("http://127.0.0.1:80").ok());
  EXPECT_TRUE(ParseHttpBase("http://[::1]:9000/").ok());
  for (const char* bad : {"https://a:1", "http://a", "http://a:", "http://:1", "http://a:1/x", "http://a:99999", "http://a:1x"})
    EXPECT_FALSE(ParseHttpBase(bad).ok()) << bad;
}

}  // namespace
}  // namespace kindling
