// The runtimes Kindling can start, and how: the command kindling-init runs inside the sandbox, the
// runtime image family its root file system comes from, and (without images) the runtime client
// directory under the runtimes root mounted at /var/runtime.
#pragma once

#include <string>
#include <vector>

namespace kindling {

struct RuntimeInfo {
  std::string name;                // Lambda identifier, e.g. "python3.12"
  std::vector<std::string> argv;   // inside the sandbox
  std::string client_dir;          // subdirectory of the runtimes root, "" for none
  std::string entrypoint;          // file in /var/task that must be executable ("" = none)
  std::string image;               // runtime image family: "provided", "python", "node"
};

// nullptr for an unknown runtime.
const RuntimeInfo* FindRuntime(const std::string& name);
// Every supported identifier, for error messages.
std::vector<std::string> SupportedRuntimes();

}  // namespace kindling
