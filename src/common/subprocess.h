// Running a helper program (mkfs.erofs, dpkg-query) and collecting what it prints.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace kindling {

// Runs argv (argv[0] looked up in PATH) with stdin from /dev/null and waits for it. Its stdout is
// returned; a non-zero exit, a signal or a failure to start is an error carrying the program's
// name and the end of its stderr. Thread-safe.
Result<std::string> RunCommand(const std::vector<std::string>& argv);

}  // namespace kindling
