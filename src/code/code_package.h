// CodePackage: validation and extraction of a function's zip into a content-addressed directory.
//
// Untrusted input: the zip comes from the API caller. Extraction never asserts; it returns an error
// for corrupt archives, entries with absolute paths or `..` components, symlinks whose targets
// leave the package, duplicate entries, and archives that inflate beyond the limits (zip bombs:
// the bytes actually written are counted, declared sizes are not trusted).
//
// Thread safety: ExtractCodePackage is safe to call from any thread for distinct digests; the
// final rename makes concurrent extraction of the same digest harmless.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace kindling {

struct CodeLimits {
  uint64_t max_unzipped_bytes = 262144000;  // Lambda: 250 MB unzipped
  uint64_t max_entries = 20000;
  uint64_t max_symlink_target = 4096;
};

struct CodePackage {
  std::string sha256_base64;  // CodeSha256 as Lambda reports it
  std::string digest_hex;     // names the directory: <code_root>/<digest_hex>/
  int64_t zip_size = 0;
  std::string dir;            // absolute path of the extracted tree
};

// Extracts zip into <code_root>/<hex sha256>/ (reusing it if present) and keeps the original
// archive beside it as <hex sha256>.zip. Errors are user-facing messages (InvalidZipFile-style).
Result<CodePackage> ExtractCodePackage(const std::string& zip, const std::string& code_root,
                                       const CodeLimits& limits = {});

// Removes every package under code_root whose digest is not in `in_use` (and unfinished
// extractions). Only safe while no sandbox has a package mounted: kindlingd calls it at startup.
Status RemoveUnusedPackages(const std::string& code_root, const std::vector<std::string>& in_use);

// True when `path` names a regular executable file inside the package directory.
bool PackageHasExecutable(const std::string& dir, const std::string& path);

}  // namespace kindling
