#include "store/function_registry.h"

namespace kindling {

namespace {
constexpr size_t kMaxCached = 100000;

template <typename Map>
void EraseFunction(Map& cache, const std::string& name) {
  for (auto it = cache.lower_bound({name, ""}); it != cache.end() && it->first.first == name;)
    it = cache.erase(it);
}
}  // namespace

const FunctionConfig* FunctionRegistry::Find(const std::string& name, const std::string& version) {
  auto key = std::make_pair(name, version);
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    auto got = store_->Get(name, version);
    if (!got.ok()) return nullptr;  // a corrupt record reads as absent
    if (cache_.size() > kMaxCached) cache_.clear();
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
  // Dropped rather than set absent: on a failed delete the store is the truth.
  EraseFunction(cache_, name);
  EraseFunction(alias_cache_, name);
  return deleted.status();
}

Result<FunctionConfig> FunctionRegistry::PublishVersion(const FunctionConfig& fn) {
  auto published = store_->PublishVersion(fn);
  if (published.ok()) cache_[{published->name, published->version}] = *published;
  return published;
}

Result<bool> FunctionRegistry::DeleteVersion(const std::string& name, const std::string& version) {
  auto deleted = store_->DeleteVersion(name, version);
  cache_.erase({name, version});
  return deleted;
}

const AliasConfig* FunctionRegistry::FindAlias(const std::string& function, const std::string& name) {
  auto key = std::make_pair(function, name);
  auto it = alias_cache_.find(key);
  if (it == alias_cache_.end()) {
    auto got = store_->GetAlias(function, name);
    if (!got.ok()) return nullptr;
    if (alias_cache_.size() > kMaxCached) alias_cache_.clear();
    it = alias_cache_.emplace(key, std::move(got).value()).first;
  }
  return it->second ? &*it->second : nullptr;
}

Result<bool> FunctionRegistry::InsertAlias(const AliasConfig& alias) {
  auto inserted = store_->InsertAlias(alias);
  if (inserted.ok() && *inserted) alias_cache_[{alias.function, alias.name}] = alias;
  return inserted;
}

Status FunctionRegistry::PutAlias(const AliasConfig& alias) {
  Status s = store_->PutAlias(alias);
  if (s.ok()) alias_cache_[{alias.function, alias.name}] = alias;
  else alias_cache_.erase({alias.function, alias.name});
  return s;
}

Result<bool> FunctionRegistry::DeleteAlias(const std::string& function, const std::string& name) {
  auto deleted = store_->DeleteAlias(function, name);
  alias_cache_.erase({function, name});
  return deleted;
}

}  // namespace kindling
