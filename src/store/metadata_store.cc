#include "store/metadata_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "common/function_json.h"
#include "store/sqlite.h"

namespace kindling {
namespace {

using Stmt = sqlite::Statement;
using sqlite::Error;

Result<FunctionConfig> Decode(const std::string& text) {
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  FunctionConfig fn;
  if (doc.is_discarded() || !FromStored(doc, &fn)) return Status::Error("corrupt function record");
  return fn;
}

Result<AliasConfig> DecodeAlias(const std::string& text) {
  auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  AliasConfig alias;
  if (doc.is_discarded() || !FromStoredAlias(doc, &alias)) return Status::Error("corrupt alias record");
  return alias;
}

// Decodes the first column of every row; `what` names the query in errors.
template <typename T, typename DecodeFn>
Result<std::vector<T>> ReadAll(sqlite3* db, Stmt& st, DecodeFn decode, const char* what) {
  std::vector<T> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    auto item = decode(st.Text(0));
    if (!item.ok()) return item.status();
    out.push_back(std::move(item).value());
  }
  if (rc != SQLITE_DONE) return Error(db, what);
  return out;
}

// The order of a function's versions: $LATEST (0) first, then version numbers.
constexpr const char* kVersionOrder =
    "(CASE WHEN version = '$LATEST' THEN 0 ELSE CAST(version AS INTEGER) END)";

int64_t VersionOrder(const std::string& version) {
  return version == "$LATEST" ? 0 : strtoll(version.c_str(), nullptr, 10);
}

}  // namespace

// One write transaction: rolled back unless Commit() succeeded.
class MetadataStore::Transaction {
 public:
  explicit Transaction(MetadataStore* store) : store_(store) { status_ = store_->Exec("BEGIN IMMEDIATE"); }
  ~Transaction() {
    if (status_.ok() && !done_) store_->Exec("ROLLBACK");
  }
  const Status& status() const { return status_; }
  Status Commit() {
    done_ = true;
    Status s = store_->Exec("COMMIT");
    if (!s.ok()) store_->Exec("ROLLBACK");
    return s;
  }

 private:
  MetadataStore* store_;
  Status status_;
  bool done_ = false;
};

Result<std::unique_ptr<MetadataStore>> MetadataStore::Open(const std::string& path) {
  // Function configurations hold secrets (environment variables): owner-only.
  auto db = sqlite::OpenPrivate(path);
  if (!db.ok()) return db.status();
  std::unique_ptr<MetadataStore> store(new MetadataStore(*db));
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL",
                          "CREATE TABLE IF NOT EXISTS functions ("
                          " name TEXT NOT NULL, version TEXT NOT NULL, doc TEXT NOT NULL,"
                          " PRIMARY KEY (name, version))",
                          "CREATE TABLE IF NOT EXISTS version_counters ("
                          " name TEXT PRIMARY KEY, last INTEGER NOT NULL)",
                          "CREATE TABLE IF NOT EXISTS aliases ("
                          " function TEXT NOT NULL, name TEXT NOT NULL, doc TEXT NOT NULL,"
                          " PRIMARY KEY (function, name))",
                          "CREATE TABLE IF NOT EXISTS provisioned ("
                          " function TEXT NOT NULL, qualifier TEXT NOT NULL, requested INTEGER NOT NULL,"
                          " last_modified TEXT NOT NULL, PRIMARY KEY (function, qualifier))"}) {
    Status s = store->Exec(sql);
    if (!s.ok()) return s;
  }
  return store;
}

MetadataStore::~MetadataStore() { sqlite3_close(db_); }

Status MetadataStore::Exec(const char* sql) { return sqlite::Exec(db_, sql); }

Status MetadataStore::Put(const FunctionConfig& fn) {
  Stmt st(db_, "INSERT OR REPLACE INTO functions (name, version, doc) VALUES (?, ?, ?)");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, fn.name);
  st.Bind(2, fn.version);
  st.Bind(3, ToStored(fn).dump());
  if (st.Step() != SQLITE_DONE) return Error(db_, "put");
  return Status::Ok();
}

Result<bool> MetadataStore::Insert(const FunctionConfig& fn) {
  Stmt st(db_, "INSERT OR IGNORE INTO functions (name, version, doc) VALUES (?, ?, ?)");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, fn.name);
  st.Bind(2, fn.version);
  st.Bind(3, ToStored(fn).dump());
  if (st.Step() != SQLITE_DONE) return Error(db_, "insert");
  return sqlite3_changes(db_) == 1;
}

Result<std::optional<FunctionConfig>> MetadataStore::Get(const std::string& name,
                                                         const std::string& version) {
  Stmt st(db_, "SELECT doc FROM functions WHERE name = ? AND version = ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, name);
  st.Bind(2, version);
  int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<FunctionConfig>();
  if (rc != SQLITE_ROW) return Error(db_, "get");
  auto fn = Decode(st.Text(0));
  if (!fn.ok()) return fn.status();
  return std::optional<FunctionConfig>(std::move(fn).value());
}

Result<int> MetadataStore::DeleteFunction(const std::string& name) {
  Transaction txn(this);
  if (!txn.status().ok()) return txn.status();
  int deleted = 0;
  for (const char* sql : {"DELETE FROM aliases WHERE function = ?", "DELETE FROM version_counters WHERE name = ?",
                          "DELETE FROM provisioned WHERE function = ?", "DELETE FROM functions WHERE name = ?"}) {
    Stmt st(db_, sql);
    if (!st.ok()) return Error(db_, "prepare");
    st.Bind(1, name);
    if (st.Step() != SQLITE_DONE) return Error(db_, "delete");
    deleted = sqlite3_changes(db_);  // the last statement's: function records
  }
  Status s = txn.Commit();
  if (!s.ok()) return s;
  return deleted;
}

Result<FunctionConfig> MetadataStore::PublishVersion(FunctionConfig fn) {
  Transaction txn(this);
  if (!txn.status().ok()) return txn.status();
  int64_t last = 0;
  {
    // The counter, or (a database from before versions had one) the highest stored number.
    Stmt st(db_, "SELECT MAX(n) FROM (SELECT last AS n FROM version_counters WHERE name = ?1"
                 " UNION ALL SELECT CAST(version AS INTEGER) FROM functions WHERE name = ?1 AND version != '$LATEST')");
    if (!st.ok()) return Error(db_, "prepare");
    st.Bind(1, fn.name);
    if (st.Step() != SQLITE_ROW) return Error(db_, "version counter");
    last = st.Int(0);
  }
  fn.version = std::to_string(last + 1);
  {
    Stmt st(db_, "INSERT OR REPLACE INTO version_counters (name, last) VALUES (?, ?)");
    if (!st.ok()) return Error(db_, "prepare");
    st.Bind(1, fn.name);
    st.Bind(2, last + 1);
    if (st.Step() != SQLITE_DONE) return Error(db_, "version counter");
  }
  auto inserted = Insert(fn);
  if (!inserted.ok()) return inserted.status();
  if (!*inserted) return Status::Error("version " + fn.version + " of " + fn.name + " exists already");
  Status s = txn.Commit();
  if (!s.ok()) return s;
  return fn;
}

Result<std::optional<FunctionConfig>> MetadataStore::LatestPublished(const std::string& name) {
  std::string sql = std::string("SELECT doc FROM functions WHERE name = ? AND version != '$LATEST' ORDER BY ") +
                    kVersionOrder + " DESC LIMIT 1";
  Stmt st(db_, sql.c_str());
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, name);
  int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<FunctionConfig>();
  if (rc != SQLITE_ROW) return Error(db_, "latest version");
  auto fn = Decode(st.Text(0));
  if (!fn.ok()) return fn.status();
  return std::optional<FunctionConfig>(std::move(fn).value());
}

Result<std::vector<FunctionConfig>> MetadataStore::ListVersions(const std::string& name, const std::string& after,
                                                                int limit) {
  std::string sql = std::string("SELECT doc FROM functions WHERE name = ? AND ") + kVersionOrder + " > ? ORDER BY " +
                    kVersionOrder + " LIMIT ?";
  Stmt st(db_, sql.c_str());
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, name);
  st.Bind(2, after.empty() ? int64_t{-1} : VersionOrder(after));
  st.Bind(3, limit);
  return ReadAll<FunctionConfig>(db_, st, Decode, "list versions");
}

Result<std::vector<FunctionConfig>> MetadataStore::ListAllVersions(const std::string& after_name,
                                                                   const std::string& after_version, int limit) {
  std::string sql = std::string("SELECT doc FROM functions WHERE name > ?1 OR (name = ?1 AND ") + kVersionOrder +
                    " > ?2) ORDER BY name, " + kVersionOrder + " LIMIT ?3";
  Stmt st(db_, sql.c_str());
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, after_name);
  st.Bind(2, after_version.empty() ? int64_t{-1} : VersionOrder(after_version));
  st.Bind(3, limit);
  return ReadAll<FunctionConfig>(db_, st, Decode, "list all versions");
}

Result<bool> MetadataStore::DeleteVersion(const std::string& name, const std::string& version) {
  Stmt st(db_, "DELETE FROM functions WHERE name = ? AND version = ? AND version != '$LATEST'");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, name);
  st.Bind(2, version);
  if (st.Step() != SQLITE_DONE) return Error(db_, "delete version");
  return sqlite3_changes(db_) == 1;
}

Result<bool> MetadataStore::InsertAlias(const AliasConfig& alias) {
  Stmt st(db_, "INSERT OR IGNORE INTO aliases (function, name, doc) VALUES (?, ?, ?)");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, alias.function);
  st.Bind(2, alias.name);
  st.Bind(3, ToStoredAlias(alias).dump());
  if (st.Step() != SQLITE_DONE) return Error(db_, "insert alias");
  return sqlite3_changes(db_) == 1;
}

Status MetadataStore::PutAlias(const AliasConfig& alias) {
  Stmt st(db_, "INSERT OR REPLACE INTO aliases (function, name, doc) VALUES (?, ?, ?)");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, alias.function);
  st.Bind(2, alias.name);
  st.Bind(3, ToStoredAlias(alias).dump());
  if (st.Step() != SQLITE_DONE) return Error(db_, "put alias");
  return Status::Ok();
}

Result<std::optional<AliasConfig>> MetadataStore::GetAlias(const std::string& function, const std::string& name) {
  Stmt st(db_, "SELECT doc FROM aliases WHERE function = ? AND name = ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, function);
  st.Bind(2, name);
  int rc = st.Step();
  if (rc == SQLITE_DONE) return std::optional<AliasConfig>();
  if (rc != SQLITE_ROW) return Error(db_, "get alias");
  auto alias = DecodeAlias(st.Text(0));
  if (!alias.ok()) return alias.status();
  return std::optional<AliasConfig>(std::move(alias).value());
}

Result<bool> MetadataStore::DeleteAlias(const std::string& function, const std::string& name) {
  Stmt st(db_, "DELETE FROM aliases WHERE function = ? AND name = ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, function);
  st.Bind(2, name);
  if (st.Step() != SQLITE_DONE) return Error(db_, "delete alias");
  return sqlite3_changes(db_) == 1;
}

Result<std::vector<AliasConfig>> MetadataStore::ListAliases(const std::string& function,
                                                            const std::string& after_name, int limit) {
  Stmt st(db_, "SELECT doc FROM aliases WHERE function = ? AND name > ? ORDER BY name LIMIT ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, function);
  st.Bind(2, after_name);
  st.Bind(3, limit);
  return ReadAll<AliasConfig>(db_, st, DecodeAlias, "list aliases");
}

Result<std::vector<FunctionConfig>> MetadataStore::List(const std::string& version,
                                                        const std::string& after_name, int limit) {
  Stmt st(db_, "SELECT doc FROM functions WHERE version = ? AND name > ? ORDER BY name LIMIT ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, version);
  st.Bind(2, after_name);
  st.Bind(3, limit);
  return ReadAll<FunctionConfig>(db_, st, Decode, "list");
}

Result<std::vector<std::string>> MetadataStore::CodeDigestsInUse() {
  Stmt st(db_, "SELECT DISTINCT json_extract(doc, '$.CodeDigest') FROM functions");
  if (!st.ok()) return Error(db_, "prepare");
  std::vector<std::string> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out.push_back(st.Text(0));
  if (rc != SQLITE_DONE) return Error(db_, "digests");
  return out;
}

}  // namespace kindling

namespace kindling {

Status MetadataStore::PutProvisioned(const Provisioned& p) {
  Stmt st(db_, "INSERT OR REPLACE INTO provisioned (function, qualifier, requested, last_modified) VALUES (?, ?, ?, ?)");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, p.function);
  st.Bind(2, p.qualifier);
  st.Bind(3, p.requested);
  st.Bind(4, p.last_modified);
  if (st.Step() != SQLITE_DONE) return Error(db_, "put provisioned");
  return Status::Ok();
}

Result<bool> MetadataStore::DeleteProvisioned(const std::string& function, const std::string& qualifier) {
  Stmt st(db_, "DELETE FROM provisioned WHERE function = ? AND qualifier = ?");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, function);
  st.Bind(2, qualifier);
  if (st.Step() != SQLITE_DONE) return Error(db_, "delete provisioned");
  return sqlite3_changes(db_) > 0;
}

Result<std::vector<MetadataStore::Provisioned>> MetadataStore::ListProvisioned(const std::string& function) {
  Stmt st(db_, "SELECT function, qualifier, requested, last_modified FROM provisioned"
               " WHERE ? = '' OR function = ? ORDER BY function, qualifier");
  if (!st.ok()) return Error(db_, "prepare");
  st.Bind(1, function);
  st.Bind(2, function);
  std::vector<Provisioned> out;
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW)
    out.push_back({st.Text(0), st.Text(1), st.Text(3), std::atoi(st.Text(2).c_str())});
  if (rc != SQLITE_DONE) return Error(db_, "list provisioned");
  return out;
}

}  // namespace kindling
