// Small, checked file-system helpers at the OS boundary.
#pragma once

#include <string>

#include "common/status.h"

namespace kindling {

// Writes data to path (truncating). Used for cgroup and /proc control files.
Status WriteFile(const std::string& path, const std::string& data);
// Reads a whole file into out.
Status ReadFile(const std::string& path, std::string* out);
// mkdir -p with mode for created directories.
Status MakeDirs(const std::string& path, unsigned mode = 0755);
// rm -rf that never crosses into another file system (mounts are left alone and reported).
Status RemoveTree(const std::string& path);

}  // namespace kindling
