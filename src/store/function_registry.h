// FunctionRegistry: the function metadata the frontend reads on every invocation, served from
// memory and written through to the MetadataStore (the only writer in embedded mode).
//
// Thread safety: not thread-safe; used from the control thread.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "store/metadata_store.h"

namespace kindling {

class FunctionRegistry {
 public:
  explicit FunctionRegistry(std::unique_ptr<MetadataStore> store) : store_(std::move(store)) {}

  // nullptr when absent. The pointer is valid until the next write to that function.
  const FunctionConfig* Find(const std::string& name, const std::string& version);
  Result<bool> Insert(const FunctionConfig& fn);  // false when it exists already
  Status Put(const FunctionConfig& fn);
  Status Delete(const std::string& name);
  MetadataStore& store() { return *store_; }

 private:
  std::unique_ptr<MetadataStore> store_;
  std::map<std::pair<std::string, std::string>, std::optional<FunctionConfig>> cache_;
};

}  // namespace kindling
