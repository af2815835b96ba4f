#include "cluster/assignment_node.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "common/function_json.h"
#include "rpc/rpc.h"
#include "worker/lease.h"

namespace kindling::cluster {

namespace asio = boost::asio;
using asio::awaitable;
using json = nlohmann::json;

namespace {

bool ParseU64(const json& doc, const char* field, uint64_t* out) {
  return doc.contains(field) && doc[field].is_string() && ParseDecimalU64(doc[field].get_ref<const std::string&>(), out);
}

json LeaseJson(const SandboxLease& l) {
  return {{"worker", l.worker}, {"sandbox", l.sandbox}, {"token", std::to_string(l.token)},
          {"sequence", std::to_string(l.sequence)}, {"cold", l.cold}};
}

bool ParseLease(const json& doc, SandboxLease* l) {
  if (!doc.is_object() || !doc["worker"].is_string() || !doc["sandbox"].is_string()) return false;
  l->worker = doc["worker"].get<std::string>();
  l->sandbox = doc["sandbox"].get<std::string>();
  l->cold = doc.value("cold", false);
  return ParseU64(doc, "token", &l->token) && ParseU64(doc, "sequence", &l->sequence) && !l->worker.empty() &&
         !l->sandbox.empty();
}

HttpClientRequest Post(const std::string& target, std::string body, const std::string& cluster_key) {
  HttpClientRequest req;
  req.method = "POST";
  req.target = target;
  req.body = std::move(body);
  req.headers.emplace_back(rpc::kClusterKeyHeader, cluster_key);
  return req;
}

}  // namespace

AssignmentNode::AssignmentNode(asio::io_context& io, WorkerDirectory& workers, EtcdClient& etcd,
                               PartitionElections& elections, JournalReplica& replica, std::string node,
                               std::string cluster_key, AssignmentOptions options)
    : io_(io), workers_(workers), etcd_(etcd), elections_(elections), replica_(replica), node_(std::move(node)),
      cluster_key_(std::move(cluster_key)), options_(std::move(options)) {}

AssignmentNode::Partition& AssignmentNode::Get(int p) {
  Partition& part = partitions_[p];
  if (!part.service) {
    part.journal = std::make_unique<PartitionJournal>(etcd_, elections_, p, node_);
    part.service = std::make_unique<AssignmentService>(io_, workers_, options_);
    part.service->SetJournal(part.journal.get());
    part.service->Start();
  }
  return part;
}

bool AssignmentNode::Leads(int p) const {
  auto it = partitions_.find(p);
  return it != partitions_.end() && it->second.leading && elections_.IsLeader(p);
}

void AssignmentNode::OnLeadership(int p, bool leading) {
  Partition& part = Get(p);
  ++part.epoch;
  if (!leading) {
    part.leading = false;
    part.service->Forget();
    fprintf(stderr, "kindlingd: %s no longer leads partition %d\n", node_.c_str(), p);
    return;
  }
  asio::co_spawn(io_, TakeOver(p, part.epoch), asio::detached);
}

awaitable<void> AssignmentNode::TakeOver(int p, uint64_t epoch) {
  auto started = std::chrono::steady_clock::now();
  // The replica, read again from etcd (whatever the old leader wrote before its lease expired is
  // in it), and what each worker holds now.
  auto still_mine = [&] { return partitions_[p].epoch == epoch && elections_.IsLeader(p); };
  for (int attempt = 0;; ++attempt) {
    Status reloaded = co_await replica_.Reload(p);
    if (reloaded.ok()) break;
    if (attempt == 20 || !still_mine()) {
      fprintf(stderr, "kindlingd: taking over partition %d: %s\n", p, reloaded.message().c_str());
      co_return;  // etcd is out of reach: this node's lease will lapse too
    }
    asio::steady_timer wait(io_, std::chrono::milliseconds(100));
    boost::system::error_code ec;
    co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  std::map<std::string, std::optional<std::vector<SandboxState>>> listed;
  for (WorkerClient* w : workers_.All()) {
    std::string id = w->id();
    auto sandboxes = co_await w->ListSandboxes();
    if (sandboxes.ok()) listed[id] = std::move(sandboxes).value();
    else listed[id] = std::nullopt;  // unreachable: its entries are kept, its sandboxes not adopted
  }
  if (!still_mine()) co_return;

  Partition& part = partitions_[p];
  part.service->Forget();
  std::map<std::string, bool> journaled;
  for (const JournalEntry& e : replica_.Entries(p)) {
    journaled[e.worker + "/" + e.sandbox] = true;
    const SandboxState* state = nullptr;
    auto it = listed.find(e.worker);
    if (it != listed.end() && !it->second) continue;  // worker unreachable now: decide when it answers
    if (it != listed.end())
      for (const auto& s : *it->second)
        if (s.id == e.sandbox) state = &s;
    if (!state) {  // its worker left the fleet, or no longer has it
      co_await part.journal->Ended(e.worker, e.sandbox);
      ++counters_.journal_entries_dropped;
      continue;
    }
    part.service->Adopt(e.fn, e.worker, e.sandbox, e.token, state->last_sequence, state->busy);
    ++counters_.adopted;
  }
  // Sandboxes of this partition's functions that no journal lists: created by a leader that died
  // before journaling them. Nobody can lease them: destroy.
  for (const auto& [worker, states] : listed) {
    if (!states) continue;
    for (const auto& s : *states)
      if (PartitionOf(s.function, elections_.partitions()) == p && !journaled.count(worker + "/" + s.id)) {
        if (WorkerClient* w = workers_.Find(worker)) w->Destroy(s.id);
        ++counters_.unjournaled_destroyed;
      }
  }
  if (!still_mine()) {
    part.service->Forget();
    co_return;
  }
  part.leading = true;
  ++counters_.takeovers;
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
  fprintf(stderr, "kindlingd: %s leads partition %d (took over in %lld ms)\n", node_.c_str(), p,
          static_cast<long long>(took.count()));
}

void AssignmentNode::SandboxGone(const std::string& worker, const std::string& sandbox) {
  for (auto& [p, part] : partitions_)
    if (part.leading) part.service->SandboxGone(worker, sandbox);
}

void AssignmentNode::WorkerGone(const std::string& worker) {
  for (auto& [p, part] : partitions_)
    if (part.service) part.service->WorkerGone(worker);
}

void AssignmentNode::Shutdown() {
  for (auto& [p, part] : partitions_) {
    part.leading = false;
    if (part.service) part.service->Forget();
  }
}

HttpResponse AssignmentNode::TooLarge(const std::string&, const std::string&) {
  return rpc::ErrorResponse(Status::InvalidArgument("request body too large"));
}

HttpResponse AssignmentNode::NotLeader(int p) const {
  auto leader = elections_.Leader(p);
  json doc{{"code", "Conflict"}, {"message", "this node does not lead partition " + std::to_string(p)}};
  if (leader) doc["leader"] = leader->node;
  return rpc::Json(doc.dump(), 409);
}

awaitable<HttpResponse> AssignmentNode::Handle(HttpRequest& req) {
  if (!rpc::Authorized(req, cluster_key_))
    co_return rpc::Unauthorized();
  bool acquire = req.path == "/kindling/v1/assignment/acquire", release = req.path == "/kindling/v1/assignment/release";
  if (req.method != "POST" || (!acquire && !release))
    co_return rpc::ErrorResponse(Status::NotFound("no such route: " + req.method + " " + req.path));
  auto doc = json::parse(req.body, nullptr, false);
  if (!doc.is_object() || !doc["partition"].is_number_integer())
    co_return rpc::ErrorResponse(Status::InvalidArgument("malformed request"));
  int p = doc["partition"].get<int>();
  if (p < 0 || p >= elections_.partitions()) co_return rpc::ErrorResponse(Status::InvalidArgument("no such partition"));
  if (!Leads(p)) co_return NotLeader(p);
  Partition& part = partitions_[p];
  if (release) {
    SandboxLease lease;
    if (!ParseLease(doc, &lease) || !doc.value("alive", json()).is_boolean())
      co_return rpc::ErrorResponse(Status::InvalidArgument("malformed lease"));
    part.service->Release(lease, doc["alive"].get<bool>());
    HttpResponse r;
    r.status = 204;
    co_return r;
  }
  FunctionConfig fn;
  if (!doc.contains("function") || !FromStored(doc["function"], &fn) || fn.name.empty())
    co_return rpc::ErrorResponse(Status::InvalidArgument("malformed function"));
  if (PartitionOf(fn.name, elections_.partitions()) != p)
    co_return rpc::ErrorResponse(Status::InvalidArgument("function " + fn.name + " is not in partition " + std::to_string(p)));
  auto lease = co_await part.service->Acquire(fn);
  if (!lease.ok()) co_return rpc::ErrorResponse(lease.status());
  co_return rpc::Json(LeaseJson(*lease).dump());
}

RemoteAssigner::RemoteAssigner(asio::io_context& io, HttpClient& http, const PartitionElections& elections,
                               std::string cluster_key, std::chrono::milliseconds failover_wait)
    : io_(io), http_(http), elections_(elections), cluster_key_(std::move(cluster_key)), failover_wait_(failover_wait) {}

awaitable<Result<SandboxLease>> RemoteAssigner::Acquire(const FunctionConfig& fn) {
  int p = PartitionOf(fn.name, elections_.partitions());
  std::string body = json{{"partition", p}, {"function", ToStored(fn)}}.dump();
  auto deadline = std::chrono::steady_clock::now() + failover_wait_;
  Status last = Status::Unavailable("no leader for partition " + std::to_string(p));
  asio::steady_timer wait(io_);
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      ++retries_;
      if (std::chrono::steady_clock::now() >= deadline) co_return last;
      wait.expires_after(std::chrono::milliseconds(std::min(50 * attempt, 250)));
      boost::system::error_code ec;
      co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    auto leader = elections_.Leader(p);
    if (!leader || leader->url.empty()) continue;
    // A creation may take a while (a cold worker loads its images).
    auto r = co_await http_.Call(leader->url, Post("/kindling/v1/assignment/acquire", body, cluster_key_),
                                 std::chrono::seconds(45));
    if (!r.ok()) {
      last = r.status().WithContext("assignment leader " + leader->node);
      if (r.status().code() == StatusCode::kUnavailable) continue;  // not sent: ask again
      co_return Status::Unavailable(last.message());  // may have run: the caller's 5xx is retryable
    }
    if (r->status == 200) {
      auto doc = json::parse(r->body, nullptr, false);
      SandboxLease lease;
      if (!ParseLease(doc, &lease)) co_return Status::Error("assignment leader " + leader->node + ": malformed lease");
      partition_of_lease_[lease.worker + "/" + lease.sandbox] = p;
      co_return lease;
    }
    Status s = rpc::ErrorFromResponse(*r);
    if (s.IsConflict() || s.code() == StatusCode::kUnavailable) {  // not (or no longer) the leader
      last = s.WithContext("assignment leader " + leader->node);
      continue;
    }
    co_return s;
  }
}

void RemoteAssigner::Release(const SandboxLease& lease, bool sandbox_alive) {
  auto it = partition_of_lease_.find(lease.worker + "/" + lease.sandbox);
  if (it == partition_of_lease_.end()) return;
  int p = it->second;
  partition_of_lease_.erase(it);
  asio::co_spawn(io_, ReleaseWithRetries(lease, sandbox_alive, p), asio::detached);
}

awaitable<void> RemoteAssigner::ReleaseWithRetries(SandboxLease lease, bool alive, int p) {
  json doc = LeaseJson(lease);
  doc["partition"] = p;
  doc["alive"] = alive;
  std::string body = doc.dump();
  asio::steady_timer wait(io_);
  for (int attempt = 0; attempt < 20; ++attempt) {  // through a failover (the new leader adopted it)
    if (attempt > 0) {
      wait.expires_after(std::chrono::milliseconds(std::min(100 * attempt, 500)));
      boost::system::error_code ec;
      co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    auto leader = elections_.Leader(p);
    if (!leader) continue;
    auto r = co_await http_.Call(leader->url, Post("/kindling/v1/assignment/release", body, cluster_key_),
                                 std::chrono::seconds(5));
    if (r.ok() && r->status == 204) co_return;
  }
}

}  // namespace kindling::cluster
