#include "cluster/fleet.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace kindling::cluster {

namespace asio = boost::asio;
using asio::awaitable;
using json = nlohmann::json;

std::string EncodeNode(const NodeInfo& node) {
  return json{{"id", node.id}, {"roles", node.roles}, {"url", node.url}}.dump();
}

bool DecodeNode(const std::string& text, NodeInfo* node) {
  auto doc = json::parse(text, nullptr, false);
  if (!doc.is_object() || !doc["id"].is_string() || !doc["url"].is_string() || !doc["roles"].is_array()) return false;
  node->id = doc["id"].get<std::string>();
  node->url = doc["url"].get<std::string>();
  node->roles.clear();
  for (const auto& r : doc["roles"])
    if (r.is_string()) node->roles.push_back(r.get<std::string>());
  return !node->id.empty();
}

std::string EncodeWorker(const WorkerInfo& w) {
  return json{{"id", w.id},
              {"url", w.url},
              {"state", w.state},
              {"sandboxes", w.sandboxes},
              {"memoryReservedMb", w.memory_reserved_mb},
              {"memoryCapacityMb", w.memory_capacity_mb},
              {"load", w.load}}
      .dump();
}

bool DecodeWorker(const std::string& text, WorkerInfo* w) {
  auto doc = json::parse(text, nullptr, false);
  if (!doc.is_object() || !doc["id"].is_string() || !doc["url"].is_string()) return false;
  w->id = doc["id"].get<std::string>();
  w->url = doc["url"].get<std::string>();
  w->state = doc.value("state", "active");
  w->sandboxes = doc.value("sandboxes", uint64_t{0});
  w->memory_reserved_mb = doc.value("memoryReservedMb", uint64_t{0});
  w->memory_capacity_mb = doc.value("memoryCapacityMb", uint64_t{0});
  w->load = doc.value("load", 0.0);
  return !w->id.empty();
}

Registration::Registration(asio::io_context& io, EtcdClient& etcd, NodeInfo node,
                           std::function<WorkerInfo()> worker_stats)
    : io_(io), etcd_(etcd), node_(std::move(node)), worker_stats_(std::move(worker_stats)) {}

bool Registration::LeaseAlive() const {
  return lease_ != 0 && std::chrono::steady_clock::now() - last_kept_ < kLeaseSafe;
}

awaitable<Status> Registration::Register() {
  auto sent = std::chrono::steady_clock::now();
  auto lease = co_await etcd_.LeaseGrant(kLeaseTtl);
  if (!lease.ok()) co_return lease.status();
  lease_ = *lease;
  last_kept_ = sent;
  auto put = co_await etcd_.Put(kNodesPrefix + node_.id, EncodeNode(node_), lease_);
  if (!put.ok()) co_return put.status();
  if (worker_stats_) {
    auto w = co_await etcd_.Put(kWorkersPrefix + node_.id, EncodeWorker(worker_stats_()), lease_);
    if (!w.ok()) co_return w.status();
  }
  co_return Status::Ok();
}

awaitable<Status> Registration::Start(std::chrono::milliseconds within) {
  auto deadline = std::chrono::steady_clock::now() + within;
  Status s;
  for (;;) {
    s = co_await Register();
    if (s.ok() || std::chrono::steady_clock::now() > deadline) break;
    asio::steady_timer wait(io_, std::chrono::milliseconds(200));
    boost::system::error_code ec;
    co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!s.ok()) co_return s.WithContext("registering node " + node_.id + " in etcd");
  timer_ = std::make_shared<asio::steady_timer>(io_);
  asio::co_spawn(io_, Loop(), asio::detached);
  co_return Status::Ok();
}

awaitable<void> Registration::Loop() {
  auto timer = timer_;
  auto last_heartbeat = std::chrono::steady_clock::now();
  while (!stopped_) {
    timer->expires_after(kKeepAliveEvery);
    boost::system::error_code ec;
    co_await timer->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (stopped_) break;
    auto sent = std::chrono::steady_clock::now();
    auto alive = co_await etcd_.LeaseKeepAlive(lease_);
    if (alive.ok()) last_kept_ = sent;
    if (!alive.ok() && alive.status().IsNotFound()) {
      // Expired (etcd was out of reach for longer than the TTL): the fleet saw this node die.
      fprintf(stderr, "kindlingd: lease of node %s expired; registering again\n", node_.id.c_str());
      Status s = co_await Register();
      if (!s.ok()) fprintf(stderr, "kindlingd: registering again: %s\n", s.message().c_str());
      if (s.ok() && on_new_lease_) on_new_lease_(lease_);
      continue;
    }
    if (worker_stats_ && alive.ok() && std::chrono::steady_clock::now() - last_heartbeat >= kHeartbeatEvery) {
      last_heartbeat = std::chrono::steady_clock::now();
      co_await etcd_.Put(kWorkersPrefix + node_.id, EncodeWorker(worker_stats_()), lease_);
    }
  }
}

void Registration::Stop() {
  stopped_ = true;
  if (timer_) timer_->cancel();
}

awaitable<void> Registration::Leave() {
  Stop();
  if (lease_) co_await etcd_.LeaseRevoke(lease_);
}

FleetView::FleetView(asio::io_context& io, EtcdClient& etcd, Callbacks callbacks)
    : io_(io), etcd_(etcd), callbacks_(std::move(callbacks)) {}

void FleetView::Apply(const EtcdEvent& e) {
  const std::string& key = e.kv.key;
  bool put = e.type == EtcdEvent::Type::kPut;
  if (key.rfind(kNodesPrefix, 0) == 0) {
    std::string id = key.substr(sizeof(kNodesPrefix) - 1);
    NodeInfo node;
    if (put && DecodeNode(e.kv.value, &node)) nodes_[id] = node;
    else if (!put) nodes_.erase(id);
  } else if (key.rfind(kWorkersPrefix, 0) == 0) {
    std::string id = key.substr(sizeof(kWorkersPrefix) - 1);
    WorkerInfo w;
    if (put && DecodeWorker(e.kv.value, &w) && w.id == id) {
      workers_[id] = w;
      if (callbacks_.worker_up) callbacks_.worker_up(w);
    } else if (!put && workers_.erase(id)) {
      if (callbacks_.worker_down) callbacks_.worker_down(id);
    }
  }
}

awaitable<Status> FleetView::Start() {
  int64_t revision = 0;
  for (const char* prefix : {kNodesPrefix, kWorkersPrefix}) {
    auto range = co_await etcd_.GetPrefix(prefix);
    if (!range.ok()) co_return range.status().WithContext("reading the fleet from etcd");
    for (const auto& kv : range->kvs) Apply(EtcdEvent{EtcdEvent::Type::kPut, kv});
    revision = std::max(revision, range->revision);
  }
  asio::co_spawn(io_, WatchLoop(revision + 1), asio::detached);
  co_return Status::Ok();
}

awaitable<void> FleetView::WatchLoop(int64_t from) {
  auto cancel = cancel_;
  while (!cancel->cancelled()) {
    Status s = co_await etcd_.Watch(kFleetPrefix, from, [this](const std::vector<EtcdEvent>& events, int64_t rev) {
      for (const auto& e : events) Apply(e);
    }, cancel);
    if (cancel->cancelled()) break;
    // Compacted: read everything again and tell what changed.
    fprintf(stderr, "kindlingd: fleet watch: %s; reading the registry again\n", s.message().c_str());
    auto old_workers = workers_;
    nodes_.clear();
    workers_.clear();
    int64_t revision = 0;
    for (const char* prefix : {kNodesPrefix, kWorkersPrefix}) {
      auto range = co_await etcd_.GetPrefix(prefix);
      if (!range.ok()) continue;
      for (const auto& kv : range->kvs) Apply(EtcdEvent{EtcdEvent::Type::kPut, kv});
      revision = std::max(revision, range->revision);
    }
    for (const auto& [id, w] : old_workers)
      if (!workers_.count(id) && callbacks_.worker_down) callbacks_.worker_down(id);
    from = revision + 1;
  }
}

void FleetView::Stop() { cancel_->Cancel(); }

}  // namespace kindling::cluster
