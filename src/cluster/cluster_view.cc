#include "cluster/cluster_view.h"

namespace kindling::cluster {

using json = nlohmann::json;

json ClusterView(const PartitionElections& elections, const FleetView* fleet, const std::string& function) {
  json partitions = json::array();
  for (int p = 0; p < elections.partitions(); ++p) {
    auto members = elections.Members(p);
    json followers = json::array();
    for (size_t i = 1; i < members.size(); ++i) followers.push_back(members[i].node);
    partitions.push_back({{"id", p}, {"leader", members.empty() ? json() : json(members[0].node)},
                          {"followers", followers}});
  }
  json nodes = json::array(), workers = json::array();
  if (fleet) {
    for (const auto& [id, n] : fleet->nodes()) nodes.push_back({{"id", id}, {"roles", n.roles}, {"state", "alive"}, {"url", n.url}});
    for (const auto& [id, w] : fleet->workers())
      workers.push_back({{"id", id}, {"url", w.url}, {"state", w.state}, {"sandboxes", w.sandboxes},
                         {"memory_reserved_mb", w.memory_reserved_mb}, {"memory_capacity_mb", w.memory_capacity_mb}});
  }
  json out{{"partitions", partitions}, {"nodes", nodes}, {"workers", workers}};
  if (!function.empty()) out["function"] = {{"name", function}, {"partition", PartitionOf(function, elections.partitions())}};
  return out;
}

}  // namespace kindling::cluster
