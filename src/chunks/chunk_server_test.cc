// kindling-chunkd's server and its client, against a real server on a loopback port.
#include "chunks/chunk_server.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "chunks/chunk_client.h"
#include "chunks/test_server.h"

namespace kindling::chunks {
namespace {

using namespace testing;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// A sink that keeps chunks in memory (to upload from).
class MemorySink : public ChunkSink {
 public:
  Status Put(const Digest& d, std::string_view data) override {
    chunks[d] = std::string(data);
    return Status::Ok();
  }
  std::map<Digest, std::string> chunks;
};

// Chunks an in-memory image (through a file, as the image builder does).
Manifest ChunkBytes(const std::string& data, MemorySink& sink) {
  std::string dir = TempDir("image");
  EXPECT_TRUE(WriteFile(dir + "/img", data).ok());
  auto m = ChunkFile(dir + "/img", sink);
  RemoveTree(dir);
  EXPECT_TRUE(m.ok());
  return *m;
}

ChunkClientOptions FastFailing(const std::string& url) {
  ChunkClientOptions o;
  o.url = url;
  o.attempts = 3;
  o.retry_backoff = std::chrono::milliseconds(10);
  o.connect_timeout = std::chrono::milliseconds(500);
  o.request_timeout = std::chrono::milliseconds(2000);
  return o;
}

double MetricValue(const std::string& text, const std::string& name) {
  size_t at = text.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + name.size() + 2));
}

void Age(const std::string& path, int seconds) {
  struct timespec t[2] = {{time(nullptr) - seconds, 0}, {time(nullptr) - seconds, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), t, 0), 0);
}

}  // namespace

// Two images that share chunks: uploads send only what the server lacks, every chunk is stored
// once, manifests and chunks come back intact.
TEST(ChunkServer, RoundTripAndDedupAcrossImages) {
  TestServer server;
  ChunkClient client(FastFailing(server.url()));
  std::string shared = RandomChunk(2 * kChunkSize, 1);
  std::string a = shared + RandomChunk(kChunkSize + 77, 2);
  std::string b = shared + RandomChunk(1000, 3);
  MemorySink sink;
  Manifest ma = ChunkBytes(a, sink), mb = ChunkBytes(b, sink);
  auto read = [&](const ChunkRef& r) -> Result<std::string> { return sink.chunks.at(r.digest); };

  auto missing = client.Missing({ma.chunks[0].digest, ma.chunks[0].digest, ma.chunks[1].digest});
  ASSERT_TRUE(missing.ok()) << missing.status().message();
  EXPECT_EQ(missing->size(), 2u);  // duplicates asked once
  ASSERT_TRUE(client.Upload(ma, read).ok());
  missing = client.Missing({mb.chunks[0].digest, mb.chunks[1].digest, mb.chunks[2].digest});
  ASSERT_TRUE(missing.ok());
  ASSERT_EQ(missing->size(), 1u);  // only b's own last chunk
  EXPECT_EQ((*missing)[0], mb.chunks[2].digest);
  ASSERT_TRUE(client.Upload(mb, read).ok());
  ASSERT_TRUE(client.PutImage("runtime/a", ma).ok());
  ASSERT_TRUE(client.PutImage("runtime/b", mb).ok());

  auto metrics = client.Metrics();
  ASSERT_TRUE(metrics.ok());
  EXPECT_EQ(MetricValue(*metrics, "kindling_chunkd_stored_chunks"), 5);  // 2 shared + 2 + 1
  EXPECT_EQ(MetricValue(*metrics, "kindling_chunkd_images"), 2);
  EXPECT_EQ(MetricValue(*metrics, "kindling_chunkd_chunk_puts_total"), 5);

  auto got = client.GetImage("runtime/b");
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(*got, mb);
  std::string rebuilt;
  for (const ChunkRef& c : got->chunks) {
    auto data = client.Fetch(c.digest);
    ASSERT_TRUE(data.ok()) << data.status().message();
    rebuilt += *data;
  }
  EXPECT_EQ(rebuilt, b);
  auto raw = Raw(server.port(), "GET", "/v1/images/runtime/a");
  EXPECT_EQ(raw.status, 200);
  EXPECT_EQ(raw.header("X-Kindling-Image-Id"), ma.Id().Hex());
  EXPECT_EQ(Raw(server.port(), "HEAD", "/v1/chunks/" + ma.chunks[0].digest.Hex()).status, 200);
  EXPECT_EQ(Raw(server.port(), "HEAD", "/v1/chunks/" + Sha256Of("none").Hex()).status, 404);

  auto list = Raw(server.port(), "GET", "/v1/images");
  ASSERT_EQ(list.status, 200);
  auto doc = json::parse(list.body);
  ASSERT_EQ(doc["images"].size(), 2u);
  EXPECT_EQ(doc["images"][0]["name"], "runtime/a");
  EXPECT_EQ(doc["images"][0]["id"], ma.Id().Hex());
  EXPECT_EQ(doc["images"][0]["size"], a.size());
  EXPECT_EQ(doc["images"][0]["chunks"], 4);
  auto names = client.ListImages();
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"runtime/a", "runtime/b"}));

  ASSERT_TRUE(client.DeleteImage("runtime/a").ok());
  EXPECT_EQ(client.GetImage("runtime/a").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(client.DeleteImage("runtime/a").code(), StatusCode::kNotFound);
  EXPECT_EQ(client.Fetch(Sha256Of("absent")).status().code(), StatusCode::kNotFound);
}

TEST(ChunkServer, StoresCompressibleChunksCompressed) {
  std::string zeros(kChunkSize, '\0');
  for (bool compress : {true, false}) {
    ChunkServerOptions o;
    o.compress = compress;
    TestServer server(o);
    ChunkClient client(FastFailing(server.url()));
    ASSERT_TRUE(client.Put(Sha256Of(zeros), zeros).ok());
    struct stat st;
    ASSERT_EQ(stat(server.ChunkPath(Sha256Of(zeros)).c_str(), &st), 0);
    if (compress)
      EXPECT_LT(st.st_size, 1000);
    else
      EXPECT_EQ(st.st_size, kChunkSize + kChunkHeaderSize);
    auto back = client.Fetch(Sha256Of(zeros));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, zeros);
    EXPECT_EQ(MetricValue(client.Metrics().value(), "kindling_chunkd_stored_bytes"), st.st_size);
  }
}

// A chunk damaged on the server's disk is never sent: the server discards it and answers 500
// (then 404); the client reports ChunkCorrupt (then ChunkNotFound) without retrying in vain.
TEST(ChunkServer, CorruptChunkOnServerIsNeverServed) {
  TestServer server;
  ChunkClient client(FastFailing(server.url()));
  std::string data = RandomChunk(4096, 9);
  Digest d = Sha256Of(data);
  ASSERT_TRUE(client.Put(d, data).ok());
  std::string file;
  ASSERT_TRUE(ReadFile(server.ChunkPath(d), &file).ok());
  file[kChunkHeaderSize + 100] ^= 0x20;
  ASSERT_TRUE(WriteFile(server.ChunkPath(d), file).ok());
  auto got = client.Fetch(d);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kCorrupt) << got.status().message();
  EXPECT_NE(got.status().message().find("chunk server " + server.url()), std::string::npos);
  EXPECT_EQ(client.Fetch(d).status().code(), StatusCode::kNotFound);
  // Raw HTTP: the same again, after a fresh corrupt copy.
  ASSERT_TRUE(client.Put(d, data).ok());
  ASSERT_TRUE(WriteFile(server.ChunkPath(d), file).ok());
  auto raw = Raw(server.port(), "GET", "/v1/chunks/" + d.Hex());
  EXPECT_EQ(raw.status, 500);
  EXPECT_EQ(raw.header("X-Kindling-Error-Code"), "ChunkCorrupt");
  EXPECT_EQ(raw.body.find(data.substr(0, 64)), std::string::npos);
  EXPECT_EQ(Raw(server.port(), "GET", "/v1/chunks/" + d.Hex()).status, 404);
  EXPECT_EQ(MetricValue(client.Metrics().value(), "kindling_chunkd_chunk_corrupt_total"), 2);
}

TEST(ChunkServer, PutImageWithMissingChunkIs409) {
  TestServer server;
  ChunkClient client(FastFailing(server.url()));
  std::string present = RandomChunk(kChunkSize, 4), absent = RandomChunk(10, 5);
  ASSERT_TRUE(client.Put(Sha256Of(present), present).ok());
  Manifest m;
  m.chunks = {{Sha256Of(present), kChunkSize}, {Sha256Of(absent), 10}};
  m.size = kChunkSize + 10;
  auto raw = Raw(server.port(), "PUT", "/v1/images/fn", m.Encode());
  EXPECT_EQ(raw.status, 409);
  EXPECT_EQ(json::parse(raw.body)["missing"], Sha256Of(absent).Hex());
  Status s = client.PutImage("fn", m);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find(Sha256Of(absent).Hex()), std::string::npos) << s.message();
  EXPECT_EQ(client.GetImage("fn").status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(client.Put(Sha256Of(absent), absent).ok());
  EXPECT_TRUE(client.PutImage("fn", m).ok());
}

// Requests a hostile or broken client might send get 4xx answers and change nothing.
TEST(ChunkServer, RejectsBadRequests) {
  TestServer server;
  int port = server.port();
  std::string data = "chunk";
  std::string hex = Sha256Of(data).Hex();
  EXPECT_EQ(Raw(port, "PUT", "/v1/chunks/" + Sha256Of("other").Hex(), data).status, 400);  // digest mismatch
  EXPECT_EQ(Raw(port, "PUT", "/v1/chunks/xyz", data).status, 400);
  EXPECT_EQ(Raw(port, "GET", "/v1/chunks/" + hex.substr(1)).status, 400);
  std::string big(kChunkSize + 1, 'x');
  EXPECT_EQ(Raw(port, "PUT", "/v1/chunks/" + Sha256Of(big).Hex(), big).status, 413);
  EXPECT_EQ(Raw(port, "POST", "/v1/chunks/missing", "not json").status, 400);
  EXPECT_EQ(Raw(port, "POST", "/v1/chunks/missing", R"({"digests":[1]})").status, 400);
  EXPECT_EQ(Raw(port, "POST", "/v1/chunks/missing", R"({"digests":["abc"]})").status, 400);
  std::string many = R"({"digests":[)";
  for (int i = 0; i <= 200000; ++i) many += (i ? ",\"" : "\"") + hex + "\"";
  many += "]}";
  EXPECT_EQ(Raw(port, "POST", "/v1/chunks/missing", many).status, 400);
  Manifest empty;
  for (std::string name : std::vector<std::string>{"a/../b", "a%20b", "..", std::string(201, 'n'), "a%00b", "a%2F..%2Fb"})
    EXPECT_EQ(Raw(port, "PUT", "/v1/images/" + name, empty.Encode()).status, 400) << name;
  EXPECT_EQ(Raw(port, "PUT", "/v1/images/", empty.Encode()).status, 405);  // the listing
  EXPECT_EQ(Raw(port, "PUT", "/v1/images/x", R"({"version":1})").status, 400);
  EXPECT_EQ(Raw(port, "PUT", "/v1/images/x", empty.Encode() + "garbage").status, 400);
  EXPECT_EQ(Raw(port, "PUT", "/v1/recordings/r", "{not json").status, 400);
  EXPECT_EQ(Raw(port, "PUT", "/v1/recordings/r", "[" + std::string(4u << 20, ' ') + "]").status, 413);
  EXPECT_EQ(Raw(port, "GET", "/v1/nothing").status, 404);
  EXPECT_EQ(Raw(port, "POST", "/v1/images/x").status, 405);
  auto images = Raw(port, "GET", "/v1/images");
  EXPECT_EQ(json::parse(images.body)["images"].size(), 0u);
  auto metrics = Raw(port, "GET", "/metrics");
  EXPECT_EQ(MetricValue(metrics.body, "kindling_chunkd_stored_chunks"), 0);
  EXPECT_NE(metrics.body.find(R"(kindling_chunkd_requests_total{route="chunk_put",status="400"} 2)"), std::string::npos)
      << metrics.body;
}

TEST(ChunkServer, Recordings) {
  TestServer server;
  ChunkClient client(FastFailing(server.url()));
  EXPECT_EQ(client.GetRecording("python3.11/fn1").status().code(), StatusCode::kNotFound);
  std::string doc = R"({"chunks":[[0,1],[3,2]]})";
  ASSERT_TRUE(client.PutRecording("python3.11/fn1", doc).ok());
  auto got = client.GetRecording("python3.11/fn1");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, doc);
  ASSERT_TRUE(client.PutRecording("python3.11/fn1", "[]").ok());
  EXPECT_EQ(client.GetRecording("python3.11/fn1").value(), "[]");
  EXPECT_EQ(client.PutRecording("r", "nope").code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(client.DeleteRecording("python3.11/fn1").ok());
  EXPECT_EQ(client.GetRecording("python3.11/fn1").status().code(), StatusCode::kNotFound);
}

// GC deletes exactly the chunks no image references whose grace period has passed; a chunk an
// upload just checked (Missing) or put survives until its image is put.
TEST(ChunkServer, GcDeletesOnlyUnreferencedChunksPastGrace) {
  ChunkServerOptions o;
  o.gc_grace = std::chrono::seconds(600);
  TestServer server(o);
  ChunkClient client(FastFailing(server.url()));
  std::string used = RandomChunk(1000, 1), old_orphan = RandomChunk(1000, 2), new_orphan = RandomChunk(1000, 3),
              checked = RandomChunk(1000, 4);
  for (const auto* s : {&used, &old_orphan, &new_orphan, &checked}) ASSERT_TRUE(client.Put(Sha256Of(*s), *s).ok());
  Manifest m;
  m.chunks = {{Sha256Of(used), 1000}};
  m.size = 1000;
  ASSERT_TRUE(client.PutImage("img", m).ok());
  for (const auto* s : {&used, &old_orphan, &checked}) Age(server.ChunkPath(Sha256Of(*s)), 3600);
  // An uploader asks which chunks are missing: the present one it relies on is kept.
  ASSERT_TRUE(client.Missing({Sha256Of(checked)}).ok());

  auto gc = client.Collect();
  ASSERT_TRUE(gc.ok()) << gc.status().message();
  auto doc = json::parse(*gc);
  EXPECT_EQ(doc["deleted"], 1);
  EXPECT_EQ(doc["bytes_freed"], 1000 + kChunkHeaderSize);
  EXPECT_EQ(doc["kept"], 3);
  EXPECT_FALSE(client.Fetch(Sha256Of(old_orphan)).ok());
  for (const auto* s : {&used, &new_orphan, &checked}) EXPECT_TRUE(client.Fetch(Sha256Of(*s)).ok());

  // Once its image is gone (and its grace has passed) the used chunk goes too.
  ASSERT_TRUE(client.DeleteImage("img").ok());
  doc = json::parse(client.Collect().value());
  EXPECT_EQ(doc["deleted"], 1);
  EXPECT_EQ(client.Fetch(Sha256Of(used)).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(client.Fetch(Sha256Of(new_orphan)).ok());
}

// Nothing listens: the client tries `attempts` times with backoff, then fails clearly, fast.
TEST(ChunkClient, ServerDownBoundedRetriesThenClearError) {
  std::string url = "http://127.0.0.1:" + std::to_string(UnusedPort());
  ChunkClientOptions o = FastFailing(url);
  o.attempts = 3;
  o.retry_backoff = std::chrono::milliseconds(40);
  ChunkClient client(o);
  auto start = Clock::now();
  auto got = client.Fetch(Sha256Of("x"));
  auto elapsed = Clock::now() - start;
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(got.status().message().find("chunk server " + url + ": GET /v1/chunks/"), std::string::npos)
      << got.status().message();
  EXPECT_NE(got.status().message().find("after 3 attempts"), std::string::npos) << got.status().message();
  EXPECT_GE(elapsed, std::chrono::milliseconds(120));  // 40 + 80 ms of backoff
  EXPECT_LT(elapsed, std::chrono::milliseconds(1500));
  EXPECT_EQ(client.PutImage("x", Manifest{}).code(), StatusCode::kUnavailable);
}

// A slow server: a request timeout shorter than its latency fails within attempts x timeout; a
// longer one succeeds. Other requests are not held up by a delayed chunk GET.
TEST(ChunkClient, SlowServerTimesOutBoundedAndDoesNotBlockOthers) {
  ChunkServerOptions so;
  so.simulated_latency = std::chrono::milliseconds(300);
  TestServer server(so);
  std::string data = RandomChunk(1000, 6);
  ChunkClient setup(FastFailing(server.url()));
  ASSERT_TRUE(setup.Put(Sha256Of(data), data).ok());

  ChunkClientOptions o = FastFailing(server.url());
  o.request_timeout = std::chrono::milliseconds(100);
  o.attempts = 2;
  ChunkClient impatient(o);
  auto start = Clock::now();
  auto got = impatient.Fetch(Sha256Of(data));
  auto elapsed = Clock::now() - start;
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(got.status().message().find("no answer within 100 ms"), std::string::npos) << got.status().message();
  EXPECT_LT(elapsed, std::chrono::milliseconds(290));  // 2 x 100 ms + backoff, not the server's 300

  // While a slow GET is pending, other requests are answered at once.
  ChunkClient patient(FastFailing(server.url()));
  auto slow = std::async(std::launch::async, [&] { return patient.Fetch(Sha256Of(data)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  start = Clock::now();
  EXPECT_TRUE(setup.Metrics().ok());
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(150));
  auto slow_result = slow.get();
  ASSERT_TRUE(slow_result.ok()) << slow_result.status().message();
  EXPECT_EQ(*slow_result, data);
  auto metrics = setup.Metrics().value();
  EXPECT_GE(MetricValue(metrics, "kindling_chunkd_chunk_get_duration_ms_sum"), 300);
  EXPECT_NE(metrics.find("kindling_chunkd_chunk_get_duration_ms_bucket{le=\"1000\"}"), std::string::npos);
}

TEST(ChunkClient, RejectsBadUrlAndNamesWithoutARequest) {
  ChunkClient bad(ChunkClientOptions{.url = "https://example.com"});
  EXPECT_FALSE(bad.Fetch(Sha256Of("x")).ok());
  ChunkClient client(ChunkClientOptions{.url = "http://127.0.0.1:1"});
  EXPECT_EQ(client.GetImage("../etc").status().code(), StatusCode::kInvalidArgument);
}

#ifdef KINDLING_CHUNKD_PATH
// The binary: refuses a non-loopback address without --allow-remote; serves on loopback and
// exits 0 on SIGTERM.
TEST(KindlingChunkd, LoopbackOnlyUnlessAllowedAndStopsOnSigterm) {
  std::string dir = TempDir("chunkd-bin");
  std::string cmd = std::string(KINDLING_CHUNKD_PATH) + " --listen 0.0.0.0:0 --data-dir " + dir + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char line[1024] = {0};
  std::string out;
  while (fgets(line, sizeof line, p)) out += line;
  EXPECT_NE(pclose(p), 0);
  EXPECT_NE(out.find("no authentication"), std::string::npos) << out;

  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 2);
    execl(KINDLING_CHUNKD_PATH, "kindling-chunkd", "--listen", "127.0.0.1:0", "--data-dir", dir.c_str(), nullptr);
    _exit(127);
  }
  close(fds[1]);
  FILE* err = fdopen(fds[0], "r");
  ASSERT_TRUE(fgets(line, sizeof line, err));
  std::string banner = line;
  size_t at = banner.find("http://");
  ASSERT_NE(at, std::string::npos) << banner;
  std::string url = banner.substr(at, banner.find(' ', at) - at);
  {
    ChunkClient client(FastFailing(url));
    Status put = client.Put(Sha256Of("bin"), "bin");
    ASSERT_TRUE(put.ok()) << put.message() << " " << url;
    EXPECT_EQ(client.Fetch(Sha256Of("bin")).value(), "bin");
  }
  kill(pid, SIGTERM);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  fclose(err);
  RemoveTree(dir);
}
#endif

}  // namespace kindling::chunks

namespace kindling::chunks {
namespace {

// Regression: a client whose pool held several connections the server had closed while idle
// failed with "end of stream (after 3 attempts)", because each retry took another dead pooled
// connection.
TEST(ChunkClient, PoolOfConnectionsClosedByTheServerIsNotFatal) {
  ChunkServerOptions so;
  so.limits.idle_timeout = std::chrono::milliseconds(200);
  testing::TestServer server(so);
  std::string data = testing::RandomChunk(1000, 7);
  ChunkClient client(ChunkClientOptions{server.url()});
  ASSERT_TRUE(client.Put(Sha256Of(data), data).ok());
  std::vector<std::future<Result<std::string>>> burst;  // fills the pool with 12 connections
  for (int i = 0; i < 12; ++i)
    burst.push_back(std::async(std::launch::async, [&] { return client.Fetch(Sha256Of(data)); }));
  for (auto& f : burst) ASSERT_TRUE(f.get().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the server closes them all
  for (int i = 0; i < 3; ++i) {
    auto got = client.Fetch(Sha256Of(data));
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(*got, data);
  }
}

}  // namespace
}  // namespace kindling::chunks
