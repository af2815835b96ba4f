// The worker's chunk cache, fetching from a real chunk server on loopback.
#include "chunks/chunk_cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

#include "chunks/chunk_client.h"
#include "chunks/test_server.h"

namespace kindling::chunks {
namespace {

using namespace testing;
using Clock = std::chrono::steady_clock;

// The real client, instrumented: counts fetches, records their start order and the most running
// at once.
class CountingSource : public ChunkSource {
 public:
  explicit CountingSource(ChunkClientOptions o) : client_(std::move(o)) {}
  Result<std::string> Fetch(const Digest& d) override {
    {
      std::lock_guard lock(mu_);
      order.push_back(d);
      running++;
      max_running = std::max(max_running, running);
    }
    fetches++;
    auto r = client_.Fetch(d);
    std::lock_guard lock(mu_);
    running--;
    return r;
  }
  std::vector<Digest> Order() {
    std::lock_guard lock(mu_);
    return order;
  }
  int MaxRunning() {
    std::lock_guard lock(mu_);
    return max_running;
  }
  std::atomic<int> fetches{0};

 private:
  ChunkClient client_;
  std::mutex mu_;
  std::vector<Digest> order;
  int running = 0, max_running = 0;
};

ChunkClientOptions ClientFor(const TestServer& server) {
  ChunkClientOptions o;
  o.url = server.url();
  o.attempts = 2;
  o.retry_backoff = std::chrono::milliseconds(10);
  o.request_timeout = std::chrono::milliseconds(3000);
  return o;
}

class ChunkCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = TempDir("cache"); }
  void TearDown() override { RemoveTree(dir_); }

  // Puts n random chunks of `size` bytes on the server; returns their refs.
  std::vector<ChunkRef> Upload(TestServer& server, int n, uint32_t size, uint32_t seed = 100) {
    ChunkClient client(ClientFor(server));
    std::vector<ChunkRef> refs;
    for (int i = 0; i < n; ++i) {
      std::string data = RandomChunk(size, seed + i);
      EXPECT_TRUE(client.Put(Sha256Of(data), data).ok());
      refs.push_back({Sha256Of(data), size});
      data_[Sha256Of(data)] = data;
    }
    return refs;
  }
  std::unique_ptr<ChunkCache> Open(std::shared_ptr<ChunkSource> source, ChunkCacheOptions o = {}) {
    o.dir = dir_;
    auto cache = ChunkCache::Open(o, std::move(source));
    EXPECT_TRUE(cache.ok()) << cache.status().message();
    return cache.ok() ? std::move(cache).value() : nullptr;
  }
  std::string FileOf(const Digest& d) { return dir_ + "/" + d.Hex().substr(0, 2) + "/" + d.Hex(); }

  std::string dir_;
  std::map<Digest, std::string> data_;
};

}  // namespace

TEST_F(ChunkCacheTest, MemoryThenDiskThenRemote) {
  TestServer server;
  auto refs = Upload(server, 2, 1000);
  auto source = std::make_shared<CountingSource>(ClientFor(server));
  {
    auto cache = Open(source);
    auto a = cache->Get(refs[0]);
    ASSERT_TRUE(a.ok()) << a.status().message();
    EXPECT_EQ(**a, data_[refs[0].digest]);
    auto again = cache->Get(refs[0]);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->get(), a->get());  // the same bytes from memory
    EXPECT_TRUE(cache->Contains(refs[0].digest));
    EXPECT_FALSE(cache->Contains(refs[1].digest));
    ChunkCacheStats s = cache->Stats();
    EXPECT_EQ(s.misses, 1u);
    EXPECT_EQ(s.memory_hits, 1u);
    EXPECT_EQ(s.fetches, 1u);
    EXPECT_EQ(s.bytes_fetched, 1000u);
    EXPECT_EQ(s.bytes_on_disk, 1000 + kChunkHeaderSize);
    EXPECT_GT(s.fetch_micros_total, 0u);
  }
  // A new cache on the same directory finds the chunk on disk.
  auto cache = Open(source);
  EXPECT_TRUE(cache->Contains(refs[0].digest));
  auto a = cache->Get(refs[0]);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(**a, data_[refs[0].digest]);
  EXPECT_EQ(cache->Stats().disk_hits, 1u);
  EXPECT_EQ(source->fetches, 1);
  // A ref whose size lies about the chunk is an error, not a short or long read.
  auto wrong = cache->Get({refs[1].digest, 999});
  EXPECT_EQ(wrong.status().code(), StatusCode::kCorrupt);
  std::string text = cache->MetricsText();
  for (const char* name : {"kindling_chunk_cache_memory_hits_total 0", "kindling_chunk_cache_disk_hits_total 1",
                           "kindling_chunk_cache_misses_total", "kindling_chunk_cache_bytes_fetched_total",
                           "kindling_chunk_cache_fetch_micros_total", "kindling_chunk_cache_evictions_total",
                           "kindling_chunk_cache_bytes_on_disk", "kindling_chunk_cache_capacity_bytes 2147483648"})
    EXPECT_NE(text.find(name), std::string::npos) << name << "\n" << text;
}

// A cache file damaged on disk is detected on read, discarded and fetched again.
TEST_F(ChunkCacheTest, CorruptCacheFileIsDiscardedAndRefetched) {
  TestServer server;
  auto refs = Upload(server, 1, kChunkSize);
  auto source = std::make_shared<CountingSource>(ClientFor(server));
  auto cache = Open(source, {.memory_bytes = 0});
  ASSERT_TRUE(cache->Get(refs[0]).ok());
  std::string file;
  ASSERT_TRUE(ReadFile(FileOf(refs[0].digest), &file).ok());
  file[file.size() / 2] ^= 0x01;
  ASSERT_TRUE(WriteFile(FileOf(refs[0].digest), file).ok());
  auto got = cache->Get(refs[0]);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(**got, data_[refs[0].digest]);
  ChunkCacheStats s = cache->Stats();
  EXPECT_EQ(s.corrupt_discarded, 1u);
  EXPECT_EQ(s.fetches, 2u);
  EXPECT_EQ(s.bytes_on_disk, kChunkSize + kChunkHeaderSize);
  // The refetched copy on disk is good.
  got = cache->Get(refs[0]);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(cache->Stats().disk_hits, 1u);
}

TEST_F(ChunkCacheTest, ConcurrentGetsOfOneDigestShareOneFetch) {
  ChunkServerOptions so;
  so.simulated_latency = std::chrono::milliseconds(100);
  TestServer server(so);
  auto refs = Upload(server, 1, 5000);
  auto source = std::make_shared<CountingSource>(ClientFor(server));
  auto cache = Open(source);
  std::vector<std::future<bool>> readers;
  for (int i = 0; i < 8; ++i)
    readers.push_back(std::async(std::launch::async, [&] {
      auto r = cache->Get(refs[0]);
      return r.ok() && **r == data_[refs[0].digest];
    }));
  for (auto& r : readers) EXPECT_TRUE(r.get());
  EXPECT_EQ(source->fetches, 1);
  EXPECT_EQ(cache->Stats().fetches, 1u);
}

// Capacity for three chunk files: the least recently used goes first, but never a chunk of a
// pinned manifest or one whose Get() handle is still held; with only those left the cache goes
// over capacity rather than failing, and says so.
TEST_F(ChunkCacheTest, FullCacheEvictsLruButNeverPinnedOrHeldChunks) {
  TestServer server;
  auto c = Upload(server, 6, 10000);
  const uint64_t file = 10000 + kChunkHeaderSize;
  auto source = std::make_shared<CountingSource>(ClientFor(server));
  auto cache = Open(source, {.capacity_bytes = 3 * file, .memory_bytes = 0});
  ASSERT_TRUE(cache->Get(c[0]).ok());
  ASSERT_TRUE(cache->Get(c[1]).ok());
  ASSERT_TRUE(cache->Get(c[2]).ok());
  ASSERT_TRUE(cache->Get(c[0]).ok());  // c1 is now the least recently used
  ASSERT_TRUE(cache->Get(c[3]).ok());
  EXPECT_FALSE(cache->Contains(c[1].digest));
  for (int i : {0, 2, 3}) EXPECT_TRUE(cache->Contains(c[i].digest)) << i;
  EXPECT_EQ(cache->Stats().evictions, 1u);
  EXPECT_EQ(cache->Stats().bytes_on_disk, 3 * file);

  // LRU order now: c2 (oldest), c0, c3. Pin c2, hold c0: c3 is the one to go.
  Manifest pinned;
  pinned.chunks = {c[2]};
  pinned.size = c[2].size;
  cache->Pin(pinned);
  auto held = cache->Get(c[0]);  // also makes c0 the most recent; still held below
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(cache->Get(c[4]).ok());
  EXPECT_TRUE(cache->Contains(c[2].digest));
  EXPECT_TRUE(cache->Contains(c[0].digest));
  EXPECT_FALSE(cache->Contains(c[3].digest));
  EXPECT_TRUE(cache->Contains(c[4].digest));

  // Hold c4 too: every chunk is pinned or held, so c5 pushes the cache over capacity.
  auto held4 = cache->Get(c[4]);
  ASSERT_TRUE(held4.ok());
  auto five = cache->Get(c[5]);
  ASSERT_TRUE(five.ok());
  EXPECT_EQ(**five, data_[c[5].digest]);
  ChunkCacheStats s = cache->Stats();
  EXPECT_EQ(s.bytes_on_disk, 4 * file);
  EXPECT_GE(s.over_capacity, 1u);
  for (int i : {0, 2, 4, 5}) EXPECT_TRUE(cache->Contains(c[i].digest)) << i;

  // Releasing handles and pins lets the next eviction get back under capacity.
  held = Status::Error("released");
  held4 = Status::Error("released");
  five = Status::Error("released");
  cache->Unpin(pinned);
  EXPECT_EQ(cache->Stats().bytes_on_disk, 3 * file);
  EXPECT_FALSE(cache->Contains(c[2].digest));  // the least recently used of the four
}

// Prefetches run in the order given with at most fetch_parallelism at once; a Get() jumps ahead
// of queued prefetches.
TEST_F(ChunkCacheTest, PrefetchOrderParallelismAndGetJumpsTheQueue) {
  ChunkServerOptions so;
  so.simulated_latency = std::chrono::milliseconds(30);
  TestServer server(so);
  auto refs = Upload(server, 10, 2000);
  {
    auto source = std::make_shared<CountingSource>(ClientFor(server));
    auto cache = Open(source, {.fetch_parallelism = 3});
    std::vector<ChunkRef> first(refs.begin(), refs.begin() + 8);
    cache->Prefetch(first);
    cache->Prefetch(first);  // queued or in flight already: nothing added
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (cache->Stats().prefetched < 8 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(cache->Stats().prefetched, 8u);
    EXPECT_EQ(source->fetches, 8);
    EXPECT_EQ(source->MaxRunning(), 3);
    // Started in order, give or take the threads racing to record their start.
    auto order = source->Order();
    ASSERT_EQ(order.size(), 8u);
    for (size_t i = 0; i < order.size(); ++i) {
      size_t pos = std::find(order.begin(), order.end(), first[i].digest) - order.begin();
      EXPECT_LT(pos > i ? pos - i : i - pos, 3u) << i;
    }
    cache->Prefetch(first);  // all cached: nothing to do
    EXPECT_EQ(cache->Stats().fetches_queued, 0u);
    for (const ChunkRef& r : first) EXPECT_TRUE(cache->Contains(r.digest));
    ASSERT_TRUE(cache->Get(first[7]).ok());
    EXPECT_EQ(source->fetches, 8);
  }
  RemoveTree(dir_);
  {
    auto source = std::make_shared<CountingSource>(ClientFor(server));
    auto cache = Open(source, {.fetch_parallelism = 1});
    cache->Prefetch(std::vector<ChunkRef>(refs.begin(), refs.begin() + 9));
    auto start = Clock::now();
    auto last = cache->Get(refs[9]);  // not prefetched at all
    ASSERT_TRUE(last.ok());
    auto queued = cache->Get(refs[8]);  // queued last among the prefetches: promoted
    ASSERT_TRUE(queued.ok());
    auto elapsed = Clock::now() - start;
    auto order = source->Order();
    size_t pos9 = std::find(order.begin(), order.end(), refs[9].digest) - order.begin();
    size_t pos8 = std::find(order.begin(), order.end(), refs[8].digest) - order.begin();
    EXPECT_LE(pos9, 1u);  // after at most the prefetch already running
    EXPECT_LE(pos8, 2u);
    EXPECT_LT(elapsed, std::chrono::milliseconds(9 * 30));  // did not wait for the whole queue
    EXPECT_EQ(cache->Stats().misses, 2u);
  }
}

TEST_F(ChunkCacheTest, FetchAllDownloadsEveryMissingChunkOnce) {
  TestServer server;
  auto refs = Upload(server, 5, 3000);
  Manifest m;
  m.chunks = {refs[0], refs[1], refs[2], refs[1], refs[3], refs[4]};  // a repeated chunk
  auto source = std::make_shared<CountingSource>(ClientFor(server));
  auto cache = Open(source, {.fetch_parallelism = 2});
  ASSERT_TRUE(cache->Get(refs[0]).ok());
  Status s = cache->FetchAll(m);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(source->fetches, 5);
  EXPECT_LE(source->MaxRunning(), 2);
  for (const ChunkRef& r : refs) EXPECT_TRUE(cache->Contains(r.digest));
  // A manifest with a chunk the server lacks: FetchAll names it.
  Manifest bad = m;
  bad.chunks.push_back({Sha256Of("not on the server"), 17});
  s = cache->FetchAll(bad);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_NE(s.message().find(Sha256Of("not on the server").Hex()), std::string::npos) << s.message();
}

// The server is down: a Get fails with the client's clear error after its bounded retries, in
// bounded time, and nothing is cached.
TEST_F(ChunkCacheTest, RemoteDownFailsClearlyInBoundedTime) {
  auto server = std::make_unique<TestServer>();
  auto refs = Upload(*server, 1, 1000);
  ChunkClientOptions o = ClientFor(*server);
  o.attempts = 3;
  o.retry_backoff = std::chrono::milliseconds(20);
  server->Stop();  // nothing listens on its port now
  auto source = std::make_shared<CountingSource>(o);
  auto cache = Open(source);
  auto start = Clock::now();
  auto got = cache->Get(refs[0]);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(2));
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(got.status().message().find("chunk server http://127.0.0.1:"), std::string::npos);
  EXPECT_EQ(cache->Stats().fetch_errors, 1u);
  EXPECT_FALSE(cache->Contains(refs[0].digest));
}

// Closing the cache with prefetches queued fails them and returns promptly.
TEST_F(ChunkCacheTest, CloseWithQueuedPrefetches) {
  ChunkServerOptions so;
  so.simulated_latency = std::chrono::milliseconds(50);
  TestServer server(so);
  auto refs = Upload(server, 6, 1000);
  auto source = std::make_shared<CountingSource>(ClientFor(server));
  auto cache = Open(source, {.fetch_parallelism = 1});
  cache->Prefetch(refs);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  auto start = Clock::now();
  cache.reset();
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(300));  // one fetch in flight, not six
  EXPECT_LE(source->fetches, 2);
}

}  // namespace kindling::chunks
