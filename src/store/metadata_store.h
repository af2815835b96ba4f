// MetadataStore: durable function metadata in an embedded SQLite database (WAL) under the data
// directory. Keys are (function name, version); values are FunctionConfig records.
//
// Thread safety: not thread-safe; kindlingd uses it from its control thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/function.h"
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
  // Deletes every version of the function; returns how many records went.
  Result<int> DeleteFunction(const std::string& name);
  // Functions' records for `version` ordered by name, starting after `after_name`, at most `limit`.
  Result<std::vector<FunctionConfig>> List(const std::string& version, const std::string& after_name,
                                           int limit);
  // Every code digest still referenced by some record.
  Result<std::vector<std::string>> CodeDigestsInUse();

 private:
  explicit MetadataStore(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  sqlite3* db_;
};

}  // namespace kindling
