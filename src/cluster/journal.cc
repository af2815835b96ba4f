#include "cluster/journal.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/function_json.h"
#include "worker/lease.h"

namespace kindling::cluster {

namespace asio = boost::asio;
using asio::awaitable;
using json = nlohmann::json;

std::string JournalKey(int partition, const std::string& worker, const std::string& sandbox) {
  char pp[16];
  snprintf(pp, sizeof pp, "%02d", partition);
  return std::string(kJournalPrefix) + pp + "/" + worker + "/" + sandbox;
}

awaitable<Status> PartitionJournal::Created(const FunctionConfig& fn, const std::string& worker,
                                            const std::string& sandbox, uint64_t token) {
  int64_t guard = elections_.MyRevision(partition_);
  if (guard == 0 || !elections_.IsLeader(partition_))
    co_return Status::Conflict("not the leader of partition " + std::to_string(partition_));
  std::string value = json{{"function", ToStored(fn)}, {"token", std::to_string(token)}}.dump();
  auto put = co_await etcd_.PutGuarded(JournalKey(partition_, worker, sandbox), value,
                                       PartitionElections::Key(partition_, node_), guard);
  if (!put.ok()) co_return put.status().WithContext("journal");
  if (!*put) co_return Status::Conflict("no longer the leader of partition " + std::to_string(partition_));
  co_return Status::Ok();
}

awaitable<void> PartitionJournal::Ended(const std::string& worker, const std::string& sandbox) {
  int64_t guard = elections_.MyRevision(partition_);
  if (guard == 0) co_return;
  co_await etcd_.DeleteGuarded(JournalKey(partition_, worker, sandbox), PartitionElections::Key(partition_, node_),
                               guard);
}

JournalReplica::JournalReplica(asio::io_context& io, EtcdClient& etcd, int partitions)
    : io_(io), etcd_(etcd), entries_(partitions) {}

void JournalReplica::Apply(const EtcdEvent& e) {
  const std::string& key = e.kv.key;
  if (key.rfind(kJournalPrefix, 0) != 0) return;
  std::string rest = key.substr(sizeof(kJournalPrefix) - 1);  // PP/worker/sandbox
  size_t a = rest.find('/'), b = a == std::string::npos ? a : rest.find('/', a + 1);
  if (a == std::string::npos || b == std::string::npos) return;
  int p = std::atoi(rest.substr(0, a).c_str());
  if (p < 0 || p >= static_cast<int>(entries_.size())) return;
  std::string id = rest.substr(a + 1);
  if (e.type == EtcdEvent::Type::kDelete) {
    entries_[p].erase(id);
    return;
  }
  auto doc = json::parse(e.kv.value, nullptr, false);
  JournalEntry entry;
  entry.partition = p;
  entry.worker = rest.substr(a + 1, b - a - 1);
  entry.sandbox = rest.substr(b + 1);
  std::string token = doc.is_object() ? doc.value("token", "") : "";
  if (!doc.is_object() || !doc.contains("function") || !FromStored(doc["function"], &entry.fn) ||
      !ParseDecimalU64(token, &entry.token))
    return;  // not an entry this version wrote: ignored
  entries_[p][id] = std::move(entry);
}

awaitable<Status> JournalReplica::Start() {
  auto range = co_await etcd_.GetPrefix(kJournalPrefix);
  if (!range.ok()) co_return range.status().WithContext("reading the assignment journal");
  for (const auto& kv : range->kvs) Apply(EtcdEvent{EtcdEvent::Type::kPut, kv});
  revision_ = range->revision;
  asio::co_spawn(io_, WatchLoop(range->revision + 1), asio::detached);
  co_return Status::Ok();
}

awaitable<void> JournalReplica::WatchLoop(int64_t from) {
  auto cancel = cancel_;
  while (!cancel->cancelled()) {
    co_await etcd_.Watch(kJournalPrefix, from, [this](const std::vector<EtcdEvent>& events, int64_t rev) {
      for (const auto& e : events) Apply(e);
      revision_ = std::max(revision_, rev);
    }, cancel);
    if (cancel->cancelled()) break;
    auto range = co_await etcd_.GetPrefix(kJournalPrefix);  // compacted: read it all again
    if (!range.ok()) continue;
    for (auto& m : entries_) m.clear();
    for (const auto& kv : range->kvs) Apply(EtcdEvent{EtcdEvent::Type::kPut, kv});
    revision_ = range->revision;
    from = range->revision + 1;
  }
}

awaitable<Status> JournalReplica::Reload(int partition) {
  if (partition < 0 || partition >= static_cast<int>(entries_.size())) co_return Status::InvalidArgument("no such partition");
  std::string prefix = JournalKey(partition, "", "");
  prefix.pop_back();  // ".../PP//" -> ".../PP/"
  auto range = co_await etcd_.GetPrefix(prefix);
  if (!range.ok()) co_return range.status().WithContext("reading the journal of partition " + std::to_string(partition));
  entries_[partition].clear();
  for (const auto& kv : range->kvs) Apply(EtcdEvent{EtcdEvent::Type::kPut, kv});
  co_return Status::Ok();
}

std::vector<JournalEntry> JournalReplica::Entries(int partition) const {
  std::vector<JournalEntry> out;
  if (partition < 0 || partition >= static_cast<int>(entries_.size())) return out;
  for (const auto& [id, e] : entries_[partition]) out.push_back(e);
  return out;
}

size_t JournalReplica::size() const {
  size_t n = 0;
  for (const auto& m : entries_) n += m.size();
  return n;
}

}  // namespace kindling::cluster
