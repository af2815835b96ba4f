// MetadataStore: durable function metadata in an embedded SQLite database (WAL) under the data
// directory. Tables (created if absent, so older databases keep working):
//   functions        (name, version) -> FunctionConfig: "$LATEST" and the published versions
//   version_counters name -> the last version number handed out (numbers are never reused)
//   aliases          (function, name) -> AliasConfig
//   provisioned      (function, qualifier) -> requested provisioned concurrency
//
// Thread safety: not thread-safe; kindlingd uses it from its control thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/function.h"
#include "store/alias.h"
#include "common/status.h"

struct sqlite3;

namespace kindling {

class MetadataStore {
 public:
  // Opens (creating if needed) the database file at path.
  static Result<std::unique_ptr<MetadataStore>> Open(const std::string& path);
  ~MetadataStore();

  // Inserts or replaces the record for (fn.name, fn.version).
  Status Put(const FunctionConfig& fn);
  // Inserts only if absent: returns false (and writes nothing) when the key exists.
  Result<bool> Insert(const FunctionConfig& fn);
  Result<std::optional<FunctionConfig>> Get(const std::string& name, const std::string& version);
  // Deletes every version and alias of the function and its version counter; returns how many
  // function records went.
  Result<int> DeleteFunction(const std::string& name);

  // Versions. PublishVersion stores fn under the next version number of fn.name (one past the
  // highest ever handed out, even if that version was deleted since) in one transaction, and
  // returns the stored record (fn with .version set).
  Result<FunctionConfig> PublishVersion(FunctionConfig fn);
  // The highest-numbered published version that still exists, if any.
  Result<std::optional<FunctionConfig>> LatestPublished(const std::string& name);
  // $LATEST first, then published versions in number order; `after` is the last version of the
  // previous page ("" = from the start), at most `limit` records.
  Result<std::vector<FunctionConfig>> ListVersions(const std::string& name, const std::string& after, int limit);
  // Deletes one published version; false when it did not exist.
  // Every record, $LATEST and published versions, ordered by name then version, after
  // (after_name, after_version) ("" starts at the beginning).
  Result<std::vector<FunctionConfig>> ListAllVersions(const std::string& after_name,
                                                      const std::string& after_version, int limit);
  Result<bool> DeleteVersion(const std::string& name, const std::string& version);

  // Aliases.
  Result<bool> InsertAlias(const AliasConfig& alias);  // false (nothing written) when it exists
  Status PutAlias(const AliasConfig& alias);            // inserts or replaces
  Result<std::optional<AliasConfig>> GetAlias(const std::string& function, const std::string& name);
  Result<bool> DeleteAlias(const std::string& function, const std::string& name);
  // Aliases of `function` ordered by name, starting after `after_name`, at most `limit`.
  Result<std::vector<AliasConfig>> ListAliases(const std::string& function, const std::string& after_name,
                                               int limit);
  // Functions' records for `version` ordered by name, starting after `after_name`, at most `limit`.
  Result<std::vector<FunctionConfig>> List(const std::string& version, const std::string& after_name,
                                           int limit);
  // Every code digest still referenced by some record.
  Result<std::vector<std::string>> CodeDigestsInUse();

  // Provisioned concurrency configurations (PutProvisionedConcurrencyConfig).
  struct Provisioned {
    std::string function, qualifier, last_modified;
    int requested = 0;
  };
  Status PutProvisioned(const Provisioned& p);
  Result<bool> DeleteProvisioned(const std::string& function, const std::string& qualifier);
  // All of a function's configurations, or every function's when function is "".
  Result<std::vector<Provisioned>> ListProvisioned(const std::string& function);

 private:
  class Transaction;
  explicit MetadataStore(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  sqlite3* db_;
};

}  // namespace kindling
