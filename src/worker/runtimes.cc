#include "worker/runtimes.h"

namespace kindling {
namespace {

// Every python3.x runs on the python3 and every nodejsNN.x on the node of its runtime image, built
// from the Debian packages installed on the host (images/package_rootfs.h; docs/images.md).
const std::vector<RuntimeInfo>& Table() {
  static const std::vector<RuntimeInfo> kRuntimes = [] {
    std::vector<RuntimeInfo> t;
    for (const char* name : {"provided.al2023", "provided.al2", "provided"})
      t.push_back({name, {"/var/task/bootstrap"}, "", "bootstrap", "provided"});
    for (const char* name : {"python3.9", "python3.10", "python3.11", "python3.12", "python3.13"})
      t.push_back({name, {"/usr/bin/python3", "-s", "/var/runtime/bootstrap.py"}, "python", "", "python"});
    for (const char* name : {"nodejs18.x", "nodejs20.x", "nodejs22.x"})
      t.push_back({name, {"/usr/bin/node", "/var/runtime/bootstrap.js"}, "node", "", "node"});
    return t;
  }();
  return kRuntimes;
}

}  // namespace

const RuntimeInfo* FindRuntime(const std::string& name) {
  for (const auto& r : Table())
    if (r.name == name) return &r;
  return nullptr;
}

std::vector<std::string> SupportedRuntimes() {
  std::vector<std::string> out;
  for (const auto& r : Table()) out.push_back(r.name);
  return out;
}

}  // namespace kindling
