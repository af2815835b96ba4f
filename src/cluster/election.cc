#include "cluster/election.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace kindling::cluster {

namespace asio = boost::asio;
using asio::awaitable;
using json = nlohmann::json;

int PartitionOf(const std::string& function, int partitions) {
  uint64_t h = 14695981039346656037ull;  // FNV-1a: stable across builds and hosts
  for (unsigned char c : function) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<int>(h % static_cast<uint64_t>(std::max(1, partitions)));
}

std::string PartitionElections::Key(int partition, const std::string& node) {
  char pp[16];
  snprintf(pp, sizeof pp, "%02d", partition);
  return std::string(kPartitionsPrefix) + pp + "/" + node;
}

PartitionElections::PartitionElections(asio::io_context& io, EtcdClient& etcd, Options options)
    : io_(io), etcd_(etcd), options_(std::move(options)),
      members_(options_.partitions), leading_(options_.partitions, false), leaders_(options_.partitions) {}

std::vector<PartitionMember> PartitionElections::Members(int partition) const {
  std::vector<PartitionMember> out;
  if (partition < 0 || partition >= options_.partitions) return out;
  for (const auto& [node, m] : members_[partition]) out.push_back(m);
  std::sort(out.begin(), out.end(),
            [](const PartitionMember& a, const PartitionMember& b) { return a.create_revision < b.create_revision; });
  return out;
}

std::optional<PartitionMember> PartitionElections::Leader(int partition) const {
  auto m = Members(partition);
  if (m.empty()) return std::nullopt;
  return m.front();
}

bool PartitionElections::IsLeader(int partition) const {
  if (options_.node.empty() || !options_.lease_alive()) return false;
  auto leader = Leader(partition);
  return leader && leader->node == options_.node;
}

int64_t PartitionElections::MyRevision(int partition) const {
  if (partition < 0 || partition >= options_.partitions) return 0;
  auto it = members_[partition].find(options_.node);
  return it == members_[partition].end() ? 0 : it->second.create_revision;
}

void PartitionElections::Apply(const EtcdEvent& e) {
  const std::string& key = e.kv.key;
  if (key.rfind(kPartitionsPrefix, 0) != 0) return;
  std::string rest = key.substr(sizeof(kPartitionsPrefix) - 1);
  size_t slash = rest.find('/');
  if (slash == std::string::npos || slash == 0 || slash > 4) return;
  int p = std::atoi(rest.substr(0, slash).c_str());
  std::string node = rest.substr(slash + 1);
  if (p < 0 || p >= options_.partitions || node.empty()) return;
  if (e.type == EtcdEvent::Type::kDelete) {
    members_[p].erase(node);
    return;
  }
  auto doc = json::parse(e.kv.value, nullptr, false);
  PartitionMember m{node, doc.is_object() ? doc.value("url", "") : "", e.kv.create_revision};
  members_[p][node] = m;
}

void PartitionElections::Notify() {
  for (int p = 0; p < options_.partitions; ++p) {
    auto leader = Leader(p);
    std::string now = leader ? leader->node : "";
    if (now != leaders_[p]) {
      if (!leaders_[p].empty() || !now.empty()) ++leader_changes_;
      leaders_[p] = now;
    }
    bool leading = IsLeader(p);
    if (leading != leading_[p]) {
      leading_[p] = leading;
      if (on_leadership_) on_leadership_(p, leading);
    }
  }
}

awaitable<Status> PartitionElections::Campaign(int partition) {
  std::string value = json{{"node", options_.node}, {"url", options_.url}}.dump();
  auto put = co_await etcd_.PutIfAbsent(Key(partition, options_.node), value, lease_);
  if (!put.ok()) co_return put.status();
  co_return Status::Ok();
}

awaitable<Status> PartitionElections::Start(int64_t lease) {
  lease_ = lease;
  if (!options_.node.empty())
    for (int p = 0; p < options_.partitions; ++p) {
      Status s = co_await Campaign(p);
      if (!s.ok()) co_return s.WithContext("campaigning for partition " + std::to_string(p));
    }
  auto range = co_await etcd_.GetPrefix(kPartitionsPrefix);
  if (!range.ok()) co_return range.status().WithContext("reading partition leaders");
  for (const auto& kv : range->kvs) Apply(EtcdEvent{EtcdEvent::Type::kPut, kv});
  revision_ = range->revision;
  Notify();
  asio::co_spawn(io_, WatchLoop(range->revision + 1), asio::detached);
  if (!options_.node.empty()) {
    timer_ = std::make_shared<asio::steady_timer>(io_);
    asio::co_spawn(io_, RebalanceLoop(), asio::detached);
  }
  co_return Status::Ok();
}

awaitable<void> PartitionElections::Recampaign(int64_t lease) {
  lease_ = lease;
  for (int p = 0; p < options_.partitions && !stopped_; ++p) {
    Status s = co_await Campaign(p);
    if (!s.ok()) fprintf(stderr, "kindlingd: campaigning for partition %d: %s\n", p, s.message().c_str());
  }
}

awaitable<void> PartitionElections::WatchLoop(int64_t from) {
  auto cancel = cancel_;
  while (!cancel->cancelled()) {
    Status s = co_await etcd_.Watch(kPartitionsPrefix, from, [this](const std::vector<EtcdEvent>& events, int64_t rev) {
      for (const auto& e : events) Apply(e);
      revision_ = std::max(revision_, rev);
      Notify();
    }, cancel);
    if (cancel->cancelled()) break;
    // Compacted: read the members again.
    auto range = co_await etcd_.GetPrefix(kPartitionsPrefix);
    if (!range.ok()) continue;
    for (auto& m : members_) m.clear();
    for (const auto& kv : range->kvs) Apply(EtcdEvent{EtcdEvent::Type::kPut, kv});
    revision_ = range->revision;
    Notify();
    from = range->revision + 1;
  }
}

awaitable<void> PartitionElections::RebalanceLoop() {
  auto timer = timer_;
  while (!stopped_) {
    timer->expires_after(options_.rebalance_every);
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    Notify();  // the lease may have lapsed or come back since the last event
    // Leaders and their counts; candidates are the nodes that campaign somewhere.
    std::map<std::string, int> leads;
    for (int p = 0; p < options_.partitions; ++p) {
      for (const auto& m : Members(p)) leads.try_emplace(m.node, 0);
      if (auto l = Leader(p)) leads[l->node]++;
    }
    if (leads.empty() || !leads.count(options_.node)) continue;
    int share = (options_.partitions + static_cast<int>(leads.size()) - 1) / static_cast<int>(leads.size());
    bool someone_below = false;
    for (const auto& [node, n] : leads) someone_below = someone_below || n < share;
    if (leads[options_.node] <= share || !someone_below) continue;
    // Hand one partition to the next candidate. If that one then leads more than its share it
    // passes one on in turn, until the candidate below its share has them.
    for (int p = 0; p < options_.partitions; ++p) {
      auto members = Members(p);
      if (members.size() < 2 || members[0].node != options_.node) continue;
      auto key = Key(p, options_.node);
      auto got = co_await etcd_.Get(key);
      if (!got.ok() || got->kvs.empty()) break;
      auto deleted = co_await etcd_.DeleteIfUnchanged(key, got->kvs[0].mod_revision);
      if (deleted.ok() && *deleted) co_await Campaign(p);  // back in the queue, as a follower
      break;  // one per round: the watch updates the counts
    }
  }
}

void PartitionElections::Stop() {
  stopped_ = true;
  cancel_->Cancel();
  if (timer_) timer_->cancel();
}

}  // namespace kindling::cluster
