#include "chunks/chunk_cache.h"

#include <algorithm>
#include <chrono>
#include <unordered_set>

namespace kindling::chunks {

Result<std::unique_ptr<ChunkCache>> ChunkCache::Open(ChunkCacheOptions options, std::shared_ptr<ChunkSource> remote) {
  if (options.dir.empty()) return Status::Error("chunk cache: no directory");
  if (!remote) return Status::Error("chunk cache: no chunk source");
  ChunkStoreOptions store_options;
  store_options.compress = options.compress;
  store_options.durable = false;  // every read is verified: a chunk a crash damaged is refetched
  auto store = ChunkStore::Open(options.dir, store_options);
  if (!store.ok()) return store.status();
  std::unique_ptr<ChunkCache> cache(new ChunkCache(std::move(options), std::move(remote), std::move(store).value()));
  // Oldest first, so the most recently used ends up at the front of the LRU.
  std::vector<std::pair<double, Digest>> by_age;
  for (const Digest& d : cache->store_->List()) {
    auto age = cache->store_->AgeSeconds(d);
    if (age.ok()) by_age.emplace_back(*age, d);
  }
  std::sort(by_age.begin(), by_age.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  {
    std::lock_guard lock(cache->mu_);
    for (const auto& [age, d] : by_age) {
      auto bytes = cache->store_->FileBytes(d);
      if (bytes.ok()) cache->AddDisk(d, *bytes);
    }
    cache->EvictLocked(nullptr);
  }
  return cache;
}

ChunkCache::ChunkCache(ChunkCacheOptions options, std::shared_ptr<ChunkSource> remote, std::unique_ptr<ChunkStore> store)
    : options_(std::move(options)), remote_(std::move(remote)), store_(std::move(store)) {
  uint32_t n = std::max<uint32_t>(1, options_.fetch_parallelism);
  for (uint32_t i = 0; i < n; ++i) threads_.emplace_back([this] { FetchLoop(); });
}

ChunkCache::~ChunkCache() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (auto* q : {&urgent_, &queued_}) {
      for (auto& f : *q) {
        if (f->started || f->done) continue;
        f->done = true;
        f->status = Status::Error("chunk cache closed before chunk " + f->ref.digest.Hex() + " was fetched");
        in_flight_.erase(f->ref.digest);
      }
      q->clear();
    }
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  for (auto& t : threads_) t.join();
}

Status ChunkCache::WrongSize(const ChunkRef& ref, size_t got) const {
  return Status::Corrupt("chunk " + ref.digest.Hex() + " is " + std::to_string(got) +
                                          " bytes but the manifest says " + std::to_string(ref.size));
}

void ChunkCache::RememberHandle(const Digest& d, const std::shared_ptr<const std::string>& data) {
  handles_[d] = data;
  if (handles_.size() >= handles_prune_at_) {
    for (auto it = handles_.begin(); it != handles_.end();)
      it = it->second.expired() ? handles_.erase(it) : std::next(it);
    handles_prune_at_ = std::max<size_t>(1024, handles_.size() * 2);
  }
}

bool ChunkCache::HandleAlive(const Digest& d) {
  auto h = handles_.find(d);
  if (h == handles_.end()) return false;
  auto sp = h->second.lock();
  if (!sp) {
    handles_.erase(h);
    return false;
  }
  long others = sp.use_count() - 1;  // not counting sp
  auto m = memory_.find(d);
  if (m != memory_.end() && m->second.data == sp) others--;  // the memory tier's own reference
  return others > 0;
}

void ChunkCache::InsertMemory(const Digest& d, std::shared_ptr<const std::string> data) {
  if (data->size() > options_.memory_bytes) return;
  auto it = memory_.find(d);
  if (it != memory_.end()) {
    memory_lru_.splice(memory_lru_.begin(), memory_lru_, it->second.lru);
    return;
  }
  memory_lru_.push_front(d);
  memory_bytes_ += data->size();
  memory_.emplace(d, MemoryEntry{std::move(data), memory_lru_.begin()});
  while (memory_bytes_ > options_.memory_bytes && !memory_lru_.empty()) EraseMemory(memory_lru_.back());
}

void ChunkCache::EraseMemory(const Digest& d) {
  auto it = memory_.find(d);
  if (it == memory_.end()) return;
  memory_bytes_ -= it->second.data->size();
  memory_lru_.erase(it->second.lru);
  memory_.erase(it);
}

void ChunkCache::AddDisk(const Digest& d, uint64_t bytes) {
  if (disk_.count(d)) return;
  disk_lru_.push_front(d);
  disk_.emplace(d, DiskEntry{bytes, disk_lru_.begin(), 0});
  disk_bytes_ += bytes;
}

void ChunkCache::EraseDisk(const Digest& d) {
  auto it = disk_.find(d);
  if (it == disk_.end()) return;
  disk_bytes_ -= it->second.bytes;
  disk_lru_.erase(it->second.lru);
  disk_.erase(it);
}

void ChunkCache::EvictLocked(const Digest* protect) {
  if (disk_bytes_ <= options_.capacity_bytes) return;
  // One pass from the least recently used end; entries in use are stepped over.
  for (auto it = disk_lru_.end(); it != disk_lru_.begin() && disk_bytes_ > options_.capacity_bytes;) {
    --it;
    const Digest d = *it;
    if ((protect && d == *protect) || pins_.count(d) || disk_.at(d).readers > 0 || HandleAlive(d)) continue;
    // The file is deleted under the lock so that no Get can find an index entry without a file
    // (a reader that opened it before keeps reading the unlinked inode).
    if (!store_->Remove(d).ok()) continue;
    auto next = std::next(it);
    EraseDisk(d);  // erases *it
    EraseMemory(d);
    stats_.evictions++;
    it = next;
  }
  if (disk_bytes_ > options_.capacity_bytes) stats_.over_capacity++;
}

std::shared_ptr<ChunkCache::Fetch> ChunkCache::StartFetchLocked(const ChunkRef& ref, Fetch::Kind kind) {
  auto it = in_flight_.find(ref.digest);
  if (it != in_flight_.end()) {
    auto f = it->second;
    if (kind == Fetch::Kind::kGet && !f->started && f->kind != Fetch::Kind::kGet) {
      urgent_.push_back(f);  // a Get now waits for it: jump the queue (the later copy is skipped)
      work_cv_.notify_one();
    }
    return f;
  }
  auto f = std::make_shared<Fetch>();
  f->ref = ref;
  f->kind = kind;
  in_flight_.emplace(ref.digest, f);
  (kind == Fetch::Kind::kGet ? urgent_ : queued_).push_back(f);
  work_cv_.notify_one();
  return f;
}

void ChunkCache::FetchLoop() {
  std::unique_lock lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [this] { return stopping_ || !urgent_.empty() || !queued_.empty(); });
    if (stopping_) return;
    auto& q = !urgent_.empty() ? urgent_ : queued_;
    std::shared_ptr<Fetch> f = std::move(q.front());
    q.pop_front();
    if (f->started || f->done) continue;  // the other queue's copy of a promoted prefetch
    f->started = true;
    running_++;
    lock.unlock();

    const Digest d = f->ref.digest;
    auto start = std::chrono::steady_clock::now();
    Result<std::string> got = remote_->Fetch(d);
    uint64_t micros = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count());
    Status status = got.status();
    std::shared_ptr<const std::string> data;
    uint64_t file_bytes = 0;
    bool stored = false;
    if (got.ok() && got->size() != f->ref.size) status = WrongSize(f->ref, got->size());
    if (status.ok()) {
      data = std::make_shared<const std::string>(std::move(got).value());
      // Source bytes are verified by the source (ChunkSource contract); a store failure (disk
      // full) still serves the bytes from memory.
      if (store_->PutVerified(d, *data).ok()) {
        auto bytes = store_->FileBytes(d);
        stored = bytes.ok();
        file_bytes = bytes.ok() ? *bytes : 0;
      }
    }

    lock.lock();
    running_--;
    stats_.fetch_micros_total += micros;
    stats_.fetch_micros_max = std::max(stats_.fetch_micros_max, micros);
    if (status.ok()) {
      stats_.fetches++;
      stats_.bytes_fetched += data->size();
      if (f->kind == Fetch::Kind::kPrefetch) stats_.prefetched++;
      if (stored) {
        AddDisk(d, file_bytes);
        EvictLocked(&d);
      }
      InsertMemory(d, data);
      f->data = std::move(data);
    } else {
      stats_.fetch_errors++;
      f->status = status;
    }
    f->done = true;
    in_flight_.erase(d);
    done_cv_.notify_all();
  }
}

Result<std::shared_ptr<const std::string>> ChunkCache::Get(const ChunkRef& ref) {
  const Digest& d = ref.digest;
  if (ref.size == 0 || ref.size > kChunkSize)
    return Status::Error("chunk " + d.Hex() + " has an invalid size " + std::to_string(ref.size));
  std::unique_lock lock(mu_);
  if (auto m = memory_.find(d); m != memory_.end()) {
    stats_.memory_hits++;
    memory_lru_.splice(memory_lru_.begin(), memory_lru_, m->second.lru);
    if (auto e = disk_.find(d); e != disk_.end()) disk_lru_.splice(disk_lru_.begin(), disk_lru_, e->second.lru);
    auto data = m->second.data;
    if (data->size() != ref.size) return WrongSize(ref, data->size());
    RememberHandle(d, data);
    return data;
  }
  if (auto e = disk_.find(d); e != disk_.end()) {
    e->second.readers++;
    lock.unlock();
    Result<std::string> got = store_->Get(d);
    if (got.ok()) store_->Touch(d);  // keeps the LRU order across restarts
    lock.lock();
    e = disk_.find(d);  // the entry stays while readers > 0 (only a corrupt read erases it)
    if (e != disk_.end()) e->second.readers--;
    if (got.ok()) {
      if (e != disk_.end()) disk_lru_.splice(disk_lru_.begin(), disk_lru_, e->second.lru);
      stats_.disk_hits++;
      if (got->size() != ref.size) return WrongSize(ref, got->size());
      auto data = std::make_shared<const std::string>(std::move(got).value());
      InsertMemory(d, data);
      RememberHandle(d, data);
      return data;
    }
    if (got.status().IsCorrupt()) {
      stats_.corrupt_discarded++;
      EraseDisk(d);  // the store deleted the file; refetch below
    } else if (got.status().IsNotFound()) {
      EraseDisk(d);  // removed behind our back; refetch below
    } else {
      return got.status();
    }
  }
  if (stopping_) return Status::Error("chunk cache is closing");
  stats_.misses++;
  std::shared_ptr<Fetch> f = StartFetchLocked(ref, Fetch::Kind::kGet);
  done_cv_.wait(lock, [&] { return f->done; });
  if (!f->status.ok()) return f->status;
  if (f->data->size() != ref.size) return WrongSize(ref, f->data->size());
  RememberHandle(d, f->data);
  return f->data;
}

void ChunkCache::Prefetch(std::vector<ChunkRef> refs) {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  for (const ChunkRef& ref : refs) {
    if (ref.size == 0 || ref.size > kChunkSize) continue;
    if (memory_.count(ref.digest) || disk_.count(ref.digest) || in_flight_.count(ref.digest)) continue;
    StartFetchLocked(ref, Fetch::Kind::kPrefetch);
  }
}

void ChunkCache::Pin(const Manifest& m) {
  std::lock_guard lock(mu_);
  for (const ChunkRef& c : m.chunks) pins_[c.digest]++;
}

void ChunkCache::Unpin(const Manifest& m) {
  std::lock_guard lock(mu_);
  for (const ChunkRef& c : m.chunks) {
    auto it = pins_.find(c.digest);
    if (it != pins_.end() && --it->second <= 0) pins_.erase(it);
  }
  EvictLocked(nullptr);  // what the pins held over capacity may go now
}

bool ChunkCache::Contains(const Digest& digest) {
  std::lock_guard lock(mu_);
  return memory_.count(digest) || disk_.count(digest);
}

Status ChunkCache::FetchAll(const Manifest& m) {
  std::unique_lock lock(mu_);
  if (stopping_) return Status::Error("chunk cache is closing");
  std::vector<std::shared_ptr<Fetch>> waits;
  std::unordered_set<Digest, DigestHash> seen;
  for (const ChunkRef& ref : m.chunks) {
    if (!seen.insert(ref.digest).second) continue;
    if (ref.size == 0 || ref.size > kChunkSize)
      return Status::Error("chunk " + ref.digest.Hex() + " has an invalid size " + std::to_string(ref.size));
    if (memory_.count(ref.digest) || disk_.count(ref.digest)) continue;
    waits.push_back(StartFetchLocked(ref, Fetch::Kind::kFetchAll));
  }
  Status first;
  for (const auto& f : waits) {
    done_cv_.wait(lock, [&] { return f->done; });
    if (!f->status.ok() && first.ok()) first = f->status;
  }
  return first;
}

ChunkCacheStats ChunkCache::Stats() {
  std::lock_guard lock(mu_);
  ChunkCacheStats s = stats_;
  s.bytes_on_disk = disk_bytes_;
  s.chunks_on_disk = disk_.size();
  s.capacity_bytes = options_.capacity_bytes;
  s.fetches_in_flight = running_;
  s.fetches_queued = 0;
  for (const auto* q : {&urgent_, &queued_})
    for (const auto& f : *q) s.fetches_queued += !f->started && !f->done;
  return s;
}

std::string ChunkCache::MetricsText() {
  ChunkCacheStats s = Stats();
  std::string out;
  auto metric = [&](const char* type, const char* name, const char* help, uint64_t v) {
    out += std::string("# HELP kindling_chunk_cache_") + name + " " + help + "\n# TYPE kindling_chunk_cache_" + name +
           " " + type + "\nkindling_chunk_cache_" + name + " " + std::to_string(v) + "\n";
  };
  metric("counter", "memory_hits_total", "Chunk reads served from memory.", s.memory_hits);
  metric("counter", "disk_hits_total", "Chunk reads served from the local disk (verified).", s.disk_hits);
  metric("counter", "misses_total", "Chunk reads that waited for a remote fetch.", s.misses);
  metric("counter", "fetches_total", "Successful remote chunk fetches.", s.fetches);
  metric("counter", "fetch_errors_total", "Failed remote chunk fetches (after retries).", s.fetch_errors);
  metric("counter", "bytes_fetched_total", "Bytes fetched from the remote.", s.bytes_fetched);
  metric("counter", "fetch_micros_total", "Microseconds spent in remote fetches.", s.fetch_micros_total);
  metric("gauge", "fetch_micros_max", "Longest remote fetch, microseconds.", s.fetch_micros_max);
  metric("counter", "corrupt_discarded_total", "Local chunk files that failed verification (refetched).",
         s.corrupt_discarded);
  metric("counter", "evictions_total", "Chunks evicted to stay under capacity.", s.evictions);
  metric("counter", "over_capacity_total", "Evictions that could not get under capacity (chunks in use).",
         s.over_capacity);
  metric("counter", "prefetched_total", "Chunks fetched by prefetch.", s.prefetched);
  metric("gauge", "bytes_on_disk", "Bytes of chunk files on disk.", s.bytes_on_disk);
  metric("gauge", "chunks_on_disk", "Chunks on disk.", s.chunks_on_disk);
  metric("gauge", "capacity_bytes", "Disk capacity of the cache.", s.capacity_bytes);
  metric("gauge", "fetches_in_flight", "Remote fetches running.", s.fetches_in_flight);
  metric("gauge", "fetches_queued", "Remote fetches waiting for a fetch thread.", s.fetches_queued);
  return out;
}

}  // namespace kindling::chunks
