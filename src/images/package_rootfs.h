// Runtime root file systems assembled from the Debian packages installed on the build host.
//
// A recipe names root packages; the tree holds the files dpkg lists for them and for everything
// they depend on (Pre-Depends and Depends, first installed alternative), minus packages that only
// serve package management (dpkg, debconf, ...) and documentation. Parent directories are
// resolved on the host, so a merged-/usr host gives a merged-/usr tree with the same top-level
// symlinks (bin -> usr/bin ...). The same installed package versions and recipe always give the
// same tree; RecipeKey names that combination.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace kindling::images {

struct RootfsRecipe {
  std::string name;                          // "python", "node", "provided"
  std::vector<std::string> packages;         // roots of the dependency closure
  std::vector<std::string> stop_packages;    // never followed (nor their dependencies)
  // Files added to the tree: {host path, path in the tree}. Missing host files are an error.
  std::vector<std::pair<std::string, std::string>> extra_files;
  // Byte-compile the tree's python modules (Debian generates .pyc files at install time, so the
  // packages' file lists have none); the host's python3 must be the tree's.
  bool compile_python = false;
};

// The recipes of Kindling's runtime families. runtime_clients_dir holds python/bootstrap.py and
// node/bootstrap.js (installed at /var/runtime in the image).
std::vector<RootfsRecipe> RuntimeRecipes(const std::string& runtime_clients_dir);

struct ResolvedRecipe {
  std::vector<std::pair<std::string, std::string>> packages;  // {name, version}, sorted
  std::string key;  // hex SHA-256 of the recipe, package versions and extra files' contents
};

// Resolves the dependency closure against the host's dpkg database.
Result<ResolvedRecipe> ResolveRecipe(const RootfsRecipe& recipe);

// Copies the resolved packages' files and the extra files into dir (which must not exist).
Status StageRootfs(const RootfsRecipe& recipe, const ResolvedRecipe& resolved, const std::string& dir);

}  // namespace kindling::images
