#include "store/function_registry.h"

namespace kindling {

const FunctionConfig* FunctionRegistry::Find(const std::string& name, const std::string& version) {
  auto key = std::make_pair(name, version);
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    auto got = store_->Get(name, version);
    if (!got.ok()) return nullptr;  // a corrupt record reads as absent
    if (cache_.size() > 100000) cache_.clear();
    it = cache_.emplace(key, std::move(got).value()).first;
  }
  return it->second ? &*it->second : nullptr;
}

Result<bool> FunctionRegistry::Insert(const FunctionConfig& fn) {
  auto inserted = store_->Insert(fn);
  if (inserted.ok() && *inserted) cache_[{fn.name, fn.version}] = fn;
  return inserted;
}

Status FunctionRegistry::Put(const FunctionConfig& fn) {
  Status s = store_->Put(fn);
  if (s.ok()) cache_[{fn.name, fn.version}] = fn;
  return s;
}

Status FunctionRegistry::Delete(const std::string& name) {
  auto deleted = store_->DeleteFunction(name);
  for (auto it = cache_.begin(); it != cache_.end();)
    it = it->first.first == name ? cache_.erase(it) : std::next(it);
  return deleted.status();
}

}  // namespace kindling
