// FunctionRegistry: the function metadata the frontend reads on every invocation (function
// versions and aliases), served from memory and written through to the MetadataStore (the only
// writer in embedded mode). Every write goes through the registry, which updates or drops the
// cached entries it touches, so the cache never disagrees with the store.
//
// Thread safety: not thread-safe; used from the control thread.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "store/alias.h"
#include "store/metadata_store.h"

namespace kindling {

class FunctionRegistry {
 public:
  explicit FunctionRegistry(std::unique_ptr<MetadataStore> store) : store_(std::move(store)) {}

  // nullptr when absent. The pointer is valid until the next write to that function.
  const FunctionConfig* Find(const std::string& name, const std::string& version);
  Result<bool> Insert(const FunctionConfig& fn);  // false when it exists already
  Status Put(const FunctionConfig& fn);
  // Deletes the function: every version and alias.
  Status Delete(const std::string& name);

  // Publishes fn (a copy of $LATEST) as the function's next version; returns the stored record.
  Result<FunctionConfig> PublishVersion(const FunctionConfig& fn);
  // Deletes one published version; false when it did not exist.
  Result<bool> DeleteVersion(const std::string& name, const std::string& version);

  // nullptr when absent. The pointer is valid until the next write to that alias.
  const AliasConfig* FindAlias(const std::string& function, const std::string& name);
  Result<bool> InsertAlias(const AliasConfig& alias);  // false when it exists already
  Status PutAlias(const AliasConfig& alias);
  Result<bool> DeleteAlias(const std::string& function, const std::string& name);

  MetadataStore& store() { return *store_; }

 private:
  using Key = std::pair<std::string, std::string>;
  std::unique_ptr<MetadataStore> store_;
  std::map<Key, std::optional<FunctionConfig>> cache_;     // (name, version), negative entries too
  std::map<Key, std::optional<AliasConfig>> alias_cache_;  // (function, alias)
};

}  // namespace kindling
