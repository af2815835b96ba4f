// The cluster's state as an operator sees it (GET /kindling/cluster on any frontend):
//   {"partitions": [{"id", "leader", "followers": [...]}],
//    "nodes": [{"id", "roles", "state", "url"}],
//    "workers": [{"id", "url", "state", "sandboxes", "memory_reserved_mb", "memory_capacity_mb"}],
//    "function": {"name", "partition"}}            (with a function name only)
// Nodes and workers are named by their node ids; a node in the registry is "alive" (its lease holds).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "cluster/election.h"
#include "cluster/fleet.h"

namespace kindling::cluster {

nlohmann::json ClusterView(const PartitionElections& elections, const FleetView* fleet, const std::string& function);

}  // namespace kindling::cluster
